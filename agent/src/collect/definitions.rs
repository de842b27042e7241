//! The definitions both backends share, so that a figure means the same
//! whichever one read it: which interfaces and filesystems count, how a
//! filesystem's used bytes are counted (statvfs: blocks − free blocks, so
//! the root-reserved blocks count as used, as `df` shows them), and the
//! per-second rates of an interface's counters against the previous
//! reading.
//!
//! Main items: [`interface_counts`], [`is_real_filesystem`],
//! [`statvfs_usage`], [`NetCounters`] and [`PrevCounters`]. Nothing here
//! reads a file of its own or knows which backend called it.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use rollguard_common::sample::NetIo;
use rollguard_common::HostSample;

use super::{per_sec, CollectConfig};

/// Returns whether an interface counts: one of `include` when that is
/// non-empty, otherwise any name that starts with none of the `exclude` prefixes.
pub(super) fn interface_counts(name: &str, include: &[String], exclude: &[String]) -> bool {
    if !include.is_empty() {
        return include.iter().any(|included| included == name);
    }
    !exclude
        .iter()
        .any(|prefix| name.starts_with(prefix.as_str()))
}

/// Filesystem types that are never reported: pseudo and in-memory
/// filesystems, read-only images that are always full, and network
/// filesystems.
pub(super) const SKIPPED_FS_TYPES: &[&str] = &[
    // Pseudo and in-memory.
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    // Read-only images, always 100% used.
    "erofs",
    "iso9660",
    "squashfs",
    "udf",
    // Network.
    "9p",
    "afs",
    "ceph",
    "cifs",
    "glusterfs",
    "nfs",
    "nfs4",
    "smb3",
    "smbfs",
];

/// Returns whether a mount entry is a real filesystem worth reporting: a
/// device path (not "proc", "tmpfs", "pool/dataset") and a type
/// [`is_real_fs_type`] accepts.
pub(super) fn is_real_filesystem(device: &[u8], fs_type: &[u8]) -> bool {
    device.first() == Some(&b'/') && is_real_fs_type(fs_type)
}

/// Returns whether a filesystem type is worth reporting: not in
/// [`SKIPPED_FS_TYPES`], and not FUSE.
pub(super) fn is_real_fs_type(fs_type: &[u8]) -> bool {
    !fs_type.starts_with(b"fuse.")
        && !SKIPPED_FS_TYPES
            .iter()
            .any(|skipped| skipped.as_bytes() == fs_type)
}

/// Returns `(used, total)` bytes of the filesystem mounted at `mount_point`.
pub(super) fn statvfs_usage(mount_point: &Path) -> io::Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(mount_point)?;
    let used_blocks = stat.f_blocks.saturating_sub(stat.f_bfree);
    Ok((
        used_blocks.saturating_mul(stat.f_frsize),
        stat.f_blocks.saturating_mul(stat.f_frsize),
    ))
}

/// The cumulative counters of one interface that the sample needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct NetCounters {
    pub(super) rx_bytes: u64,
    pub(super) rx_packets: u64,
    pub(super) rx_errors: u64,
    pub(super) rx_drops: u64,
    pub(super) tx_bytes: u64,
    pub(super) tx_packets: u64,
    pub(super) tx_errors: u64,
    pub(super) tx_drops: u64,
}

/// Returns the per-second rates between two readings of one interface.
pub(super) fn net_io(interface: &str, prev: &NetCounters, cur: &NetCounters, secs: f64) -> NetIo {
    NetIo {
        interface: interface.to_owned(),
        rx_bytes_per_sec: per_sec(prev.rx_bytes, cur.rx_bytes, secs),
        tx_bytes_per_sec: per_sec(prev.tx_bytes, cur.tx_bytes, secs),
        rx_packets_per_sec: per_sec(prev.rx_packets, cur.rx_packets, secs),
        tx_packets_per_sec: per_sec(prev.tx_packets, cur.tx_packets, secs),
        rx_errors_per_sec: per_sec(prev.rx_errors, cur.rx_errors, secs),
        tx_errors_per_sec: per_sec(prev.tx_errors, cur.tx_errors, secs),
        rx_drops_per_sec: per_sec(prev.rx_drops, cur.rx_drops, secs),
        tx_drops_per_sec: per_sec(prev.tx_drops, cur.tx_drops, secs),
    }
}

/// The previous cumulative counters of every device of one kind, keyed by
/// name. A device listed for the first time has no previous reading, and
/// one that disappears is forgotten, so that a replacement under the same
/// name starts afresh: its first rates are 0, never its counters since boot.
#[derive(Debug)]
pub(super) struct PrevCounters<C> {
    /// Counters and the generation of the last reading that listed the device.
    entries: HashMap<String, (C, u64)>,
    generation: u64,
    n_seen: usize,
}

impl<C> Default for PrevCounters<C> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            generation: 0,
            n_seen: 0,
        }
    }
}

impl<C: Copy> PrevCounters<C> {
    /// Starts a reading: every device it does not [`swap`](Self::swap) is
    /// forgotten by [`finish`](Self::finish).
    pub(super) fn start(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.n_seen = 0;
    }

    /// Keeps `cur` as the reading of `name` and returns the previous one, or
    /// `cur` itself when there is none (every delta 0).
    pub(super) fn swap(&mut self, name: &str, cur: C) -> C {
        self.n_seen += 1;
        let generation = self.generation;
        match self.entries.get_mut(name) {
            Some((counters, seen)) => {
                *seen = generation;
                std::mem::replace(counters, cur)
            }
            None => {
                self.entries.insert(name.to_owned(), (cur, generation));
                cur
            }
        }
    }

    /// Forgets the devices this reading did not list.
    pub(super) fn finish(&mut self) {
        if self.entries.len() > self.n_seen {
            let generation = self.generation;
            self.entries.retain(|_, (_, seen)| *seen == generation);
        }
    }
}

/// Per-interface rates against the previous reading, over the interfaces
/// the config counts; those that do not count are neither reported nor
/// remembered. An interface listed for the first time, or whose counter
/// went backwards, gets rate 0 for that interval.
#[derive(Debug, Default)]
pub(super) struct NetRates {
    prev: PrevCounters<NetCounters>,
}

impl NetRates {
    /// Starts a reading of every interface.
    pub(super) fn start(&mut self) {
        self.prev.start();
    }

    /// Adds the rates of interface `name` over `secs` to `interfaces` and
    /// the host-wide sums of `sample`, if it counts.
    pub(super) fn add(
        &mut self,
        name: &str,
        cur: NetCounters,
        secs: f64,
        config: &CollectConfig,
        sample: &mut HostSample,
    ) {
        if !interface_counts(name, &config.include_interfaces, &config.exclude_interfaces) {
            return;
        }
        let prev = self.prev.swap(name, cur);
        let io = net_io(name, &prev, &cur, secs);
        sample.net_rx_bytes_per_sec += io.rx_bytes_per_sec;
        sample.net_tx_bytes_per_sec += io.tx_bytes_per_sec;
        sample.interfaces.push(io);
    }

    /// Ends the reading: forgets the interfaces it did not list.
    pub(super) fn finish(&mut self) {
        self.prev.finish();
    }
}
