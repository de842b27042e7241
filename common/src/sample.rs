//! One reading of a host over one interval.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Used and total bytes of one mounted filesystem.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FilesystemUsage {
    pub mount_point: String,
    pub device: String,
    pub fs_type: String,
    pub used_bytes: u64,
    pub total_bytes: u64,
}

/// Per-second rates of one block device (whole disk, partition or stacked
/// device; only whole disks add to the host-wide sums).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DiskIo {
    pub device: String,
    pub read_bytes_per_sec: f64,
    pub write_bytes_per_sec: f64,
    pub read_ops_per_sec: f64,
    pub write_ops_per_sec: f64,
}

/// Per-second rates of one network interface.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NetIo {
    pub interface: String,
    pub rx_bytes_per_sec: f64,
    pub tx_bytes_per_sec: f64,
    pub rx_packets_per_sec: f64,
    pub tx_packets_per_sec: f64,
    pub rx_errors_per_sec: f64,
    pub tx_errors_per_sec: f64,
    pub rx_drops_per_sec: f64,
    pub tx_drops_per_sec: f64,
}

/// Linux pressure stall information, "some" avg10, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Pressure {
    pub cpu_some_avg10: f64,
    pub memory_some_avg10: f64,
    pub io_some_avg10: f64,
}

/// One reading of a host, covering the interval that ends at `collected_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
    /// Agent wall-clock time at the end of the interval.
    pub collected_at: SystemTime,
    /// Length of the interval the rates cover.
    pub interval: Duration,
    /// 0-100 over all cores: 1 - Δ(idle+iowait)/Δtotal.
    pub cpu_percent: f64,
    /// Busy percent per core, in core order.
    pub cpu_core_percent: Vec<f64>,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub memory_total_bytes: u64,
    /// MemTotal - MemAvailable.
    pub memory_used_bytes: u64,
    pub memory_available_bytes: u64,
    pub swap_used_bytes: u64,
    pub filesystems: Vec<FilesystemUsage>,
    pub disks: Vec<DiskIo>,
    /// Sums over whole disks only.
    pub disk_read_bytes_per_sec: f64,
    pub disk_write_bytes_per_sec: f64,
    pub disk_read_ops_per_sec: f64,
    pub disk_write_ops_per_sec: f64,
    pub interfaces: Vec<NetIo>,
    /// Sums over the interfaces that are not excluded.
    pub net_rx_bytes_per_sec: f64,
    pub net_tx_bytes_per_sec: f64,
    /// Absent where the kernel has no /proc/pressure.
    pub pressure: Option<Pressure>,
    /// Application health over the interval; absent when nothing is scraped or probed.
    pub app: Option<AppHealth>,
}

/// One cumulative histogram bucket: observations <= `upper_bound` (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Upper bound in seconds; the last may be +Inf.
    pub upper_bound: f64,
    /// Observations at or below the bound, cumulative over bounds.
    pub cumulative_count: f64,
}

/// Per-interval application health: counts (deltas over the interval), not
/// rates, so that they add up across hosts and rounds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AppHealth {
    /// Requests counted by the app in the interval.
    pub requests: f64,
    /// Of those, errors (by default 5xx).
    pub errors: f64,
    /// Bucket deltas of the latency histogram over the interval.
    pub latency_buckets: Vec<Bucket>,
    pub latency_count: f64,
    pub latency_sum_seconds: f64,
    /// Named gauges from the scrape, sorted by name.
    pub gauges: Vec<(String, f64)>,
    /// A scrape is configured.
    pub scrape_enabled: bool,
    /// Scrapes attempted and failed in the interval, and the last reason.
    pub scrapes: u32,
    pub scrape_errors: u32,
    pub scrape_error: String,
    /// A probe is configured.
    pub probe_enabled: bool,
    /// Probes sent and failed (non-2xx, timeout, refused) in the interval.
    pub probes: u32,
    pub probe_errors: u32,
    pub probe_error: String,
    /// Probe latency histogram of the interval, bounds in seconds.
    pub probe_latency_buckets: Vec<Bucket>,
}

impl AppHealth {
    /// Checks that counts are finite and non-negative and buckets are ordered.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("app.requests", self.requests),
            ("app.errors", self.errors),
            ("app.latency_count", self.latency_count),
            ("app.latency_sum_seconds", self.latency_sum_seconds),
        ] {
            // Capped so that sums over hosts and rounds stay finite.
            if !value.is_finite() || !(0.0..=MAX_COUNT).contains(&value) {
                return Err(format!(
                    "{name} must be a number in [0, {MAX_COUNT}], got {value}"
                ));
            }
        }
        for (name, value) in [
            ("app.scrapes", self.scrapes),
            ("app.scrape_errors", self.scrape_errors),
            ("app.probes", self.probes),
            ("app.probe_errors", self.probe_errors),
        ] {
            if value > MAX_EVENTS {
                return Err(format!("{name} must be at most {MAX_EVENTS}, got {value}"));
            }
        }
        if self.scrape_errors > self.scrapes {
            return Err("app.scrape_errors exceeds app.scrapes".to_owned());
        }
        if self.errors > self.requests {
            return Err("app.errors exceeds app.requests".to_owned());
        }
        if self.probe_errors > self.probes {
            return Err("app.probe_errors exceeds app.probes".to_owned());
        }
        for (name, buckets) in [
            ("app.latency_buckets", &self.latency_buckets),
            ("app.probe_latency_buckets", &self.probe_latency_buckets),
        ] {
            if buckets.len() > MAX_BUCKETS {
                return Err(format!("{name} has more than {MAX_BUCKETS} buckets"));
            }
            let mut previous = f64::NEG_INFINITY;
            for bucket in buckets {
                if bucket.upper_bound.is_nan() || bucket.upper_bound <= previous {
                    return Err(format!("{name} bounds must be strictly increasing"));
                }
                if !bucket.cumulative_count.is_finite()
                    || !(0.0..=MAX_COUNT).contains(&bucket.cumulative_count)
                {
                    return Err(format!("{name} counts must be finite and non-negative"));
                }
                previous = bucket.upper_bound;
            }
        }
        if self.gauges.len() > MAX_GAUGES {
            return Err(format!("app.gauges has more than {MAX_GAUGES} entries"));
        }
        for (name, value) in &self.gauges {
            if name.is_empty() || name.len() > 128 {
                return Err("app gauge names must be 1 to 128 bytes".to_owned());
            }
            if !value.is_finite() {
                return Err(format!("app gauge `{name}` is not finite"));
            }
        }
        Ok(())
    }

    /// Returns the named gauge.
    pub fn gauge(&self, name: &str) -> Option<f64> {
        self.gauges.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// Largest per-interval count accepted from a peer (requests, bucket counts).
pub const MAX_COUNT: f64 = 1e12;
/// Largest per-interval number of scrapes or probes accepted from a peer.
pub const MAX_EVENTS: u32 = 1_000_000;

/// Most histogram buckets accepted from a peer.
pub const MAX_BUCKETS: usize = 64;
/// Most gauges accepted from a peer.
pub const MAX_GAUGES: usize = 64;
/// Most cores accepted from a peer.
pub const MAX_CORES: usize = 4096;
/// Most filesystems, disks or interfaces accepted from a peer.
pub const MAX_DEVICES: usize = 1024;
/// Longest device, mount point or gauge name accepted from a peer.
pub const MAX_NAME_LEN: usize = 4096;

impl HostSample {
    /// Returns an all-zero sample at `collected_at`, for tests and as a base to fill in.
    pub fn empty(collected_at: SystemTime, interval: Duration) -> Self {
        Self {
            collected_at,
            interval,
            cpu_percent: 0.0,
            cpu_core_percent: Vec::new(),
            load1: 0.0,
            load5: 0.0,
            load15: 0.0,
            memory_total_bytes: 0,
            memory_used_bytes: 0,
            memory_available_bytes: 0,
            swap_used_bytes: 0,
            filesystems: Vec::new(),
            disks: Vec::new(),
            disk_read_bytes_per_sec: 0.0,
            disk_write_bytes_per_sec: 0.0,
            disk_read_ops_per_sec: 0.0,
            disk_write_ops_per_sec: 0.0,
            interfaces: Vec::new(),
            net_rx_bytes_per_sec: 0.0,
            net_tx_bytes_per_sec: 0.0,
            pressure: None,
            app: None,
        }
    }

    /// Returns used memory as a percent of total (0 when total is unknown).
    pub fn memory_percent(&self) -> f64 {
        if self.memory_total_bytes == 0 {
            0.0
        } else {
            self.memory_used_bytes as f64 * 100.0 / self.memory_total_bytes as f64
        }
    }

    /// Checks that every figure is finite and in range; peer input goes through this.
    pub fn validate(&self) -> Result<(), String> {
        let figures = [
            ("cpu_percent", self.cpu_percent),
            ("load1", self.load1),
            ("load5", self.load5),
            ("load15", self.load15),
            ("disk_read_bytes_per_sec", self.disk_read_bytes_per_sec),
            ("disk_write_bytes_per_sec", self.disk_write_bytes_per_sec),
            ("disk_read_ops_per_sec", self.disk_read_ops_per_sec),
            ("disk_write_ops_per_sec", self.disk_write_ops_per_sec),
            ("net_rx_bytes_per_sec", self.net_rx_bytes_per_sec),
            ("net_tx_bytes_per_sec", self.net_tx_bytes_per_sec),
        ];
        for (name, value) in figures {
            if !value.is_finite() || value < 0.0 {
                return Err(format!(
                    "{name} must be a finite non-negative number, got {value}"
                ));
            }
        }
        if self.cpu_percent > 100.0 + 1e-6 {
            return Err(format!(
                "cpu_percent must be at most 100, got {}",
                self.cpu_percent
            ));
        }
        if self.memory_used_bytes > self.memory_total_bytes {
            return Err("memory_used_bytes exceeds memory_total_bytes".to_owned());
        }
        // A peer's lists are bounded, so one host's sample stays small in memory.
        if self.cpu_core_percent.len() > MAX_CORES {
            return Err(format!("cpu_core_percent has more than {MAX_CORES} cores"));
        }
        let lists = [
            ("filesystems", self.filesystems.len()),
            ("disks", self.disks.len()),
            ("interfaces", self.interfaces.len()),
        ];
        for (name, len) in lists {
            if len > MAX_DEVICES {
                return Err(format!("{name} has more than {MAX_DEVICES} entries"));
            }
        }
        let names = self
            .filesystems
            .iter()
            .flat_map(|f| [&f.mount_point, &f.device, &f.fs_type])
            .chain(self.disks.iter().map(|d| &d.device))
            .chain(self.interfaces.iter().map(|n| &n.interface));
        for name in names {
            if name.len() > MAX_NAME_LEN {
                return Err(format!("a device name is longer than {MAX_NAME_LEN} bytes"));
            }
        }
        if let Some(app) = &self.app {
            app.validate()?;
        }
        Ok(())
    }
}
