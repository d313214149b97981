//! `/proc` readings the benchmarks share: clock ticks and the machine's busy CPU time
//! (to report how much else ran during a measurement).

use anyhow::{Context as _, Result};
use std::time::Duration;

/// Clock ticks per second of the times in `/proc`.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100) as f64
}

/// Busy CPU time of the whole machine (every state but idle and iowait), in ticks,
/// from the first line of `/proc/stat`.
pub fn machine_busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let mut busy = 0u64;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    for (i, v) in line.split_whitespace().skip(1).take(8).enumerate() {
        if i != 3 && i != 4 {
            busy += v.parse::<u64>()?;
        }
    }
    Ok(busy)
}

/// The same, as a duration.
pub fn machine_busy() -> Result<Duration> {
    Ok(Duration::from_secs_f64(
        machine_busy_ticks()? as f64 / clock_ticks(),
    ))
}

/// A field of a `/proc/<pid>/status`-style text (`Key:   value`), trimmed.
pub fn status_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// A `kB` field of such a text (the kernel's kB are KiB).
pub fn kib_field(text: &str, key: &str) -> Result<u64> {
    let v = status_field(text, key).with_context(|| format!("no {key}"))?;
    v.trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("cannot parse {key}: {v}"))
}

/// One process's memory as the kernel counts it, in KiB. The RSS figures count every
/// page the process maps once, shared or not; PSS divides each page by the number of
/// processes mapping it, so a binary or library that other processes also run costs
/// only its share (what a machine running several copies pays per copy).
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub vm_rss: u64,
    pub rss_anon: u64,
    pub rss_file: u64,
    pub rss_shmem: u64,
    pub vm_hwm: u64,
    pub pss: u64,
    pub pss_anon: u64,
    pub pss_file: u64,
    pub threads: u64,
}

impl Memory {
    /// From `/proc/<pid>/status` and `/proc/<pid>/smaps_rollup` (the latter needs the
    /// right to ptrace-read the process: the same user, or root).
    pub fn read(pid: i32) -> Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("process {pid} is gone"))?;
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .with_context(|| format!("cannot read /proc/{pid}/smaps_rollup"))?;
        Ok(Self {
            vm_rss: kib_field(&status, "VmRSS")?,
            rss_anon: kib_field(&status, "RssAnon")?,
            rss_file: kib_field(&status, "RssFile")?,
            rss_shmem: kib_field(&status, "RssShmem")?,
            vm_hwm: kib_field(&status, "VmHWM")?,
            pss: kib_field(&rollup, "Pss")?,
            pss_anon: kib_field(&rollup, "Pss_Anon")?,
            pss_file: kib_field(&rollup, "Pss_File")?,
            threads: status_field(&status, "Threads")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        })
    }
}
