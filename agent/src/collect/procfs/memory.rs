//! Memory and swap use from /proc/meminfo. Used memory is MemTotal −
//! MemAvailable (the kernel's own estimate of what can be reclaimed without
//! swapping), not MemTotal − MemFree. Does not read cgroup limits.

use std::path::Path;

use rollguard_common::HostSample;

use super::{parse_error, read_text, CollectError};

#[cfg(test)]
mod tests;

/// The four /proc/meminfo values the sample needs, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct MemInfo {
    pub(super) total_bytes: u64,
    pub(super) available_bytes: u64,
    pub(super) swap_total_bytes: u64,
    pub(super) swap_free_bytes: u64,
}

impl MemInfo {
    /// Fills the memory and swap fields of `sample`.
    pub(super) fn fill(&self, sample: &mut HostSample) {
        sample.memory_total_bytes = self.total_bytes;
        sample.memory_available_bytes = self.available_bytes;
        sample.memory_used_bytes = self.total_bytes.saturating_sub(self.available_bytes);
        sample.swap_used_bytes = self.swap_total_bytes.saturating_sub(self.swap_free_bytes);
    }
}

/// Parses MemTotal, MemAvailable, SwapTotal and SwapFree from the text of
/// /proc/meminfo; every one of them is required (MemAvailable exists since Linux 3.14).
pub(super) fn parse_meminfo(text: &str) -> Result<MemInfo, String> {
    const KEYS: [&str; 4] = ["MemTotal", "MemAvailable", "SwapTotal", "SwapFree"];
    let mut values: [Option<u64>; 4] = [None; 4];
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(idx) = KEYS.iter().position(|k| *k == key) else {
            continue;
        };
        values[idx] = Some(parse_kb(rest).map_err(|message| format!("{key}: {message}"))?);
        if values.iter().all(Option::is_some) {
            break;
        }
    }
    let get = |idx: usize| values[idx].ok_or_else(|| format!("missing {}", KEYS[idx]));
    Ok(MemInfo {
        total_bytes: get(0)?,
        available_bytes: get(1)?,
        swap_total_bytes: get(2)?,
        swap_free_bytes: get(3)?,
    })
}

/// Parses "   24683656 kB" into bytes.
fn parse_kb(rest: &str) -> Result<u64, String> {
    let mut tokens = rest.split_ascii_whitespace();
    let number = tokens.next().ok_or("missing value")?;
    let kb: u64 = number
        .parse()
        .map_err(|err| format!("bad value {number:?}: {err}"))?;
    match tokens.next() {
        Some("kB") => Ok(kb.saturating_mul(1024)),
        other => Err(format!("expected unit kB, got {other:?}")),
    }
}

/// Reads /proc/meminfo at `path` and fills the memory and swap fields.
pub(super) fn collect(
    path: &Path,
    buf: &mut Vec<u8>,
    sample: &mut HostSample,
) -> Result<(), CollectError> {
    let text = read_text(path, buf)?;
    let info = parse_meminfo(text).map_err(|message| parse_error(path, message))?;
    info.fill(sample);
    Ok(())
}
