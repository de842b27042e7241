//! Application health: scrape the app's Prometheus text endpoint and/or
//! probe its health URL, and hand per-interval counts to the sample loop.
//!
//! Main types: [`AppConfig`] (the checked `[app]` table, built from
//! [`config::RawApp`] in `config`), [`AppMonitor`] (owns the scraper and prober tasks) and
//! [`Accumulator`] (what the tasks add up between two samples). The scraper
//! lives in `scrape`, the prober in `probe`, the HTTP/1 client both share in
//! `client`.
//!
//! Invariants:
//! - Counts, not rates: every figure is what happened since the previous
//!   [`AppMonitor::take`], so figures add up across hosts and rounds.
//! - A scrape or probe that fails is counted with its reason, never skipped.
//!   A failed scrape leaves the counter baseline at the last good scrape, so
//!   the next good one covers the whole gap.
//! - The scraper and prober run on their own intervals, independent of the
//!   sample interval; the [`Accumulator`] lock is never held across an await.
//! - What is sent always passes `AppHealth::validate` (errors <= requests,
//!   at most `MAX_BUCKETS` buckets, no NaN), so one odd scrape cannot get a
//!   whole sample rejected by the coordinator.
//!
//! Deliberately NOT done here: TLS (https URLs are a config error for now),
//! compression (no `Accept-Encoding` is sent), auth, OpenMetrics or protobuf
//! scrapes, and per-series counter deltas: matching series are summed first,
//! so a reset of one series among several that keep growing is undercounted
//! for one interval (a restart resets them all and is handled).

mod client;
pub(crate) mod config;
mod probe;
mod scrape;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rollguard_common::sample::{AppHealth, Bucket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::config::AppConfig;

pub(crate) use probe::ProbeOutcome;
pub(crate) use scrape::ScrapeDelta;

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

// === impl Accumulator ===

/// What the scraper and prober add up between two samples.
#[derive(Debug)]
pub(crate) struct Accumulator {
    health: AppHealth,
}

impl Accumulator {
    /// Returns an empty accumulator for what is enabled.
    pub(crate) fn new(scrape_enabled: bool, probe_enabled: bool) -> Accumulator {
        Accumulator {
            health: fresh(scrape_enabled, probe_enabled, Vec::new()),
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
    pub(crate) fn take(&mut self) -> AppHealth {
        let next = fresh(
            self.health.scrape_enabled,
            self.health.probe_enabled,
            self.health.gauges.clone(),
        );
        std::mem::replace(&mut self.health, next)
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
fn lock(shared: &Mutex<Accumulator>) -> MutexGuard<'_, Accumulator> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Formats an error with its sources: `outer: inner: root cause`.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

// === impl AppMonitor ===

/// Runs the scraper and prober tasks and holds what they add up.
#[derive(Debug)]
pub(crate) struct AppMonitor {
    shared: Arc<Mutex<Accumulator>>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl AppMonitor {
    /// Spawns the scraper and/or prober; they stop when `shutdown` is
    /// cancelled or [`AppMonitor::stop`] is called.
    pub(crate) fn start(config: &AppConfig, shutdown: &CancellationToken) -> AppMonitor {
        let shared = Arc::new(Mutex::new(Accumulator::new(
            config.scrape.is_some(),
            config.probe.is_some(),
        )));
        let stop = shutdown.child_token();
        let client = client::new();
        let mut tasks = Vec::new();
        if let Some(scrape) = &config.scrape {
            tracing::info!(url = %scrape.url, interval = ?scrape.interval, "scraping app metrics");
            tasks.push(tokio::spawn(scrape::run(
                scrape.clone(),
                client.clone(),
                Arc::clone(&shared),
                stop.clone(),
            )));
        }
        if let Some(probe) = &config.probe {
            tracing::info!(url = %probe.url, interval = ?probe.interval, "probing app health");
            tasks.push(tokio::spawn(probe::run(
                probe.clone(),
                client,
                Arc::clone(&shared),
                stop.clone(),
            )));
        }
        AppMonitor {
            shared,
            stop,
            tasks,
        }
    }

    /// Returns the app health since the previous call.
    pub(crate) fn take(&self) -> AppHealth {
        lock(&self.shared).take()
    }

    /// Stops the tasks and waits for them; an in-flight request is dropped.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            if let Err(err) = task.await {
                tracing::warn!(error = %err, "app health task failed");
            }
        }
    }
}
