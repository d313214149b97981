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
