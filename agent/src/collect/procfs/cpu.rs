//! CPU busy percent from the `cpu` (all cores) and `cpuN` lines of /proc/stat.
//!
//! busy = 100 × (1 − Δ(idle+iowait) / Δtotal), total = user + nice + system +
//! idle + iowait + irq + softirq + steal. guest and guest_nice are NOT added:
//! the kernel already counts them in user and nice. Does not read any other
//! line of /proc/stat (interrupts, context switches).

use std::mem;
use std::path::Path;

use rollguard_common::HostSample;

use super::{parse_error, read_text, CollectError};

#[cfg(test)]
mod tests;

/// Cumulative ticks of one cpu line, reduced to the two sums the percent needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct CpuTicks {
    /// idle + iowait.
    pub(super) idle: u64,
    /// user + nice + system + idle + iowait + irq + softirq + steal.
    pub(super) total: u64,
}

/// One parse of /proc/stat: the aggregate line and the per-core lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct CpuReading {
    /// The aggregate `cpu` line.
    pub(super) all: CpuTicks,
    /// `(N, ticks)` per `cpuN` line, sorted by N. Offline cores have no line.
    pub(super) cores: Vec<(u32, CpuTicks)>,
}

/// Parses the cpu lines of /proc/stat into `out`, reusing its core vector.
pub(super) fn parse_stat(text: &str, out: &mut CpuReading) -> Result<(), String> {
    out.cores.clear();
    let mut saw_all = false;
    for line in text.lines() {
        if !line.starts_with("cpu") {
            // The cpu lines come first; stop before the long `intr` line.
            if saw_all {
                break;
            }
            continue;
        }
        let mut tokens = line.split_ascii_whitespace();
        let label = tokens.next().unwrap_or_default();
        let ticks = parse_ticks(tokens).map_err(|message| format!("{label}: {message}"))?;
        if label == "cpu" {
            out.all = ticks;
            saw_all = true;
        } else {
            let core = label
                .strip_prefix("cpu")
                .and_then(|n| n.parse::<u32>().ok())
                .ok_or_else(|| format!("unexpected cpu label {label:?}"))?;
            out.cores.push((core, ticks));
        }
    }
    if !saw_all {
        return Err("no aggregate cpu line".to_owned());
    }
    if !out.cores.is_sorted_by_key(|&(core, _)| core) {
        out.cores.sort_unstable_by_key(|&(core, _)| core);
    }
    Ok(())
}

/// Parses the numbers after a cpu label. Kernels before 2.6.11 lack some
/// columns; at least user, nice, system and idle must be there.
fn parse_ticks<'a>(tokens: impl Iterator<Item = &'a str>) -> Result<CpuTicks, String> {
    // user nice system idle iowait irq softirq steal; the zip stops before
    // guest and guest_nice.
    let mut values = [0u64; 8];
    let mut n_values = 0;
    for (slot, token) in values.iter_mut().zip(tokens) {
        *slot = token
            .parse()
            .map_err(|err| format!("bad tick count {token:?}: {err}"))?;
        n_values += 1;
    }
    if n_values < 4 {
        return Err(format!("expected at least 4 tick columns, got {n_values}"));
    }
    Ok(CpuTicks {
        idle: values[3].saturating_add(values[4]),
        total: values.iter().fold(0u64, |sum, v| sum.saturating_add(*v)),
    })
}

/// Returns the busy percent between two readings of one cpu line, in [0, 100];
/// 0 when no tick passed or the counters went backwards.
pub(super) fn busy_percent(prev: CpuTicks, cur: CpuTicks) -> f64 {
    let total = cur.total.saturating_sub(prev.total);
    if total == 0 {
        return 0.0;
    }
    // iowait is documented to decrease sometimes, so idle may go backwards.
    let idle = cur.idle.saturating_sub(prev.idle);
    (100.0 * (1.0 - idle as f64 / total as f64)).clamp(0.0, 100.0)
}

/// The previous reading of /proc/stat, plus a spare one parsed into and swapped.
#[derive(Debug, Default)]
pub(super) struct CpuState {
    prev_opt: Option<CpuReading>,
    spare: CpuReading,
}

impl CpuState {
    /// Reads /proc/stat at `path` and fills the cpu part of `sample`.
    pub(super) fn collect(
        &mut self,
        path: &Path,
        buf: &mut Vec<u8>,
        sample: &mut HostSample,
    ) -> Result<(), CollectError> {
        let text = read_text(path, buf)?;
        self.update(text, sample)
            .map_err(|message| parse_error(path, message))
    }

    /// Fills `cpu_percent` and `cpu_core_percent` from the text of /proc/stat
    /// against the previous reading (all zeros when there is none), then keeps
    /// this reading as the previous one.
    pub(super) fn update(&mut self, text: &str, sample: &mut HostSample) -> Result<(), String> {
        let mut cur = mem::take(&mut self.spare);
        if let Err(message) = parse_stat(text, &mut cur) {
            self.spare = cur;
            return Err(message);
        }
        sample.cpu_core_percent.clear();
        sample.cpu_core_percent.reserve_exact(cur.cores.len());
        match &self.prev_opt {
            None => sample.cpu_core_percent.resize(cur.cores.len(), 0.0),
            Some(prev) => {
                sample.cpu_percent = busy_percent(prev.all, cur.all);
                for (idx, &(core, ticks)) in cur.cores.iter().enumerate() {
                    // Same index is the common case; the search covers hotplug.
                    let prev_ticks = match prev.cores.get(idx) {
                        Some(&(prev_core, prev_ticks)) if prev_core == core => Some(prev_ticks),
                        _ => prev
                            .cores
                            .binary_search_by_key(&core, |&(prev_core, _)| prev_core)
                            .ok()
                            .and_then(|i| prev.cores.get(i))
                            .map(|&(_, prev_ticks)| prev_ticks),
                    };
                    let percent =
                        prev_ticks.map_or(0.0, |prev_ticks| busy_percent(prev_ticks, ticks));
                    sample.cpu_core_percent.push(percent);
                }
            }
        }
        if let Some(old) = self.prev_opt.replace(cur) {
            self.spare = old;
        }
        Ok(())
    }
}
