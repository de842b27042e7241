//! A realistic `HostSample` for one simulated host: what the real agent sends
//! from a 4-core host with 2 mounts, 2 disks, 2 interfaces and PSI, that
//! scrapes and probes its app (request and error counts, a 12-bucket latency
//! histogram delta, 3 gauges, and the probe's 12-bucket histogram).
//!
//! Figures move a little every interval (a small xorshift generator seeded by
//! the host index), so that no field is the protobuf default and left out of
//! the encoding: the sizes on the wire are those of a busy host. It does not
//! model any correlation between figures.

use std::time::{Duration, SystemTime};

use rollguard_common::sample::{AppHealth, Bucket, DiskIo, FilesystemUsage, NetIo, Pressure};
use rollguard_common::HostSample;

/// Latency bucket bounds in seconds: Prometheus' defaults and +Inf, as the agent sends them.
const BOUNDS: [f64; 12] = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    f64::INFINITY,
];
/// Share of requests at or below each bound (cumulative), before jitter.
const LATENCY_SHAPE: [f64; 12] = [
    0.05, 0.2, 0.55, 0.8, 0.93, 0.98, 0.995, 0.999, 1.0, 1.0, 1.0, 1.0,
];
const GIB: u64 = 1 << 30;

/// Makes the samples of one simulated host.
#[derive(Debug)]
pub(crate) struct SampleGen {
    rng: u64,
    /// The last sample; numbers are updated in place, names stay.
    template: HostSample,
}

impl SampleGen {
    /// A generator for host `idx` sampling every `interval`.
    pub(crate) fn new(idx: usize, interval: Duration) -> Self {
        let mut gen = SampleGen {
            // Never zero: xorshift stays at zero forever.
            rng: (0x9E37_79B9_7F4A_7C15 ^ (idx as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D)) | 1,
            template: HostSample {
                memory_total_bytes: 16 * GIB,
                filesystems: vec![
                    filesystem("/", "/dev/nvme0n1p2", "ext4", 64 * GIB),
                    filesystem("/var/lib/app", "/dev/nvme1n1p1", "xfs", 512 * GIB),
                ],
                disks: vec![disk("nvme0n1"), disk("nvme1n1")],
                interfaces: vec![interface("eth0"), interface("eth1")],
                cpu_core_percent: vec![0.0; 4],
                ..HostSample::empty(SystemTime::now(), interval)
            },
        };
        gen.step(SystemTime::now());
        gen
    }

    /// Returns the sample of the interval that ends at `collected_at`.
    pub(crate) fn next(&mut self, collected_at: SystemTime) -> HostSample {
        self.step(collected_at);
        self.template.clone()
    }

    fn step(&mut self, collected_at: SystemTime) {
        let cores: Vec<f64> = (0..4).map(|_| self.around(35.0, 0.6)).collect();
        let (load1, load5, load15) = (self.around(1.6, 0.3), self.around(1.5, 0.1), 1.4);
        let used = (self.around(9.0, 0.05) * GIB as f64) as u64;
        let (disk_read, disk_write) = (self.around(4e6, 0.5), self.around(9e6, 0.5));
        let (read_ops, write_ops) = (self.around(300.0, 0.5), self.around(700.0, 0.5));
        let (rx, tx) = (self.around(2.5e7, 0.3), self.around(1.8e7, 0.3));
        let pressure = Pressure {
            cpu_some_avg10: self.around(2.0, 0.5),
            memory_some_avg10: self.around(0.3, 0.5),
            io_some_avg10: self.around(1.1, 0.5),
        };
        let app = self.app();
        let disk_shares = [0.3, 0.7];
        let disks: Vec<DiskIo> = disk_shares
            .iter()
            .map(|share| DiskIo {
                read_bytes_per_sec: disk_read * share,
                write_bytes_per_sec: disk_write * share,
                read_ops_per_sec: (read_ops * share).round(),
                write_ops_per_sec: (write_ops * share).round(),
                ..Default::default()
            })
            .collect();
        let mut nets = Vec::new();
        for share in [0.8, 0.2] {
            nets.push(NetIo {
                rx_bytes_per_sec: rx * share,
                tx_bytes_per_sec: tx * share,
                rx_packets_per_sec: (rx * share / 900.0).round(),
                tx_packets_per_sec: (tx * share / 700.0).round(),
                ..Default::default()
            });
        }
        let fs_used = [self.around(0.42, 0.01), self.around(0.67, 0.01)];

        let s = &mut self.template;
        s.collected_at = collected_at;
        s.cpu_percent = cores.iter().sum::<f64>() / cores.len() as f64;
        s.cpu_core_percent = cores;
        (s.load1, s.load5, s.load15) = (load1, load5, load15);
        s.memory_used_bytes = used;
        s.memory_available_bytes = s.memory_total_bytes - used;
        s.swap_used_bytes = 48 << 20;
        (s.disk_read_bytes_per_sec, s.disk_write_bytes_per_sec) = (disk_read, disk_write);
        (s.disk_read_ops_per_sec, s.disk_write_ops_per_sec) = (read_ops, write_ops);
        (s.net_rx_bytes_per_sec, s.net_tx_bytes_per_sec) = (rx, tx);
        s.pressure = Some(pressure);
        for (slot, value) in s.disks.iter_mut().zip(disks) {
            *slot = DiskIo {
                device: std::mem::take(&mut slot.device),
                ..value
            };
        }
        for (slot, value) in s.interfaces.iter_mut().zip(nets) {
            *slot = NetIo {
                interface: std::mem::take(&mut slot.interface),
                ..value
            };
        }
        for (fs, share) in s.filesystems.iter_mut().zip(fs_used) {
            fs.used_bytes = (fs.total_bytes as f64 * share) as u64;
        }
        s.app = Some(app);
    }

    /// One interval of app health: ~200 requests, a few errors, the latency
    /// histogram delta, the gauges the agent copies by default, and one probe.
    fn app(&mut self) -> AppHealth {
        let requests = self.around(200.0, 0.1).round();
        let errors = (self.next_f64() * 3.0).floor();
        let latency_buckets = BOUNDS
            .iter()
            .zip(LATENCY_SHAPE)
            .map(|(&upper_bound, share)| Bucket {
                upper_bound,
                cumulative_count: (requests * share).round(),
            })
            .collect();
        let probe_ms = self.around(2.0, 0.5);
        let probe_latency_buckets = BOUNDS
            .iter()
            .map(|&upper_bound| Bucket {
                upper_bound,
                cumulative_count: if probe_ms / 1000.0 <= upper_bound {
                    1.0
                } else {
                    0.0
                },
            })
            .collect();
        AppHealth {
            requests,
            errors,
            latency_buckets,
            latency_count: requests,
            latency_sum_seconds: requests * self.around(0.03, 0.2),
            // Sorted by name, as the agent keeps them.
            gauges: vec![
                ("cache_hit_ratio".to_owned(), self.around(0.93, 0.02)),
                ("queue_depth".to_owned(), self.around(12.0, 0.5).round()),
                ("worker_health".to_owned(), 1.0),
            ],
            scrape_enabled: true,
            scrapes: 1,
            probe_enabled: true,
            probes: 1,
            probe_latency_buckets,
            ..Default::default()
        }
    }

    /// `mean` moved by up to `spread` (relative) either way.
    fn around(&mut self, mean: f64, spread: f64) -> f64 {
        mean * (1.0 + spread * (2.0 * self.next_f64() - 1.0))
    }

    /// Uniform in [0, 1) (xorshift64*).
    fn next_f64(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let bits = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 53) as f64
    }
}

fn filesystem(mount_point: &str, device: &str, fs_type: &str, total_bytes: u64) -> FilesystemUsage {
    FilesystemUsage {
        mount_point: mount_point.to_owned(),
        device: device.to_owned(),
        fs_type: fs_type.to_owned(),
        used_bytes: 0,
        total_bytes,
    }
}

fn disk(device: &str) -> DiskIo {
    DiskIo {
        device: device.to_owned(),
        ..Default::default()
    }
}

fn interface(name: &str) -> NetIo {
    NetIo {
        interface: name.to_owned(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
