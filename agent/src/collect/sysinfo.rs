//! The `sysinfo` backend: the same sample from the `sysinfo` crate, on
//! every OS it supports; the only backend off Linux.
//!
//! Main type: [`SysinfoSource`], which keeps one `System`, one `Disks` and
//! one `Networks` for its whole life (CPU usage is computed from the previous
//! refresh) and refreshes only what a sample holds: CPU usage, RAM and swap,
//! the mount list with its IO counters, and the interfaces' counters.
//!
//! Where each figure comes from, and where it differs from `procfs`:
//! - CPU: `System::refresh_cpu_specifics`, usage only. sysinfo refreshes it at
//!   most every `MINIMUM_CPU_UPDATE_INTERVAL` (200 ms), so the config refuses
//!   a shorter `interval` with this backend. It adds guest time to the total
//!   that the kernel already counts in user time: on a host running VMs its
//!   figure is a little lower.
//! - Load: `System::load_average` (zeros where the OS has none).
//! - Memory: total − available, as the OS defines "available".
//! - Filesystems: sysinfo's mount list, filtered by the same rules as procfs
//!   (`definitions`; off Linux the device rule is left out, as volumes are not
//!   named by a device path there), used and total bytes from the same
//!   statvfs (blocks − free blocks; sysinfo's own "available" leaves out the
//!   root-reserved blocks).
//! - Disks: the devices of those filesystems, as /proc/diskstats names them on
//!   Linux (`/dev/mapper/root` is `dm-0`), one entry per device, and the sums
//!   over them. sysinfo gives bytes only: read and write ops per second are
//!   0 with this backend, and unmounted disks are not listed.
//! - Interfaces: bytes, packets and errors; sysinfo gives no drop counts, so
//!   drops are 0 with this backend.
//! - Pressure: from /proc/pressure on Linux, exactly as procfs reads it;
//!   absent (`None`) elsewhere.
//!
//! Deliberately NOT done here: no process, user, component or GPU refresh
//! (the crate is built without them), no CPU frequency.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;

use ::sysinfo::{
    CpuRefreshKind, Disk, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System,
};
use rollguard_common::sample::{DiskIo, FilesystemUsage, MAX_DEVICES};
use rollguard_common::HostSample;

#[cfg(target_os = "linux")]
use super::procfs::PressureFiles;

use super::definitions::{
    is_real_filesystem, is_real_fs_type, statvfs_usage, NetCounters, NetRates, PrevCounters,
};
use super::{per_sec, CollectConfig, CollectError};

#[cfg(test)]
mod tests;

/// Every figure of a sample, read through sysinfo.
#[derive(Debug)]
pub(super) struct SysinfoSource {
    config: CollectConfig,
    /// CPU, memory and swap; the reason when sysinfo cannot read them here.
    system: Result<System, String>,
    /// Mounted filesystems and their devices' IO counters.
    disks: Result<Disks, String>,
    networks: Result<Networks, String>,
    /// Cumulative (read, written) bytes per device.
    disk_prev: PrevCounters<(u64, u64)>,
    net_rates: NetRates,
    /// The statistics name of each mount's device, resolved once.
    device_names: HashMap<OsString, String>,
    /// Interfaces of one reading, sorted by name before they are added.
    net_scratch: Vec<(String, NetCounters)>,
    #[cfg(target_os = "linux")]
    pressure: PressureFiles,
}

// === impl SysinfoSource ===

impl SysinfoSource {
    /// Opens sysinfo's handles; reads nothing yet.
    pub(super) fn new(config: CollectConfig) -> Self {
        Self {
            system: System::new_with_specifics(RefreshKind::nothing()).map_err(|e| e.to_string()),
            disks: Disks::new().map_err(|e| e.to_string()),
            networks: Networks::new().map_err(|e| e.to_string()),
            disk_prev: PrevCounters::default(),
            net_rates: NetRates::default(),
            device_names: HashMap::new(),
            net_scratch: Vec::new(),
            #[cfg(target_os = "linux")]
            pressure: PressureFiles::new(&config.proc_root),
            config,
        }
    }

    /// Refreshes the cumulative counters (cpu, disks, network) and fills the
    /// rates over `secs`, then keeps the reading as the next baseline.
    pub(super) fn read_counters(
        &mut self,
        secs: f64,
        sample: &mut HostSample,
        errors: &mut Vec<CollectError>,
    ) {
        match &mut self.system {
            Ok(system) => {
                system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
                sample.cpu_percent = f64::from(system.global_cpu_usage());
                sample.cpu_core_percent.clear();
                sample
                    .cpu_core_percent
                    .extend(system.cpus().iter().map(|cpu| f64::from(cpu.usage())));
            }
            Err(reason) => errors.push(unsupported("CPU and memory", reason)),
        }
        match &mut self.disks {
            Ok(disks) => {
                // Re-lists the mounts too, so the filesystems read in
                // `read_gauges` are this tick's.
                disks.refresh_specifics(true, DiskRefreshKind::nothing().with_io_usage());
                self.disk_prev.start();
                disk_rates(
                    disks,
                    &mut self.device_names,
                    &mut self.disk_prev,
                    secs,
                    sample,
                );
                self.disk_prev.finish();
                // Forget the devices of unmounted filesystems, so that
                // mounts coming and going (containers) do not grow the map;
                // a few names against a few dozen mounts.
                self.device_names
                    .retain(|name, _| disks.iter().any(|disk| disk.name() == name));
            }
            Err(reason) => errors.push(unsupported("disks", reason)),
        }
        match &mut self.networks {
            Ok(networks) => {
                networks.refresh(true);
                self.net_scratch.clear();
                self.net_scratch.extend(networks.iter().map(|(name, data)| {
                    let counters = NetCounters {
                        rx_bytes: data.total_received(),
                        rx_packets: data.total_packets_received(),
                        rx_errors: data.total_errors_on_received(),
                        tx_bytes: data.total_transmitted(),
                        tx_packets: data.total_packets_transmitted(),
                        tx_errors: data.total_errors_on_transmitted(),
                        ..NetCounters::default()
                    };
                    (name.to_string_lossy().into_owned(), counters)
                }));
                // sysinfo keeps interfaces in a hash map; a stable order
                // keeps the compact encoding's layout stable.
                self.net_scratch.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                self.net_rates.start();
                for (name, counters) in &self.net_scratch {
                    self.net_rates
                        .add(name, *counters, secs, &self.config, sample);
                }
                self.net_rates.finish();
            }
            Err(reason) => errors.push(unsupported("network interfaces", reason)),
        }
    }

    /// Reads the instantaneous values (load, memory, filesystems, pressure).
    pub(super) fn read_gauges(&mut self, sample: &mut HostSample, errors: &mut Vec<CollectError>) {
        match System::load_average() {
            Ok(load) => {
                sample.load1 = load.one;
                sample.load5 = load.five;
                sample.load15 = load.fifteen;
            }
            Err(err) => errors.push(unsupported("the load average", &err.to_string())),
        }
        if let Ok(system) = &mut self.system {
            system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
            sample.memory_total_bytes = system.total_memory();
            sample.memory_available_bytes = system.available_memory();
            sample.memory_used_bytes = system
                .total_memory()
                .saturating_sub(system.available_memory());
            sample.swap_used_bytes = system.total_swap().saturating_sub(system.free_swap());
        }
        if let Ok(disks) = &self.disks {
            filesystems(disks, sample, errors);
        }
        #[cfg(target_os = "linux")]
        {
            sample.pressure = self.pressure.read(errors);
        }
    }
}

fn unsupported(what: &'static str, reason: &str) -> CollectError {
    CollectError::Sysinfo {
        what,
        reason: reason.to_owned(),
    }
}

/// Returns whether a mount is a real filesystem: the procfs rules on Linux;
/// elsewhere the type rule only, as sysinfo names volumes (macOS) or ZFS
/// datasets (FreeBSD) rather than device paths there.
fn counts(disk: &Disk) -> bool {
    let device = disk.name().as_encoded_bytes();
    let fs_type = disk.file_system().as_encoded_bytes();
    if cfg!(target_os = "linux") {
        is_real_filesystem(device, fs_type)
    } else {
        is_real_fs_type(fs_type)
    }
}

/// Fills `disks` and the host-wide disk sums: one entry per device of a real
/// filesystem (the first mount of a device wins), rates over `secs`.
fn disk_rates(
    disks: &Disks,
    device_names: &mut HashMap<OsString, String>,
    prev: &mut PrevCounters<(u64, u64)>,
    secs: f64,
    sample: &mut HostSample,
) {
    for disk in disks.iter() {
        if !counts(disk) {
            continue;
        }
        let device = device_names
            .entry(disk.name().to_owned())
            .or_insert_with(|| stats_name(disk.name()));
        if sample.disks.iter().any(|io| io.device == *device) {
            continue;
        }
        if sample.disks.len() == MAX_DEVICES {
            break;
        }
        let usage = disk.usage();
        let cur = (usage.total_read_bytes, usage.total_written_bytes);
        let (prev_read, prev_written) = prev.swap(device, cur);
        let io = DiskIo {
            device: device.clone(),
            read_bytes_per_sec: per_sec(prev_read, cur.0, secs),
            write_bytes_per_sec: per_sec(prev_written, cur.1, secs),
            // sysinfo counts bytes only.
            read_ops_per_sec: 0.0,
            write_ops_per_sec: 0.0,
        };
        sample.disk_read_bytes_per_sec += io.read_bytes_per_sec;
        sample.disk_write_bytes_per_sec += io.write_bytes_per_sec;
        sample.disks.push(io);
    }
}

/// Returns the name the OS's disk statistics use for a mount's device:
/// symlinks resolved and `/dev/` dropped (`/dev/mapper/root` -> `dm-0`),
/// or the name as sysinfo gives it when it is not a path.
fn stats_name(device: &OsStr) -> String {
    let path = Path::new(device);
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = resolved.strip_prefix("/dev").unwrap_or(&resolved);
    name.to_string_lossy().into_owned()
}

/// Fills `filesystems`: every real filesystem once (the first mount of a
/// device wins), used and total bytes from statvfs as procfs counts them.
fn filesystems(disks: &Disks, sample: &mut HostSample, errors: &mut Vec<CollectError>) {
    let mut seen_devices: Vec<&OsStr> = Vec::new();
    for disk in disks.iter() {
        if !counts(disk) || seen_devices.contains(&disk.name()) {
            continue;
        }
        // A failed mount still claims its device, as in procfs.
        seen_devices.push(disk.name());
        let device = disk.name().to_string_lossy();
        let mount_point = disk.mount_point();
        match statvfs_usage(mount_point) {
            Ok((used_bytes, total_bytes)) => sample.filesystems.push(FilesystemUsage {
                mount_point: mount_point.to_string_lossy().into_owned(),
                device: device.into_owned(),
                fs_type: disk.file_system().to_string_lossy().into_owned(),
                used_bytes,
                total_bytes,
            }),
            Err(source) => errors.push(CollectError::Statvfs {
                mount_point: mount_point.to_string_lossy().into_owned(),
                source,
            }),
        }
    }
}
