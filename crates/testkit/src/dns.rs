//! A real DNS server on loopback UDP for the DNS health check: names under the zone
//! it serves resolve to 127.0.0.1, others are NXDOMAIN; it can also be told to stay
//! silent (so a query times out). Built on hickory's wire types.

use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

pub struct DnsServer {
    pub addr: SocketAddr,
    silent: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Serves names ending in `.{zone}`.
    pub fn start(zone: &str) -> DnsServer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Woken now and then to see whether it should stop.
        sock.set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let silent = Arc::new(AtomicBool::new(false));
        let quiet = silent.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let suffix = format!(".{}", zone.trim_matches('.'));
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stopping.load(Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if quiet.load(Ordering::Relaxed) {
                    continue;
                }
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut resp = Message::response(query.metadata.id, OpCode::Query);
                resp.metadata.authoritative = true;
                resp.metadata.recursion_desired = query.metadata.recursion_desired;
                resp.metadata.recursion_available = true;
                for q in &query.queries {
                    resp.add_query(q.clone());
                    let name = q.name().to_ascii().to_ascii_lowercase();
                    let name = name.trim_end_matches('.');
                    if !name.ends_with(&suffix) {
                        resp.metadata.response_code = ResponseCode::NXDomain;
                    } else if q.query_type() == RecordType::A {
                        resp.add_answer(Record::from_rdata(
                            q.name().clone(),
                            60,
                            RData::A(A(Ipv4Addr::LOCALHOST)),
                        ));
                    }
                }
                if let Ok(bytes) = resp.to_vec() {
                    let _ = sock.send_to(&bytes, peer);
                }
            }
        });
        DnsServer {
            addr,
            silent,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops answering (queries then time out), or answers again.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::Relaxed);
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One server per test process for the control service's zone `hub.test`.
pub fn hub_test_zone() -> &'static DnsServer {
    static DNS: OnceLock<DnsServer> = OnceLock::new();
    DNS.get_or_init(|| DnsServer::start("hub.test"))
}
