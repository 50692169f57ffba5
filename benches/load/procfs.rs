//! CPU time and memory of processes and cores, read from /proc.

use std::{fs, process::Command};

use crate::Res;

pub(crate) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&n| n > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of a process (all its threads), in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Res<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    // Fields after the parenthesised command name: state is field 3; utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Res<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat: no field {}", i + 3))
    };
    Ok(num(11)? + num(12)?)
}

/// One CPU's counters from /proc/stat, in clock ticks.
#[derive(Clone, Copy, Default)]
pub(crate) struct CoreTimes {
    /// user + nice + system + irq + softirq.
    pub(crate) busy: u64,
    /// Time the hypervisor gave to someone else.
    pub(crate) steal: u64,
    pub(crate) total: u64,
}

pub(crate) fn core_times() -> Vec<CoreTimes> {
    let Ok(stat) = fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|f| f.parse().ok())
                .collect();
            let f = |i: usize| v.get(i).copied().unwrap_or(0);
            CoreTimes {
                busy: f(0) + f(1) + f(2) + f(5) + f(6),
                steal: f(7),
                total: (0..8).map(f).sum(),
            }
        })
        .collect()
}

/// CPU ticks, all cores, between two samples: (busy, steal).
pub(crate) fn all_busy(a: &[CoreTimes], b: &[CoreTimes]) -> (u64, u64) {
    a.iter().zip(b).fold((0, 0), |(busy, steal), (a, b)| {
        (
            busy + b.busy.saturating_sub(a.busy),
            steal + b.steal.saturating_sub(a.steal),
        )
    })
}

/// CPU ticks used by these processes (those that have exited count 0).
pub(crate) fn ticks_of(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| cpu_ticks(p).ok()).sum()
}

/// Peak resident set size (VmHWM) in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> Res<u64> {
    status_kib(pid, "VmHWM:")
}

/// Resident set size now (VmRSS) in KiB.
pub(crate) fn rss_kib(pid: u32) -> Res<u64> {
    status_kib(pid, "VmRSS:")
}

/// A `field:` of `/proc/PID/status` in KiB.
fn status_kib(pid: u32, field: &str) -> Res<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("/proc/{pid}/status: no {field}"))
}
