//! Giving back the code pages start-up touched. Argument and config parsing, TLS and
//! runtime set-up run once, but the kernel keeps their pages of the binary and its
//! libraries mapped (and counted in the process's resident size) until memory runs
//! short. Once the daemon is up, `release_startup_pages` asks the kernel to reclaim the
//! read-only file-backed pages now (`MADV_PAGEOUT`); whatever the running daemon still
//! uses faults back in from the page cache on its next use, so what stays resident is
//! what it runs. Anonymous memory (heap, stacks) and writable mappings are left alone:
//! paging those out would mean swap.

/// A read-only or executable mapping of a file, as `/proc/self/maps` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileMapping {
    start: usize,
    end: usize,
}

/// The file-backed mappings that can be dropped and read again: no write permission,
/// a real path (not `[vdso]`, `[heap]` and the like).
fn reclaimable(maps: &str) -> Vec<FileMapping> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?;
            if perms.contains('w') || !path.starts_with('/') {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some(FileMapping {
                start: usize::from_str_radix(a, 16).ok()?,
                end: usize::from_str_radix(b, 16).ok()?,
            })
        })
        .collect()
}

/// Asks the kernel to reclaim this process's read-only file-backed pages. Returns how
/// many mappings it asked about; kernels before 5.4 (no `MADV_PAGEOUT`) or a seccomp
/// filter that refuses `madvise` just leave the pages where they are.
pub fn release_startup_pages() -> usize {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mappings = reclaimable(&maps);
    for m in &mappings {
        // SAFETY: the range is one of our own mappings as the kernel listed it, and
        // MADV_PAGEOUT only drops clean file pages the kernel can read back: no memory
        // this process reads changes content or becomes invalid.
        let r = unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_PAGEOUT,
            )
        };
        if r != 0 {
            tracing::debug!(
                "madvise(MADV_PAGEOUT) refused: {}",
                std::io::Error::last_os_error()
            );
            return 0;
        }
    }
    mappings.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_only_file_mappings_are_released() {
        let maps = "\
5566b351d000-5566b377a000 r--p 00000000 fd:01 123 /usr/bin/hubkeeper
5566b377a000-5566b3e75000 r-xp 0025c000 fd:01 123 /usr/bin/hubkeeper
5566b3eaf000-5566b3eb3000 rw-p 00992000 fd:01 123 /usr/bin/hubkeeper
5566b4000000-5566b4100000 rw-p 00000000 00:00 0 [heap]
7ffd1000-7ffd2000 r-xp 00000000 00:00 0 [vdso]
7f7a1184e000-7f7a119a4000 r-xp 00026000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
";
        let m = reclaimable(maps);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].start, 0x5566b351d000);
        assert_eq!(m[1].end, 0x5566b3e75000);
        assert_eq!(m[2].start, 0x7f7a1184e000);
    }

    #[test]
    fn releasing_keeps_the_process_working() {
        // Every kernel this project runs on has MADV_PAGEOUT (Linux 5.4+).
        assert!(release_startup_pages() > 0);
        // Code and read-only data fault back in: this still runs and formats.
        assert_eq!(format!("{:?}", vec![1, 2]), "[1, 2]");
    }
}
