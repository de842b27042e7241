//! Used and total bytes of every real mounted filesystem, from
//! /proc/self/mounts and statvfs.
//!
//! A filesystem is real when its device starts with '/' and its type is not
//! in `definitions::SKIPPED_FS_TYPES` (nor `fuse.*`). Network filesystems
//! are skipped too: statvfs on a hung server would block the agent. Mounts
//! are deduplicated by device, the first mount point wins (bind mounts,
//! btrfs subvolumes).
//! Known gap: ZFS datasets (device "pool/dataset") are skipped by the device rule.
//! Does not report inodes.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rollguard_common::sample::FilesystemUsage;
use rollguard_common::HostSample;

use super::{read_file, CollectError};
use crate::collect::definitions::{is_real_filesystem, statvfs_usage};

#[cfg(test)]
mod tests;

/// One line of /proc/self/mounts, with octal escapes decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MountEntry<'a> {
    pub(super) device: Cow<'a, [u8]>,
    pub(super) mount_point: Cow<'a, [u8]>,
    pub(super) fs_type: &'a [u8],
}

/// Parses /proc/self/mounts. Works on bytes: mount points need not be UTF-8,
/// and one odd mount must not hide the others.
pub(super) fn parse_mounts(text: &[u8]) -> impl Iterator<Item = Result<MountEntry<'_>, String>> {
    text.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
            match (fields.next(), fields.next(), fields.next()) {
                (Some(device), Some(mount_point), Some(fs_type)) => Ok(MountEntry {
                    device: unescape(device),
                    mount_point: unescape(mount_point),
                    fs_type,
                }),
                _ => Err(format!(
                    "short mount line {:?}",
                    String::from_utf8_lossy(line)
                )),
            }
        })
}

/// Decodes the kernel's `\ooo` octal escapes (it escapes space, tab, newline
/// and backslash); anything else is kept as is. Borrows when there is no escape.
pub(super) fn unescape(field: &[u8]) -> Cow<'_, [u8]> {
    if !field.contains(&b'\\') {
        return Cow::Borrowed(field);
    }
    let mut out = Vec::with_capacity(field.len());
    let mut idx = 0;
    while let Some(&byte) = field.get(idx) {
        let escaped = match field.get(idx + 1..idx + 4) {
            Some(&[a, b, c]) if byte == b'\\' => octal_byte(a, b, c),
            _ => None,
        };
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                idx += 4;
            }
            None => {
                out.push(byte);
                idx += 1;
            }
        }
    }
    Cow::Owned(out)
}

fn octal_byte(a: u8, b: u8, c: u8) -> Option<u8> {
    let digit = |d: u8| (b'0'..=b'7').contains(&d).then(|| u32::from(d - b'0'));
    let value = digit(a)? * 64 + digit(b)? * 8 + digit(c)?;
    u8::try_from(value).ok()
}

/// Reads /proc/self/mounts at `path` and fills `filesystems`; a failure for
/// one mount adds an error and skips only that mount.
pub(super) fn collect(
    path: &Path,
    buf: &mut Vec<u8>,
    sample: &mut HostSample,
    errors: &mut Vec<CollectError>,
) {
    match read_file(path, buf) {
        Ok(text) => fill(text, path, statvfs_usage, sample, errors),
        Err(err) => errors.push(err),
    }
}

/// Fills `filesystems` from the text of /proc/self/mounts, asking `usage` for
/// `(used, total)` bytes of each real, not yet seen device.
pub(super) fn fill(
    text: &[u8],
    path: &Path,
    mut usage: impl FnMut(&Path) -> io::Result<(u64, u64)>,
    sample: &mut HostSample,
    errors: &mut Vec<CollectError>,
) {
    let mut seen_devices: Vec<Cow<'_, [u8]>> = Vec::new();
    for entry in parse_mounts(text) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(message) => {
                errors.push(super::parse_error(path, message));
                continue;
            }
        };
        if !is_real_filesystem(&entry.device, entry.fs_type) {
            continue;
        }
        if seen_devices.contains(&entry.device) {
            continue;
        }
        let mount_point = Path::new(OsStr::from_bytes(&entry.mount_point));
        match usage(mount_point) {
            Ok((used_bytes, total_bytes)) => sample.filesystems.push(FilesystemUsage {
                mount_point: String::from_utf8_lossy(&entry.mount_point).into_owned(),
                device: String::from_utf8_lossy(&entry.device).into_owned(),
                fs_type: String::from_utf8_lossy(entry.fs_type).into_owned(),
                used_bytes,
                total_bytes,
            }),
            Err(source) => errors.push(CollectError::Statvfs {
                mount_point: String::from_utf8_lossy(&entry.mount_point).into_owned(),
                source,
            }),
        }
        // A failed mount still claims its device: first mount point wins.
        seen_devices.push(entry.device);
    }
}
