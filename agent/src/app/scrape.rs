//! The scraper: GETs the app's Prometheus text endpoint on its own interval
//! and turns two successive good scrapes into per-interval counts.
//!
//! Main types: [`Scraper`] (keeps the last good [`Reading`] as the counter
//! baseline), [`Reading`] (the totals one scrape shows) and [`ScrapeDelta`]
//! (what happened between two readings). [`read`] and [`Scraper::advance`]
//! are pure, so the counter arithmetic is testable without a server.
//!
//! Invariants:
//! - The first good scrape is only a baseline: it yields gauges, no counts.
//! - A failed scrape (HTTP error, bad status, malformed body) leaves the
//!   baseline untouched; the next good scrape covers the whole gap.
//! - A counter that went down means the app restarted: the new values are
//!   the counts since the restart (see [`counter_delta`]).
//!
//! Bodies over [`INLINE_PARSE_BYTES`] are parsed on the blocking pool: the
//! agent runs on a current-thread runtime, and parsing a few MiB takes
//! milliseconds that would otherwise stall the sample loop and the link.

use std::sync::{Arc, Mutex};

use rollguard_common::exposition::{
    counter_delta, gauge, histogram, parse, sum_counter, Histogram,
};
use rollguard_common::sample::{Bucket, MAX_BUCKETS};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::accumulator::{lock, Accumulator};
use super::client::{self, HttpClient};
use super::config::{ErrorRule, Queries, ScrapeConfig};
use super::error_chain;

/// Largest scrape body read; a larger one is a failed scrape.
pub(crate) const MAX_BODY_BYTES: usize = 16 << 20;
/// Larger bodies are parsed with `spawn_blocking`.
pub(crate) const INLINE_PARSE_BYTES: usize = 1 << 20;
/// Asks for the text format, also from endpoints that can negotiate others.
const ACCEPT_TEXT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

/// The totals one good scrape shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reading {
    /// Sum of the requests series; `None` when none is exposed.
    pub(crate) requests: Option<f64>,
    /// Sum of the error series; `None` when none is exposed.
    pub(crate) errors: Option<f64>,
    /// The latency histogram, when exposed and well-formed.
    pub(crate) latency: Option<Histogram>,
    /// The configured gauges that are exposed with a finite value, sorted by name.
    pub(crate) gauges: Vec<(String, f64)>,
    /// Configured gauges exposed as NaN or an infinity, left out of `gauges`.
    pub(crate) non_finite_gauges: u64,
}

/// What happened between two good scrapes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScrapeDelta {
    /// Requests in the gap.
    pub(crate) requests: f64,
    /// Errors in the gap, never more than `requests`.
    pub(crate) errors: f64,
    /// Latency histogram deltas, when the histogram is exposed.
    pub(crate) latency: Option<LatencyDelta>,
    /// The latest gauges.
    pub(crate) gauges: Vec<(String, f64)>,
    /// Gauges the latest scrape exposed as NaN or an infinity, left out.
    pub(crate) non_finite_gauges: u64,
}

/// Latency histogram deltas over a gap.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LatencyDelta {
    /// Cumulative bucket deltas, at most `MAX_BUCKETS`, bounds in seconds.
    pub(crate) buckets: Vec<Bucket>,
    /// Observations in the gap.
    pub(crate) count: f64,
    /// Sum of the observations in the gap, in seconds.
    pub(crate) sum_seconds: f64,
}

/// Reads the configured totals from one scrape body.
///
/// Values that are NaN or infinite are treated as absent: they cannot be
/// differenced, and the coordinator rejects non-finite figures (a sample
/// with one ends the agent's stream). Gauges left out so are counted.
pub(crate) fn read(body: &str, queries: &Queries) -> Result<Reading, String> {
    let exposition = parse(body).map_err(|err| err.to_string())?;
    let requests = finite(sum_counter(&exposition, &queries.requests));
    let errors = match &queries.errors {
        ErrorRule::Selector(selector) => sum_counter(&exposition, selector),
        ErrorRule::ServerErrors { by_code, by_status } => {
            match (
                sum_counter(&exposition, by_code),
                sum_counter(&exposition, by_status),
            ) {
                (None, None) => None,
                (code, status) => Some(code.unwrap_or(0.0) + status.unwrap_or(0.0)),
            }
        }
    };
    let latency = queries
        .latency
        .as_ref()
        .and_then(|selector| histogram(&exposition, &selector.name, &selector.matchers))
        .and_then(sanitize);
    let mut non_finite_gauges = 0;
    let mut gauges = Vec::with_capacity(queries.gauges.len());
    for selector in &queries.gauges {
        match gauge(&exposition, selector) {
            // Also a sum of finite series can overflow to +Inf.
            Some(value) if value.is_finite() => gauges.push((selector.name.clone(), value)),
            Some(_) => non_finite_gauges += 1,
            None => {}
        }
    }
    Ok(Reading {
        requests,
        errors: finite(errors),
        latency,
        gauges,
        non_finite_gauges,
    })
}

/// Reads a raw body: UTF-8 first, then [`read`].
fn read_bytes(body: &[u8], queries: &Queries) -> Result<Reading, String> {
    let text = std::str::from_utf8(body).map_err(|err| format!("body is not UTF-8: {err}"))?;
    read(text, queries)
}

fn finite(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}

/// Drops buckets with a NaN bound; rejects a histogram with a non-finite or
/// negative count (it cannot be differenced); treats a missing `_sum` as 0.
fn sanitize(mut histogram: Histogram) -> Option<Histogram> {
    histogram
        .buckets
        .retain(|(upper_bound, _)| !upper_bound.is_nan());
    let counts_ok = histogram.count.is_finite()
        && histogram.count >= 0.0
        && histogram
            .buckets
            .iter()
            .all(|(_, count)| count.is_finite() && *count >= 0.0);
    if histogram.buckets.is_empty() || !counts_ok {
        return None;
    }
    if !histogram.sum.is_finite() {
        histogram.sum = 0.0;
    }
    Some(histogram)
}

/// Turns histogram deltas into at most `MAX_BUCKETS` buckets.
///
/// Dropping a bound from a cumulative histogram only makes it coarser, so a
/// histogram with too many buckets keeps an evenly spread subset that
/// includes the first and the last (`+Inf`) bound.
fn to_latency_delta(histogram: &Histogram) -> LatencyDelta {
    let n = histogram.buckets.len();
    let picked: Vec<(f64, f64)> = if n <= MAX_BUCKETS {
        histogram.buckets.clone()
    } else {
        (0..MAX_BUCKETS)
            .map(|idx| histogram.buckets[idx * (n - 1) / (MAX_BUCKETS - 1)])
            .collect()
    };
    LatencyDelta {
        buckets: picked
            .into_iter()
            .map(|(upper_bound, cumulative_count)| Bucket {
                upper_bound,
                cumulative_count,
            })
            .collect(),
        count: histogram.count,
        sum_seconds: histogram.sum,
    }
}

// === impl Scraper ===

/// Scrapes one endpoint and keeps the counter baseline between scrapes.
#[derive(Debug)]
pub(crate) struct Scraper {
    config: ScrapeConfig,
    client: HttpClient,
    max_body_bytes: usize,
    /// The last good reading; `None` until the first good scrape.
    baseline_opt: Option<Reading>,
    /// Whether a missing requests metric was logged already.
    warned_no_requests: bool,
}

impl Scraper {
    /// Returns a scraper with no baseline yet.
    pub(crate) fn new(config: ScrapeConfig, client: HttpClient) -> Scraper {
        Scraper {
            config,
            client,
            max_body_bytes: MAX_BODY_BYTES,
            baseline_opt: None,
            warned_no_requests: false,
        }
    }

    /// Scrapes once; an error is the reason the scrape failed.
    pub(crate) async fn scrape(&mut self) -> Result<ScrapeDelta, String> {
        let response = client::get(
            &self.client,
            &self.config.url,
            Some(ACCEPT_TEXT),
            self.config.timeout,
            self.max_body_bytes,
        )
        .await
        .map_err(|err| error_chain(&err))?;
        if !response.status.is_success() {
            return Err(format!("HTTP {}", response.status));
        }
        let reading = if response.body.len() > INLINE_PARSE_BYTES {
            let queries = Arc::clone(&self.config.queries);
            let body = response.body;
            tokio::task::spawn_blocking(move || read_bytes(&body, &queries))
                .await
                .map_err(|err| format!("parse task failed: {err}"))??
        } else {
            read_bytes(&response.body, &self.config.queries)?
        };
        if reading.requests.is_none() && !self.warned_no_requests {
            // Not a failed scrape (the app may not have served a request
            // yet), but a wrong `app.requests_metric` would otherwise look
            // like an idle app forever.
            tracing::warn!(
                url = %self.config.url,
                metric = %self.config.queries.requests,
                "requests metric not in the scrape; counting zero requests"
            );
            self.warned_no_requests = true;
        }
        Ok(self.advance(reading))
    }

    /// Makes `current` the baseline and returns what happened since the
    /// previous one; the first reading yields its gauges and no counts.
    pub(crate) fn advance(&mut self, current: Reading) -> ScrapeDelta {
        let delta = match &self.baseline_opt {
            None => ScrapeDelta {
                requests: 0.0,
                errors: 0.0,
                latency: None,
                gauges: current.gauges.clone(),
                non_finite_gauges: current.non_finite_gauges,
            },
            Some(previous) => delta(previous, &current),
        };
        self.baseline_opt = Some(current);
        delta
    }
}

/// Returns what happened between two good readings.
fn delta(previous: &Reading, current: &Reading) -> ScrapeDelta {
    // Instrumentation often creates a series on first use (the first
    // request, the first 5xx): a series absent from the previous good
    // scrape started at zero since then.
    let (requests, errors) = match current.requests {
        None => (0.0, 0.0),
        Some(requests_now) => {
            let requests_before = previous.requests.unwrap_or(0.0);
            let errors_now = current.errors.unwrap_or(0.0);
            let errors_before = previous.errors.unwrap_or(0.0);
            // A restart resets every counter at once. Deciding per counter
            // could see the request total (grown past its old value) as no
            // reset while the errors reset, and count errors against a
            // request delta they do not belong to.
            if requests_now < requests_before || errors_now < errors_before {
                (requests_now, errors_now)
            } else {
                (
                    counter_delta(requests_now, requests_before),
                    counter_delta(errors_now, errors_before),
                )
            }
        }
    };
    // Errors never exceed requests (the coordinator rejects such a sample);
    // an `errors_metric` from another family can disagree for an interval.
    let errors = errors.min(requests);
    let latency = match (&current.latency, &previous.latency) {
        (Some(now), Some(before)) => Some(now.delta(before)),
        (Some(now), None) => Some(now.clone()),
        (None, _) => None,
    };
    ScrapeDelta {
        requests,
        errors,
        latency: latency.as_ref().map(to_latency_delta),
        gauges: current.gauges.clone(),
        non_finite_gauges: current.non_finite_gauges,
    }
}

/// Scrapes on `config.interval` until `stop` is cancelled, adding each
/// outcome to `shared`.
pub(crate) async fn run(
    config: ScrapeConfig,
    client: HttpClient,
    shared: Arc<Mutex<Accumulator>>,
    stop: CancellationToken,
) {
    let url = config.url.clone();
    let mut ticker = tokio::time::interval(config.interval);
    // A slow scrape delays the next one rather than causing a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut scraper = Scraper::new(config, client);
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let result = tokio::select! {
            () = stop.cancelled() => break,
            result = scraper.scrape() => result,
        };
        match &result {
            Err(reason) if !failing => {
                tracing::warn!(%url, error = %reason, "app scrape failed");
                failing = true;
            }
            Err(reason) => tracing::debug!(%url, error = %reason, "app scrape failed"),
            Ok(_) if failing => {
                tracing::info!(%url, "app scrape recovered");
                failing = false;
            }
            Ok(_) => {}
        }
        lock(&shared).record_scrape(result);
    }
}

#[cfg(test)]
mod tests;
