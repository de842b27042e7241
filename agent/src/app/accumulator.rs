//! [`Accumulator`]: what the scraper and prober add up between two samples.
//!
//! The scraper and prober share one behind a std `Mutex`; the lock is never
//! held across an await. [`Accumulator::take`] hands the sample loop the
//! counts since the previous call and starts over, with every figure the
//! coordinator would reject dropped and counted (see `crate::figures`).

use std::sync::{Mutex, MutexGuard, PoisonError};

use rollguard_common::sample::{AppHealth, Bucket};

use super::{ProbeOutcome, ScrapeDelta};
use crate::figures::{guard_app, Dropped};

/// Longest failure reason sent; longer ones are cut at a char boundary.
const MAX_REASON_BYTES: usize = 512;

/// Upper bounds (seconds) of the probe latency histogram.
pub(crate) const PROBE_BOUNDS: [f64; 12] = [
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

/// What the scraper and prober add up between two samples.
#[derive(Debug)]
pub(crate) struct Accumulator {
    health: AppHealth,
    /// Figures left out of what was taken, and when that was last logged.
    pub(super) dropped: Dropped,
}

impl Accumulator {
    /// Returns an empty accumulator for what is enabled.
    pub(crate) fn new(scrape_enabled: bool, probe_enabled: bool) -> Accumulator {
        Accumulator {
            health: fresh(scrape_enabled, probe_enabled, Vec::new()),
            dropped: Dropped::default(),
        }
    }

    /// Adds the outcome of one scrape.
    pub(crate) fn record_scrape(&mut self, result: Result<ScrapeDelta, String>) {
        let health = &mut self.health;
        health.scrapes = health.scrapes.saturating_add(1);
        let delta = match result {
            Ok(delta) => delta,
            Err(reason) => {
                health.scrape_errors = health.scrape_errors.saturating_add(1);
                health.scrape_error = truncate_reason(reason);
                return;
            }
        };
        self.dropped.add(delta.non_finite_gauges);
        health.requests += delta.requests;
        health.errors += delta.errors;
        if let Some(latency) = delta.latency {
            let same_layout = health.latency_buckets.len() == latency.buckets.len()
                && health
                    .latency_buckets
                    .iter()
                    .zip(&latency.buckets)
                    .all(|(kept, new)| kept.upper_bound == new.upper_bound);
            if same_layout {
                for (kept, new) in health.latency_buckets.iter_mut().zip(&latency.buckets) {
                    kept.cumulative_count += new.cumulative_count;
                }
                health.latency_count += latency.count;
                health.latency_sum_seconds += latency.sum_seconds;
            } else {
                // The app changed its buckets (a restart with a new layout):
                // cumulative counts of two layouts cannot be added, so the
                // interval keeps the newest, with a matching count and sum.
                health.latency_buckets = latency.buckets;
                health.latency_count = latency.count;
                health.latency_sum_seconds = latency.sum_seconds;
            }
        }
        health.gauges = delta.gauges;
    }

    /// Adds the outcome of one probe.
    pub(crate) fn record_probe(&mut self, outcome: ProbeOutcome) {
        let health = &mut self.health;
        health.probes = health.probes.saturating_add(1);
        if let Some(reason) = outcome.error {
            health.probe_errors = health.probe_errors.saturating_add(1);
            health.probe_error = truncate_reason(reason);
        }
        if let Some(latency_secs) = outcome.latency_secs {
            for bucket in &mut health.probe_latency_buckets {
                if latency_secs <= bucket.upper_bound {
                    bucket.cumulative_count += 1.0;
                }
            }
        }
    }

    /// Returns what was added since the last call and starts over, keeping
    /// what is enabled and the latest gauges (a gauge is a level, not a count).
    ///
    /// What is returned passes `AppHealth::validate`'s checks of figures:
    /// sums over many scrapes can still overflow to infinity, so the guard
    /// runs on every interval, not only on what a scrape reads.
    pub(crate) fn take(&mut self) -> AppHealth {
        let next = fresh(
            self.health.scrape_enabled,
            self.health.probe_enabled,
            self.health.gauges.clone(),
        );
        let mut health = std::mem::replace(&mut self.health, next);
        let dropped = guard_app(&mut health);
        if dropped > 0 {
            self.dropped.add(dropped);
            // The gauges kept for the next interval lose what was dropped too.
            self.health.gauges.clone_from(&health.gauges);
        }
        health
    }
}

/// Returns an empty interval: zero counts, the probe buckets laid out.
fn fresh(scrape_enabled: bool, probe_enabled: bool, gauges: Vec<(String, f64)>) -> AppHealth {
    let probe_latency_buckets = if probe_enabled {
        PROBE_BOUNDS
            .iter()
            .map(|&upper_bound| Bucket {
                upper_bound,
                cumulative_count: 0.0,
            })
            .collect()
    } else {
        Vec::new()
    };
    AppHealth {
        scrape_enabled,
        probe_enabled,
        gauges,
        probe_latency_buckets,
        ..AppHealth::default()
    }
}

/// Cuts `reason` to [`MAX_REASON_BYTES`] at a char boundary.
fn truncate_reason(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// Locks the accumulator; a panic elsewhere cannot leave it half-updated in
/// a way that matters (the worst case is one odd interval), so poison is ignored.
pub(crate) fn lock(shared: &Mutex<Accumulator>) -> MutexGuard<'_, Accumulator> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
