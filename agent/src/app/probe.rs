//! The prober: GETs the app's health URL on its own interval and times it.
//!
//! A probe fails on a non-2xx status, a timeout, or no response at all
//! (refused, reset, not HTTP). Latency goes into fixed buckets
//! (`PROBE_BOUNDS`): a response of any status at its measured latency, a
//! timeout into `+Inf` only (it took longer than anything measurable, which
//! is what a latency quantile should show), and a probe that got no response
//! not at all (there is no latency to speak of).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::accumulator::{lock, Accumulator};
use super::client::{self, FetchError, HttpClient};
use super::config::ProbeConfig;
use super::error_chain;

/// Largest health response read; a larger one is a failed probe.
const MAX_BODY_BYTES: usize = 1 << 20;

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProbeOutcome {
    /// Seconds to the end of the body; `+Inf` for a timeout; `None`
    /// without a response.
    pub(crate) latency_secs: Option<f64>,
    /// Why the probe failed; `None` for a 2xx response.
    pub(crate) error: Option<String>,
}

/// Sends one probe.
pub(crate) async fn probe(client: &HttpClient, config: &ProbeConfig) -> ProbeOutcome {
    let started = Instant::now();
    let result = client::get(client, &config.url, None, config.timeout, MAX_BODY_BYTES).await;
    let latency_secs = started.elapsed().as_secs_f64();
    match result {
        Ok(response) => ProbeOutcome {
            latency_secs: Some(latency_secs),
            error: (!response.status.is_success()).then(|| format!("HTTP {}", response.status)),
        },
        Err(err @ FetchError::Timeout(_)) => ProbeOutcome {
            latency_secs: Some(f64::INFINITY),
            error: Some(error_chain(&err)),
        },
        Err(err) => ProbeOutcome {
            latency_secs: None,
            error: Some(error_chain(&err)),
        },
    }
}

/// Probes on `config.interval` until `stop` is cancelled, adding each
/// outcome to `shared`.
pub(crate) async fn run(
    config: ProbeConfig,
    client: HttpClient,
    shared: Arc<Mutex<Accumulator>>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(config.interval);
    // A slow probe delays the next one rather than causing a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let outcome = tokio::select! {
            () = stop.cancelled() => break,
            outcome = probe(&client, &config) => outcome,
        };
        match &outcome.error {
            Some(reason) if !failing => {
                tracing::warn!(url = %config.url, error = %reason, "app probe failed");
                failing = true;
            }
            Some(reason) => tracing::debug!(url = %config.url, error = %reason, "app probe failed"),
            None if failing => {
                tracing::info!(url = %config.url, "app probe recovered");
                failing = false;
            }
            None => {}
        }
        lock(&shared).record_probe(outcome);
    }
}

#[cfg(test)]
mod tests;
