//! Per-device IO rates from /proc/diskstats, and host-wide sums over whole
//! disks only.
//!
//! Every storage block device is listed: whole disks, partitions,
//! device-mapper and md volumes, nbd. Devices that are not storage of the
//! host ([`NOT_LISTED_PREFIXES`]: loop, ram, zram, optical, floppy) are not.
//!
//! A device is a whole disk when `<sys_root>/block/<name>` exists (that
//! directory lists whole disks only, never partitions) and its name does not
//! start with one of [`NOT_WHOLE_DISK_PREFIXES`]: device-mapper, md RAID,
//! loop, ram, zram, nbd, optical and floppy devices either stack on another
//! disk (their IO would be counted twice) or are not disks. Only whole disks
//! add to the sums. Both decisions are made once per device name and
//! cached. Does not report queue depth or IO latency.

use std::collections::HashMap;
use std::path::Path;

use rollguard_common::sample::{DiskIo, MAX_DEVICES};
use rollguard_common::HostSample;

use super::{parse_error, per_sec, read_text, CollectError};

#[cfg(test)]
mod tests;

/// The kernel counts diskstats sectors in 512-byte units whatever the
/// device's real sector size.
const SECTOR_BYTES: f64 = 512.0;

/// Name prefixes of block devices that never count as whole disks.
pub(super) const NOT_WHOLE_DISK_PREFIXES: &[&str] =
    &["dm-", "md", "loop", "ram", "zram", "nbd", "sr", "fd"];

/// Name prefixes of block devices that are not listed at all: file- or
/// memory-backed, or removable media.
pub(super) const NOT_LISTED_PREFIXES: &[&str] = &["loop", "ram", "zram", "sr", "fd"];

/// Returns whether a block device counts as a whole disk, given whether
/// `/sys/block/<name>` exists.
pub(super) fn is_whole_disk(name: &str, in_sys_block: bool) -> bool {
    in_sys_block
        && !NOT_WHOLE_DISK_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// The cumulative counters of one /proc/diskstats line that the sample needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct DiskCounters {
    pub(super) reads: u64,
    pub(super) sectors_read: u64,
    pub(super) writes: u64,
    pub(super) sectors_written: u64,
}

/// Parses /proc/diskstats into `(device name, counters)` per line, without allocating.
pub(super) fn parse_diskstats(
    text: &str,
) -> impl Iterator<Item = Result<(&str, DiskCounters), String>> + '_ {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(parse_line)
}

fn parse_line(line: &str) -> Result<(&str, DiskCounters), String> {
    let mut tokens = line.split_ascii_whitespace();
    // major minor name, then reads, reads merged, sectors read, ms reading,
    // writes, writes merged, sectors written, ...
    let name = tokens
        .nth(2)
        .ok_or_else(|| format!("short line {line:?}"))?;
    let mut values = [0u64; 7];
    for slot in &mut values {
        let token = tokens
            .next()
            .ok_or_else(|| format!("short line for {name}: {line:?}"))?;
        *slot = token
            .parse()
            .map_err(|err| format!("bad counter {token:?} for {name}: {err}"))?;
    }
    Ok((
        name,
        DiskCounters {
            reads: values[0],
            sectors_read: values[2],
            writes: values[4],
            sectors_written: values[6],
        },
    ))
}

/// What is kept per device name between two readings.
#[derive(Debug)]
struct DiskEntry {
    /// Decided once, when the name is first seen.
    whole: bool,
    /// Listed in the sample (storage of the host); decided with `whole`.
    listed: bool,
    counters: DiskCounters,
    /// `DiskState::generation` of the last reading that listed the device.
    seen: u64,
}

/// Previous counters of every device, keyed by name; devices that disappear
/// are forgotten so a replacement under the same name is decided afresh.
#[derive(Debug, Default)]
pub(super) struct DiskState {
    entries: HashMap<String, DiskEntry>,
    generation: u64,
    /// Partitions and stacked devices of the reading, listed after the
    /// whole disks (kept to reuse the allocation).
    others: Vec<DiskIo>,
}

impl DiskState {
    /// Reads /proc/diskstats at `path` and fills the disk part of `sample`.
    pub(super) fn collect(
        &mut self,
        path: &Path,
        buf: &mut Vec<u8>,
        secs: f64,
        in_sys_block: impl FnMut(&str) -> bool,
        sample: &mut HostSample,
    ) -> Result<(), CollectError> {
        let text = read_text(path, buf)?;
        self.update(text, secs, in_sys_block, sample)
            .map_err(|message| parse_error(path, message))
    }

    /// Fills `disks` and the host-wide disk sums with rates over `secs` against
    /// the previous reading. A device seen for the first time, or whose counter
    /// went backwards, gets rate 0 for this interval. A malformed line is
    /// skipped and reported; the other devices are still filled.
    pub(super) fn update(
        &mut self,
        text: &str,
        secs: f64,
        mut in_sys_block: impl FnMut(&str) -> bool,
        sample: &mut HostSample,
    ) -> Result<(), String> {
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let mut first_error = None;
        let mut n_seen = 0usize;
        for item in parse_diskstats(text) {
            let (name, cur) = match item {
                Ok(parsed) => parsed,
                Err(message) => {
                    first_error.get_or_insert(message);
                    continue;
                }
            };
            n_seen += 1;
            let (prev, whole) = if let Some(entry) = self.entries.get_mut(name) {
                let prev = entry.counters;
                entry.counters = cur;
                entry.seen = generation;
                if !entry.listed {
                    continue;
                }
                (prev, entry.whole)
            } else {
                let listed = !NOT_LISTED_PREFIXES.iter().any(|p| name.starts_with(p));
                let whole = listed && is_whole_disk(name, in_sys_block(name));
                let entry = DiskEntry {
                    whole,
                    listed,
                    counters: cur,
                    seen: generation,
                };
                self.entries.insert(name.to_owned(), entry);
                if !listed {
                    continue;
                }
                // No previous reading: every delta is 0.
                (cur, whole)
            };
            let io = DiskIo {
                device: name.to_owned(),
                read_bytes_per_sec: per_sec(prev.sectors_read, cur.sectors_read, secs)
                    * SECTOR_BYTES,
                write_bytes_per_sec: per_sec(prev.sectors_written, cur.sectors_written, secs)
                    * SECTOR_BYTES,
                read_ops_per_sec: per_sec(prev.reads, cur.reads, secs),
                write_ops_per_sec: per_sec(prev.writes, cur.writes, secs),
            };
            if whole {
                sample.disk_read_bytes_per_sec += io.read_bytes_per_sec;
                sample.disk_write_bytes_per_sec += io.write_bytes_per_sec;
                sample.disk_read_ops_per_sec += io.read_ops_per_sec;
                sample.disk_write_ops_per_sec += io.write_ops_per_sec;
                sample.disks.push(io);
            } else {
                self.others.push(io);
            }
        }
        // Whole disks first, then the rest, within what the coordinator takes
        // (a sample over it is refused whole, and the host would go unseen).
        sample.disks.truncate(MAX_DEVICES);
        let room = MAX_DEVICES - sample.disks.len();
        let others = self.others.len();
        sample.disks.extend(self.others.drain(..).take(room));
        if others > room {
            first_error.get_or_insert(format!(
                "{} partitions or stacked devices left out: at most {MAX_DEVICES} devices are listed",
                others - room
            ));
        }
        if self.entries.len() > n_seen {
            self.entries.retain(|_, entry| entry.seen == generation);
        }
        first_error.map_or(Ok(()), Err)
    }
}
