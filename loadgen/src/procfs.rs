//! What the loadgen reads from `/proc`: a process's CPU time and RSS, the
//! bytes this process wrote to and read from its sockets, and the pid of the
//! process listening on a local TCP port (to find the coordinator).
//!
//! Linux only. CPU time is in clock ticks of USER_HZ, which is 100 on every
//! architecture Linux runs on with a stable ABI. It does not read per-thread
//! figures.

use std::io;
use std::path::Path;
use std::time::Duration;

/// Ticks per second in `/proc/<pid>/stat` (USER_HZ).
const USER_HZ: f64 = 100.0;

/// CPU time and resident memory of one process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcSample {
    /// utime + stime, in USER_HZ ticks.
    pub(crate) cpu_ticks: u64,
    pub(crate) rss_kib: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `pid` `None` means this process.
pub(crate) fn sample(pid: Option<u32>) -> io::Result<ProcSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat"))?;
    let status = std::fs::read_to_string(format!("{dir}/status"))?;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{dir}: no {what}"));
    Ok(ProcSample {
        cpu_ticks: parse_cpu_ticks(&stat).ok_or_else(|| bad("utime/stime"))?,
        rss_kib: parse_rss_kib(&status).ok_or_else(|| bad("VmRSS"))?,
    })
}

/// CPU use between two samples `elapsed` apart, in percent of one core.
pub(crate) fn cpu_percent(before: ProcSample, after: ProcSample, elapsed: Duration) -> f64 {
    let secs = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / USER_HZ;
    secs / elapsed.as_secs_f64().max(1e-9) * 100.0
}

/// `ticks` of CPU time as a duration.
pub(crate) fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / USER_HZ)
}

/// Busy CPU time of the whole machine (every core, USER_HZ ticks): all but
/// idle and iowait, from the first line of `/proc/stat`.
pub(crate) fn machine_busy_ticks() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/stat")?;
    parse_machine_busy(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/stat: no cpu line"))
}

fn parse_machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest
    // time is already counted in user.
    let total: u64 = ticks.iter().take(8).sum();
    Some(total - ticks.get(3)? - ticks.get(4).copied().unwrap_or(0))
}

/// utime + stime from the text of `/proc/<pid>/stat`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted after its closing parenthesis, where field 3 (state) starts.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS in KiB from the text of `/proc/<pid>/status`.
fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Bytes this process wrote and read through system calls (`wchar`,
/// `rchar` of `/proc/self/io`): nearly all of it is socket traffic here.
pub(crate) fn self_io() -> io::Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/io")?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("wchar:"), field("rchar:")))
}

/// Finds the process that listens on TCP `port` on this host: the socket's
/// inode from `/proc/net/tcp{,6}`, then the process holding it among
/// `/proc/*/fd`. `None` when not found or not readable.
pub(crate) fn listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        if holds_any(&entry.path().join("fd"), &targets) {
            return Some(pid);
        }
    }
    None
}

fn holds_any(fd_dir: &Path, targets: &[String]) -> bool {
    let Ok(fds) = std::fs::read_dir(fd_dir) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .ok()
            .and_then(|link| link.to_str().map(|s| targets.iter().any(|t| t == s)))
            .unwrap_or(false)
    })
}

/// Inodes of the sockets in LISTEN state on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *fields.get(3)? == LISTEN)
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// Raises the open-file soft limit to the hard limit: every simulated agent
/// holds a socket. Returns the limit in force.
pub(crate) fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(err) => {
            tracing::warn!(error = %err, "cannot raise the open-file limit");
            limit.current
        }
    }
}

/// The open-file soft limit now.
pub(crate) fn nofile_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(test)]
mod tests;
