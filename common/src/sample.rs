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

/// Per-second rates of one whole block device.
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
}

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
        Ok(())
    }
}
