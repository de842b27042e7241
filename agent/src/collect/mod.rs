//! Host collectors: read procfs (and `/sys/block`) directly and turn two
//! successive readings into one [`HostSample`].
//!
//! Main types: [`Collector`] (long-lived; owns the previous counters, one
//! reusable read buffer and the resolved file paths), [`CollectConfig`],
//! [`Collected`] and [`CollectError`]. One file per collector: `cpu`, `load`,
//! `memory`, `disk`, `filesystem`, `network`, `pressure`. Each file holds a
//! pure parser over the file's text plus the small state it keeps between
//! calls, so tests feed it fixture text.
//!
//! Invariants:
//! - A failing collector is never fatal: it adds a [`CollectError`] to
//!   [`Collected::errors`] and leaves its part of the sample at the
//!   `HostSample::empty` value; the other collectors still run.
//! - Rates cover exactly the monotonic interval between two calls. A counter
//!   that goes backwards (device replaced, 32-bit wrap) gives 0 for that
//!   interval, never a huge number.
//! - No figure is NaN, infinite or negative: the coordinator would end the
//!   stream on such a sample. Any that slips through is sent as 0, counted
//!   and logged at most once a minute (`crate::figures`).
//!
//! Deliberately NOT done here: no per-process scan, no sysinfo crate, no
//! scheduling (the caller decides when to call [`Collector::collect`]), no
//! async (every read is a small procfs file and takes microseconds).

// Called on every tick of the agent loop in `link` (`Link::on_tick`).

mod cpu;
mod disk;
mod filesystem;
mod load;
mod memory;
mod network;
mod pressure;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
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

/// Which sources the collectors read and which interfaces count.
#[derive(Debug, Clone)]
pub(crate) struct CollectConfig {
    /// Interface name prefixes excluded (default: [`DEFAULT_EXCLUDED_INTERFACES`]).
    pub(crate) exclude_interfaces: Vec<String>,
    /// If non-empty, only these exact names count (overrides exclude). Default: empty.
    pub(crate) include_interfaces: Vec<String>,
    /// Root of procfs, "/proc" in production; tests may point at a temp dir of fixture files.
    pub(crate) proc_root: PathBuf,
    /// Root of sysfs, "/sys" in production; only `<sys_root>/block/<name>` is looked at,
    /// to decide whether a block device is a whole disk.
    pub(crate) sys_root: PathBuf,
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
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
    Read {
        /// The file that failed.
        path: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// A procfs file did not have the expected format.
    #[error("failed to parse {path}: {message}")]
    Parse {
        /// The file that failed.
        path: String,
        /// What was wrong, naming the offending line or field.
        message: String,
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

/// Long-lived collector: keeps previous counters so rates cover exactly the
/// interval between two calls.
#[derive(Debug)]
pub(crate) struct Collector {
    config: CollectConfig,
    paths: Paths,
    /// Read buffer reused by every file read, so steady state allocates only
    /// what the sample itself owns.
    buf: Vec<u8>,
    /// Monotonic time of the previous reading (the baseline before the first call).
    prev_now: Instant,
    cpu: cpu::CpuState,
    disk: disk::DiskState,
    network: network::NetState,
    /// Figures sent as 0 because they were not finite or negative.
    dropped: Dropped,
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
        let paths = Paths::new(&config);
        let mut collector = Self {
            config,
            paths,
            buf: Vec::with_capacity(16 * 1024),
            prev_now: now,
            cpu: cpu::CpuState::default(),
            disk: disk::DiskState::default(),
            network: network::NetState::default(),
            dropped: Dropped::default(),
        };
        // Errors of the baseline are dropped: the first collect() reads the
        // same files again and reports whatever still fails.
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
        let paths = &self.paths;
        let buf = &mut self.buf;
        if let Err(err) = self.cpu.collect(&paths.stat, buf, sample) {
            errors.push(err);
        }
        let sys_block = &paths.sys_block;
        let in_sys_block = |name: &str| sys_block.join(name.replace('/', "!")).exists();
        if let Err(err) = self
            .disk
            .collect(&paths.diskstats, buf, secs, in_sys_block, sample)
        {
            errors.push(err);
        }
        if let Err(err) = self
            .network
            .collect(&paths.net_dev, buf, secs, &self.config, sample)
        {
            errors.push(err);
        }
    }

    /// Reads the instantaneous values (load, memory, filesystems, pressure).
    fn read_gauges(&mut self, sample: &mut HostSample, errors: &mut Vec<CollectError>) {
        let paths = &self.paths;
        let buf = &mut self.buf;
        if let Err(err) = load::collect(&paths.loadavg, buf, sample) {
            errors.push(err);
        }
        if let Err(err) = memory::collect(&paths.meminfo, buf, sample) {
            errors.push(err);
        }
        filesystem::collect(&paths.mounts, buf, sample, errors);
        sample.pressure = pressure::collect(&paths.pressure_dir, &paths.pressure, buf, errors);
    }
}

/// Every file the collectors read, resolved once against the configured roots.
#[derive(Debug)]
struct Paths {
    stat: PathBuf,
    loadavg: PathBuf,
    meminfo: PathBuf,
    diskstats: PathBuf,
    net_dev: PathBuf,
    mounts: PathBuf,
    pressure_dir: PathBuf,
    /// cpu, memory, io, in that order.
    pressure: [PathBuf; 3],
    sys_block: PathBuf,
}

impl Paths {
    fn new(config: &CollectConfig) -> Self {
        let proc_root = &config.proc_root;
        let pressure_dir = proc_root.join("pressure");
        Self {
            stat: proc_root.join("stat"),
            loadavg: proc_root.join("loadavg"),
            meminfo: proc_root.join("meminfo"),
            diskstats: proc_root.join("diskstats"),
            net_dev: proc_root.join("net/dev"),
            mounts: proc_root.join("self/mounts"),
            pressure: [
                pressure_dir.join("cpu"),
                pressure_dir.join("memory"),
                pressure_dir.join("io"),
            ],
            pressure_dir,
            sys_block: config.sys_root.join("block"),
        }
    }
}

/// Reads the whole file at `path` into `buf` (cleared first) and returns its bytes.
fn read_file<'b>(path: &Path, buf: &'b mut Vec<u8>) -> Result<&'b [u8], CollectError> {
    buf.clear();
    // procfs files report size 0 and are generated on read, so read to EOF
    // rather than trusting metadata.
    File::open(path)
        .and_then(|mut file| file.read_to_end(buf))
        .map_err(|source| CollectError::Read {
            path: path.display().to_string(),
            source,
        })?;
    Ok(buf)
}

/// Reads a file the kernel writes in ASCII; anything else is a parse error.
fn read_text<'b>(path: &Path, buf: &'b mut Vec<u8>) -> Result<&'b str, CollectError> {
    let bytes = read_file(path, buf)?;
    std::str::from_utf8(bytes).map_err(|err| parse_error(path, err.to_string()))
}

fn parse_error(path: &Path, message: String) -> CollectError {
    CollectError::Parse {
        path: path.display().to_string(),
        message,
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
