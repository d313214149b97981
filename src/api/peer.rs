//! Who is on the other end of a socket connection (SO_PEERCRED, SO_PEERGROUPS), and
//! whether they may use `POST`.

use nix::unistd::Gid;
use std::os::fd::AsRawFd;
use tokio::net::UnixStream;

#[derive(Debug, Clone)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// Supplementary groups at connect time.
    pub groups: Vec<u32>,
}

/// Who may change things: root, the daemon's own user, and members of the socket's
/// group. Everyone who can connect may read.
#[derive(Debug, Clone, Copy)]
pub struct PostPolicy {
    pub daemon_uid: u32,
    pub socket_gid: Gid,
}

impl PostPolicy {
    // ⚠️ Security-critical: this decides who may rotate keys and start backups. The
    // identity comes from the kernel (SO_PEERCRED / SO_PEERGROUPS), never from the
    // request, and anything we cannot read denies.
    pub fn allows(&self, peer: Option<&Peer>) -> bool {
        let Some(p) = peer else { return false };
        let gid = self.socket_gid.as_raw();
        p.uid == 0 || p.uid == self.daemon_uid || p.gid == gid || p.groups.contains(&gid)
    }
}

/// Reads the peer's credentials. `None` if the kernel would not tell us.
pub fn peer_of(stream: &UnixStream) -> Option<Peer> {
    let cred = stream.peer_cred().ok()?;
    Some(Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
        groups: peer_groups(stream).unwrap_or_default(),
    })
}

/// SO_PEERGROUPS (Linux 4.13+): the peer's supplementary groups when it connected.
fn peer_groups(stream: &UnixStream) -> Option<Vec<u32>> {
    let fd = stream.as_raw_fd();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is a live buffer of `len` bytes that outlives the call, and
        // `len` is updated by the kernel to the bytes written or needed.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n);
            return Some(groups);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65536 {
            groups.resize(n, 0);
            continue;
        }
        return None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            uid,
            gid,
            pid: None,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn policy_allows_root_self_and_group_members_only() {
        let pol = PostPolicy {
            daemon_uid: 998,
            socket_gid: Gid::from_raw(33),
        };
        assert!(pol.allows(Some(&peer(0, 0, &[]))));
        assert!(pol.allows(Some(&peer(998, 998, &[]))));
        assert!(pol.allows(Some(&peer(1000, 33, &[]))));
        assert!(pol.allows(Some(&peer(1000, 1000, &[4, 33]))));
        assert!(!pol.allows(Some(&peer(65534, 65534, &[]))));
        assert!(!pol.allows(None));
    }

    #[tokio::test]
    async fn reads_own_credentials_over_a_socketpair() {
        let (a, _b) = UnixStream::pair().unwrap();
        let p = peer_of(&a).unwrap();
        assert_eq!(p.uid, nix::unistd::geteuid().as_raw());
        assert_eq!(p.pid, Some(std::process::id() as i32));
    }
}
