//! Load generators. `rtp-load` drives N concurrent RTP streams from real call audio into
//! media-plane shards on loopback and reports what the shards cost: CPU per stream per
//! 20 ms (from the shard thread's own CPU time), packet loss, and memory per session.
//! The SIP carrier simulator and the load driver for whole calls come with the SIP issue.

pub mod baseline;

use std::time::Duration;

/// CPU time (user + system) a thread of this process has used, found by its name prefix
/// (glommio names an executor thread `<name>-<id>`).
pub fn thread_cpu(name: &str) -> Option<Duration> {
    let tick = 100.0; // USER_HZ on Linux
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(name) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).ok()?;
        // Fields after the command name (which is in parentheses and may hold spaces).
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (utime, stime): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
        return Some(Duration::from_secs_f64((utime + stime) / tick));
    }
    None
}

/// Resident set size of this process, bytes.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
