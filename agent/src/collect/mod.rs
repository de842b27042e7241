//! Host collectors: turn two successive readings of the host's counters
//! into one [`HostSample`], from one of two backends.
//!
//! Main types: [`Collector`] (long-lived; owns its backend's previous
//! counters and the time of the previous reading), [`Backend`],
//! [`CollectConfig`], [`Collected`] and [`CollectError`]. One file per
//! backend, so a reader sees where each figure comes from:
//! - `procfs` (Linux only, the default there): reads /proc and `/sys/block`
//!   directly, one file per collector under `procfs/`.
//! - `sysinfo` (everywhere; the only backend off Linux): the `sysinfo`
//!   crate, refreshing only what a sample holds.
//!
//! `definitions` holds what both share (which interfaces and filesystems
//! count, statvfs, interface rates), so that a figure means the same
//! whichever backend read it.
//!
//! Invariants:
//! - A failing collector is never fatal: it adds a [`CollectError`] to
//!   [`Collected::errors`] and leaves its part of the sample at the
//!   `HostSample::empty` value; the other collectors still run.
//! - Rates cover exactly the monotonic interval between two calls. A counter
//!   that goes backwards (device replaced, 32-bit wrap) gives 0 for that
//!   interval, never a huge number; so does a device seen for the first time.
//! - No figure is NaN, infinite or negative: the coordinator would end the
//!   stream on such a sample. Any that slips through is sent as 0, counted
//!   and logged at most once a minute (`crate::figures`).
//! - Pressure stall figures are read from /proc/pressure, by either backend,
//!   and only on Linux; elsewhere they are absent (`None`), never zero.
//!
//! The Linux-only code is behind `cfg(target_os = "linux")` in two files
//! only: here (the `procfs` module, the `Procfs` variants of [`Backend`]
//! and `Source` and their match arms, the procfs error variants) and in
//! `sysinfo.rs` (the pressure files). Nothing else in the agent is
//! Linux-only.
//!
//! Deliberately NOT done here: no per-process scan (neither backend lists
//! processes), no scheduling (the caller decides when to call
//! [`Collector::collect`]), no async (a reading takes well under a
//! millisecond).

// Called on every tick of the agent loop in `link` (`Link::on_tick`).

mod definitions;
#[cfg(target_os = "linux")]
mod procfs;
mod sysinfo;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use rollguard_common::HostSample;

use crate::figures::{guard_host, Dropped};

/// Interface name prefixes excluded by default: loopback, plus virtual
/// interfaces whose traffic is also counted on a physical interface
/// (container veths and bridges, overlay and tunnel devices, VPNs).
pub(crate) const DEFAULT_EXCLUDED_INTERFACES: &[&str] = &[
    "lo",
    "veth",
    "docker",
    "br-",
    "virbr",
    "vnet",
    "cni",
    "flannel",
    "cali",
    "cilium",
    "lxc",
    "weave",
    "vxlan",
    "genev",
    "tun",
    "tap",
    "wg",
    "tailscale",
    "kube-ipvs",
    "nodelocaldns",
    "dummy",
    "ifb",
];

/// Where the host figures come from (`[collect] backend`). A variant exists
/// only where it can be built and run, so a config naming another is
/// refused with the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// procfs and sysfs, read directly: `"procfs"`.
    #[cfg(target_os = "linux")]
    Procfs,
    /// The `sysinfo` crate: `"sysinfo"`.
    Sysinfo,
}

impl Backend {
    /// The default: procfs on Linux (exact, and the lightest), sysinfo elsewhere.
    #[cfg(target_os = "linux")]
    pub(crate) const DEFAULT: Backend = Backend::Procfs;
    /// The default: procfs on Linux (exact, and the lightest), sysinfo elsewhere.
    #[cfg(not(target_os = "linux"))]
    pub(crate) const DEFAULT: Backend = Backend::Sysinfo;

    /// Returns the name the config uses.
    pub(crate) fn name(self) -> &'static str {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Procfs => "procfs",
            Backend::Sysinfo => "sysinfo",
        }
    }

    /// Parses a config value; errs, with the reason, for a name that is
    /// unknown or that this OS cannot run.
    pub(crate) fn parse(value: &str) -> Result<Backend, String> {
        match value {
            #[cfg(target_os = "linux")]
            "procfs" => Ok(Backend::Procfs),
            #[cfg(not(target_os = "linux"))]
            "procfs" => Err(format!(
                "`procfs` reads /proc, which only Linux has (this is {}); use `sysinfo`",
                std::env::consts::OS
            )),
            "sysinfo" => Ok(Backend::Sysinfo),
            other => Err(format!("expected `procfs` or `sysinfo`, got `{other}`")),
        }
    }
}

/// Which backend reads the host, and which interfaces count.
#[derive(Debug, Clone)]
pub(crate) struct CollectConfig {
    /// Where the figures come from (default: [`Backend::DEFAULT`]).
    pub(crate) backend: Backend,
    /// Interface name prefixes excluded (default: [`DEFAULT_EXCLUDED_INTERFACES`]).
    pub(crate) exclude_interfaces: Vec<String>,
    /// If non-empty, only these exact names count (overrides exclude). Default: empty.
    pub(crate) include_interfaces: Vec<String>,
    /// Root of procfs, "/proc" in production; tests may point at a temp dir
    /// of fixture files. Read by the procfs backend, and for pressure on
    /// Linux; unread elsewhere.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) proc_root: PathBuf,
    /// Root of sysfs, "/sys" in production; only `<sys_root>/block/<name>` is looked at,
    /// to decide whether a block device is a whole disk (procfs backend).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) sys_root: PathBuf,
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            backend: Backend::DEFAULT,
            exclude_interfaces: DEFAULT_EXCLUDED_INTERFACES
                .iter()
                .map(|prefix| (*prefix).to_owned())
                .collect(),
            include_interfaces: Vec::new(),
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
        }
    }
}

/// A collector that failed during one call; the rest of the sample is still filled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CollectError {
    /// A procfs file could not be read (missing, permission denied, IO error).
    #[error("failed to read {path}")]
    #[cfg(target_os = "linux")]
    Read {
        /// The file that failed.
        path: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// A procfs file did not have the expected format.
    #[error("failed to parse {path}: {message}")]
    #[cfg(target_os = "linux")]
    Parse {
        /// The file that failed.
        path: String,
        /// What was wrong, naming the offending line or field.
        message: String,
    },
    /// The sysinfo backend could not read a part of the sample on this OS.
    #[error("sysinfo cannot read {what}: {reason}")]
    Sysinfo {
        /// The part that failed ("the load average").
        what: &'static str,
        /// sysinfo's reason.
        reason: String,
    },
    /// statvfs failed for one mount point; the other mounts are still reported.
    #[error("failed to stat filesystem mounted at {mount_point}")]
    Statvfs {
        /// The mount point that failed, unescaped.
        mount_point: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

/// The result of one [`Collector::collect`] call.
#[derive(Debug)]
pub(crate) struct Collected {
    /// The sample; parts whose collector failed keep their `HostSample::empty` value.
    pub(crate) sample: HostSample,
    /// One entry per failure in this call, empty when everything was read.
    pub(crate) errors: Vec<CollectError>,
}

/// Long-lived collector: keeps its backend's previous counters so rates
/// cover exactly the interval between two calls.
#[derive(Debug)]
pub(crate) struct Collector {
    source: Source,
    /// Monotonic time of the previous reading (the baseline before the first call).
    prev_now: Instant,
    /// Figures sent as 0 because they were not finite or negative.
    dropped: Dropped,
}

/// The backend behind a [`Collector`], one variant per [`Backend`].
// One per agent, made once: the bytes a Box would save do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Source {
    #[cfg(target_os = "linux")]
    Procfs(procfs::ProcfsSource),
    Sysinfo(sysinfo::SysinfoSource),
}

// === impl Collector ===

impl Collector {
    /// Creates a collector and takes its baseline reading of the counters now.
    pub(crate) fn new(config: CollectConfig) -> Self {
        Self::new_at(config, Instant::now())
    }

    /// Creates a collector whose baseline reading is stamped `now`; tests use
    /// it to advance a fake clock by an exact interval.
    pub(crate) fn new_at(config: CollectConfig, now: Instant) -> Self {
        let source = match config.backend {
            #[cfg(target_os = "linux")]
            Backend::Procfs => Source::Procfs(procfs::ProcfsSource::new(config)),
            Backend::Sysinfo => Source::Sysinfo(sysinfo::SysinfoSource::new(config)),
        };
        let mut collector = Self {
            source,
            prev_now: now,
            dropped: Dropped::default(),
        };
        // Errors of the baseline are dropped: the first collect() reads the
        // same sources again and reports whatever still fails.
        let mut scratch = HostSample::empty(SystemTime::UNIX_EPOCH, Duration::ZERO);
        let mut errors = Vec::new();
        collector.read_counters(0.0, &mut scratch, &mut errors);
        collector
    }

    /// Reads everything once. Rates are per second over the monotonic time
    /// since the previous call (`now`), percentages over the counter deltas.
    /// A collector that fails is reported in `errors` with a reason, never
    /// fatal: the rest of the sample is still filled.
    pub(crate) fn collect(&mut self, now: Instant, wall: SystemTime) -> Collected {
        let interval = now.saturating_duration_since(self.prev_now);
        self.prev_now = now;
        let mut sample = HostSample::empty(wall, interval);
        let mut errors = Vec::new();
        self.read_counters(interval.as_secs_f64(), &mut sample, &mut errors);
        self.read_gauges(&mut sample, &mut errors);
        self.dropped.add(guard_host(&mut sample));
        if let Some(due) = self.dropped.due(now) {
            due.log("host");
        }
        Collected { sample, errors }
    }

    /// Reads the cumulative counters (cpu, disks, network) and fills the rates
    /// over `secs`, then keeps the reading as the next baseline.
    fn read_counters(
        &mut self,
        secs: f64,
        sample: &mut HostSample,
        errors: &mut Vec<CollectError>,
    ) {
        match &mut self.source {
            #[cfg(target_os = "linux")]
            Source::Procfs(source) => source.read_counters(secs, sample, errors),
            Source::Sysinfo(source) => source.read_counters(secs, sample, errors),
        }
    }

    /// Reads the instantaneous values (load, memory, filesystems, pressure).
    fn read_gauges(&mut self, sample: &mut HostSample, errors: &mut Vec<CollectError>) {
        match &mut self.source {
            #[cfg(target_os = "linux")]
            Source::Procfs(source) => source.read_gauges(sample, errors),
            Source::Sysinfo(source) => source.read_gauges(sample, errors),
        }
    }
}

/// Returns the per-second rate of a cumulative counter, or 0 when the counter
/// went backwards (reset, wrap) or no time passed.
fn per_sec(prev: u64, cur: u64, secs: f64) -> f64 {
    match cur.checked_sub(prev) {
        Some(delta) if secs > 0.0 => delta as f64 / secs,
        _ => 0.0,
    }
}
