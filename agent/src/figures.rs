//! Figures the coordinator would reject: dropped before a sample leaves the
//! agent, counted, and logged at most once a minute.
//!
//! The coordinator checks every sample (`HostSample::validate`) and ends the
//! stream of an agent that sends one it cannot take, so a single `NaN` or
//! `+Inf` an app exports as a gauge would leave the host blind and its
//! command results unheard (issue 10). [`guard_app`] and [`guard_host`] make
//! sure no such figure is sent; [`Dropped`] counts what they dropped.
//!
//! What is dropped, and how:
//! - a gauge that is not finite: the gauge is left out of the sample;
//! - a request or error count that is not finite or not in `[0, MAX_COUNT]`:
//!   both are sent as 0 (errors never exceed requests);
//! - a latency histogram with such a count or a bound that is `NaN` or
//!   `-Inf`: the histogram is left out (a bound of `+Inf`, `le="+Inf"`, is
//!   the last bucket of every histogram and is kept); a bad sum alone is
//!   sent as 0;
//! - a host figure (rate, percent, load, pressure) that is not finite or
//!   negative: sent as 0.
//!
//! Deliberately NOT done here: fixing figures that are finite and in range
//! but wrong; that is each collector's business.

use std::time::{Duration, Instant};

use rollguard_common::sample::{AppHealth, Bucket, MAX_COUNT};
use rollguard_common::HostSample;

/// Least time between two warnings about dropped figures.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(60);

/// Figures dropped so far, and when that was last logged.
#[derive(Debug, Default)]
pub(crate) struct Dropped {
    /// Figures dropped since start.
    total: u64,
    /// Of those, not in a warning yet.
    unreported: u64,
    /// When the last warning was logged; `None` before the first.
    warned_at_opt: Option<Instant>,
}

/// A warning that is due: what was dropped since the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DueWarning {
    /// Figures dropped since the previous warning.
    pub(crate) since_last: u64,
    /// Figures dropped since start.
    pub(crate) total: u64,
}

impl Dropped {
    /// Counts `n` more dropped figures.
    pub(crate) fn add(&mut self, n: u64) {
        self.total = self.total.saturating_add(n);
        self.unreported = self.unreported.saturating_add(n);
    }

    /// Returns how many figures were dropped since start (the warnings
    /// carry it in production).
    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Returns the warning to log at `now`, if one is due: the first drop
    /// is told at once, later ones at most once per [`WARN_EVERY`].
    pub(crate) fn due(&mut self, now: Instant) -> Option<DueWarning> {
        if self.unreported == 0 {
            return None;
        }
        let quiet = self
            .warned_at_opt
            .is_none_or(|at| now.saturating_duration_since(at) >= WARN_EVERY);
        if !quiet {
            return None;
        }
        self.warned_at_opt = Some(now);
        let since_last = std::mem::take(&mut self.unreported);
        Some(DueWarning {
            since_last,
            total: self.total,
        })
    }
}

impl DueWarning {
    /// Logs the warning; `source` is `app` or `host`.
    pub(crate) fn log(self, source: &'static str) {
        tracing::warn!(
            source,
            dropped = self.since_last,
            dropped_total = self.total,
            "dropped figures the coordinator would reject (NaN, infinite or out of range)"
        );
    }
}

/// Whether `value` is a count the coordinator takes.
fn count_ok(value: f64) -> bool {
    value.is_finite() && (0.0..=MAX_COUNT).contains(&value)
}

/// Drops what the coordinator would reject from `app`; returns how many
/// figures were dropped.
pub(crate) fn guard_app(app: &mut AppHealth) -> u64 {
    let mut dropped = 0;
    let n_gauges = app.gauges.len();
    app.gauges.retain(|(_, value)| value.is_finite());
    dropped += (n_gauges - app.gauges.len()) as u64;

    let bad_counts = [app.requests, app.errors]
        .into_iter()
        .filter(|value| !count_ok(*value))
        .count() as u64;
    if bad_counts > 0 {
        dropped += bad_counts;
        app.requests = 0.0;
        app.errors = 0.0;
    }

    if !count_ok(app.latency_sum_seconds) {
        dropped += 1;
        app.latency_sum_seconds = 0.0;
    }
    let bad_latency = bad_buckets(&app.latency_buckets) + u64::from(!count_ok(app.latency_count));
    if bad_latency > 0 {
        dropped += bad_latency;
        app.latency_buckets.clear();
        app.latency_count = 0.0;
        app.latency_sum_seconds = 0.0;
    }

    let bad_probe = bad_buckets(&app.probe_latency_buckets);
    if bad_probe > 0 {
        dropped += bad_probe;
        app.probe_latency_buckets.clear();
    }
    dropped
}

/// Counts the figures of `buckets` the coordinator would reject: bounds
/// that are `NaN` or `-Inf` (`+Inf` is the last bucket's), and counts.
fn bad_buckets(buckets: &[Bucket]) -> u64 {
    buckets
        .iter()
        .map(|bucket| {
            let bad_bound = bucket.upper_bound.is_nan() || bucket.upper_bound == f64::NEG_INFINITY;
            u64::from(bad_bound) + u64::from(!count_ok(bucket.cumulative_count))
        })
        .sum()
}

/// Sends every host figure of `sample` (not its app health) that is not
/// finite or is negative as 0; returns how many there were.
pub(crate) fn guard_host(sample: &mut HostSample) -> u64 {
    let mut dropped = 0;
    // Called on every tick: no allocation, the figures are visited in place.
    let mut check = |figure: &mut f64| {
        if !figure.is_finite() || *figure < 0.0 {
            *figure = 0.0;
            dropped += 1;
        }
    };
    for figure in [
        &mut sample.cpu_percent,
        &mut sample.load1,
        &mut sample.load5,
        &mut sample.load15,
        &mut sample.disk_read_bytes_per_sec,
        &mut sample.disk_write_bytes_per_sec,
        &mut sample.disk_read_ops_per_sec,
        &mut sample.disk_write_ops_per_sec,
        &mut sample.net_rx_bytes_per_sec,
        &mut sample.net_tx_bytes_per_sec,
    ] {
        check(figure);
    }
    sample.cpu_core_percent.iter_mut().for_each(&mut check);
    for disk in &mut sample.disks {
        for figure in [
            &mut disk.read_bytes_per_sec,
            &mut disk.write_bytes_per_sec,
            &mut disk.read_ops_per_sec,
            &mut disk.write_ops_per_sec,
        ] {
            check(figure);
        }
    }
    for net in &mut sample.interfaces {
        for figure in [
            &mut net.rx_bytes_per_sec,
            &mut net.tx_bytes_per_sec,
            &mut net.rx_packets_per_sec,
            &mut net.tx_packets_per_sec,
            &mut net.rx_errors_per_sec,
            &mut net.tx_errors_per_sec,
            &mut net.rx_drops_per_sec,
            &mut net.tx_drops_per_sec,
        ] {
            check(figure);
        }
    }
    if let Some(pressure) = &mut sample.pressure {
        for figure in [
            &mut pressure.cpu_some_avg10,
            &mut pressure.memory_some_avg10,
            &mut pressure.io_some_avg10,
        ] {
            check(figure);
        }
    }
    dropped
}

#[cfg(test)]
mod tests;
