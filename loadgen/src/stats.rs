//! Percentiles over collected durations (nearest rank on the sorted values).
//!
//! Every value is kept: at 10,000 agents x 60 samples that is a few MiB, and
//! exact percentiles need no histogram tuning.

use std::time::Duration;

/// p50, p99 and max of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

/// Returns the summary of `values`, or `None` when there are none.
pub(crate) fn summarize(values: &mut [Duration]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Some(Summary {
        p50_ms: ms(percentile(values, 0.50)),
        p99_ms: ms(percentile(values, 0.99)),
        max_ms: ms(values[values.len() - 1]),
    })
}

/// The nearest-rank `q` quantile of sorted, non-empty `values`.
fn percentile(values: &[Duration], q: f64) -> Duration {
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// The median of `values` (sorts them), or `None` when there are none.
pub(crate) fn median_u64(values: &mut [u64]) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(values[(values.len() - 1) / 2])
}

#[cfg(test)]
mod tests;
