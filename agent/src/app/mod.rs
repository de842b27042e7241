//! Application health: scrape the app's Prometheus text endpoint and/or
//! probe its health URL, and hand per-interval counts to the sample loop.
//!
//! Main types: [`AppConfig`] (the checked `[app]` table, built from
//! [`RawApp`]), [`AppMonitor`] (owns the scraper and prober tasks) and
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
mod probe;
mod scrape;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::Uri;
use rollguard_common::config::{self, ConfigError};
use rollguard_common::exposition::{LabelMatcher, MatchOp, Selector};
use rollguard_common::sample::{AppHealth, Bucket, MAX_GAUGES};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::RawApp;

pub(crate) use probe::ProbeOutcome;
pub(crate) use scrape::ScrapeDelta;

/// Default `app.requests_metric`: the name most HTTP instrumentation uses.
pub(crate) const DEFAULT_REQUESTS_METRIC: &str = "http_requests_total";
/// Default `app.latency_histogram`.
pub(crate) const DEFAULT_LATENCY_HISTOGRAM: &str = "http_request_duration_seconds";
/// Default `app.gauges`.
pub(crate) const DEFAULT_GAUGES: &[&str] = &["queue_depth", "cache_hit_ratio", "worker_health"];
/// Default `app.scrape_timeout`, capped at the scrape interval.
const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `app.probe_timeout`, capped at the probe interval.
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Shortest scrape or probe interval: anything faster would load the app
/// for figures the coordinator reads once per agent interval anyway.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest gauge name the coordinator accepts.
const MAX_GAUGE_NAME_BYTES: usize = 128;
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

/// The checked `[app]` table: at least one of scrape and probe is set.
#[derive(Debug, Clone)]
pub(crate) struct AppConfig {
    /// The metrics scrape, when `app.scrape_url` is set.
    pub(crate) scrape: Option<ScrapeConfig>,
    /// The health probe, when `app.probe_url` is set.
    pub(crate) probe: Option<ProbeConfig>,
}

/// A checked metrics scrape.
#[derive(Debug, Clone)]
pub(crate) struct ScrapeConfig {
    /// Plain `http://` URL of the Prometheus text endpoint.
    pub(crate) url: Uri,
    /// Time between two scrapes.
    pub(crate) interval: Duration,
    /// Deadline of one scrape, body included; at most `interval`.
    pub(crate) timeout: Duration,
    /// What to read from each scrape.
    pub(crate) queries: Arc<Queries>,
}

/// What the scraper reads from a scrape; all selectors are parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Queries {
    /// Matching series sum to the request count.
    pub(crate) requests: Selector,
    /// How the error count is found.
    pub(crate) errors: ErrorRule,
    /// The latency histogram's base name and matchers; `None` when off.
    pub(crate) latency: Option<Selector>,
    /// Gauge selectors (names without matchers), sorted and deduplicated.
    pub(crate) gauges: Vec<Selector>,
}

/// How the error count is read from a scrape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ErrorRule {
    /// The default: the requests series whose `code` or `status` label is
    /// 5xx. One selector cannot express the OR, so it is two disjoint ones:
    /// `code=~"5.."`, and `status=~"5.."` with `code!~"5.."`, so a series
    /// with both labels is counted once.
    ServerErrors {
        /// Requests series with a 5xx `code`.
        by_code: Selector,
        /// Requests series with a 5xx `status` and no 5xx `code`.
        by_status: Selector,
    },
    /// `app.errors_metric`: the sum of the series it matches.
    Selector(Selector),
}

/// A checked health probe.
#[derive(Debug, Clone)]
pub(crate) struct ProbeConfig {
    /// Plain `http://` URL to GET.
    pub(crate) url: Uri,
    /// Time between two probes.
    pub(crate) interval: Duration,
    /// Deadline of one probe, body included; at most `interval`.
    pub(crate) timeout: Duration,
}

// === impl AppConfig ===

impl AppConfig {
    /// Checks the `[app]` table; returns `None` when neither URL is set.
    ///
    /// Every key is checked even when its half is off, so a typo in a
    /// selector shows up before the URL is added.
    pub(crate) fn from_raw(
        raw: RawApp,
        agent_interval: Duration,
    ) -> Result<Option<AppConfig>, ConfigError> {
        let queries = Queries::from_raw(&raw)?;
        let (scrape_interval, scrape_timeout) = interval_and_timeout(
            "scrape",
            raw.scrape_interval.as_deref(),
            raw.scrape_timeout.as_deref(),
            agent_interval,
            DEFAULT_SCRAPE_TIMEOUT,
        )?;
        let (probe_interval, probe_timeout) = interval_and_timeout(
            "probe",
            raw.probe_interval.as_deref(),
            raw.probe_timeout.as_deref(),
            agent_interval,
            DEFAULT_PROBE_TIMEOUT,
        )?;
        let scrape = match non_empty(raw.scrape_url.as_deref()) {
            Some(url) => Some(ScrapeConfig {
                url: parse_url("app.scrape_url", url)?,
                interval: scrape_interval,
                timeout: scrape_timeout,
                queries: Arc::new(queries),
            }),
            None => None,
        };
        let probe = match non_empty(raw.probe_url.as_deref()) {
            Some(url) => Some(ProbeConfig {
                url: parse_url("app.probe_url", url)?,
                interval: probe_interval,
                timeout: probe_timeout,
            }),
            None => None,
        };
        if scrape.is_none() && probe.is_none() {
            return Ok(None);
        }
        Ok(Some(AppConfig { scrape, probe }))
    }
}

/// Treats an empty string like an unset key, so env can turn a URL off.
fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Parses `app.<what>_interval` and `app.<what>_timeout` with their defaults.
fn interval_and_timeout(
    what: &str,
    raw_interval: Option<&str>,
    raw_timeout: Option<&str>,
    agent_interval: Duration,
    default_timeout: Duration,
) -> Result<(Duration, Duration), ConfigError> {
    let interval_key = format!("app.{what}_interval");
    let interval = match raw_interval {
        Some(value) => {
            let interval = config::parse_positive_duration(&interval_key, value)?;
            if interval < MIN_INTERVAL {
                return Err(ConfigError::invalid(
                    interval_key,
                    format!("must be at least {MIN_INTERVAL:?}"),
                ));
            }
            interval
        }
        None => agent_interval,
    };
    let timeout = match raw_timeout {
        Some(value) => {
            let timeout_key = format!("app.{what}_timeout");
            let timeout = config::parse_positive_duration(&timeout_key, value)?;
            if timeout > interval {
                return Err(ConfigError::invalid(
                    timeout_key,
                    format!("{timeout:?} is longer than `{interval_key}` ({interval:?})"),
                ));
            }
            timeout
        }
        None => default_timeout.min(interval),
    };
    Ok((interval, timeout))
}

/// Parses a plain `http://` URL for `key`.
fn parse_url(key: &str, value: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = value
        .parse()
        .map_err(|err| ConfigError::invalid(key, format!("`{value}` is not a URL ({err})")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "`{value}`: https is not supported yet (TLS for app endpoints lands later); \
                     use an http:// URL"
                ),
            ))
        }
        _ => {
            return Err(ConfigError::invalid(
                key,
                format!("`{value}` is not an http:// URL"),
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ConfigError::invalid(key, format!("`{value}` has no host")));
    }
    Ok(uri)
}

// === impl Queries ===

impl Queries {
    /// Parses the selector keys of `[app]`, naming the key at fault.
    fn from_raw(raw: &RawApp) -> Result<Queries, ConfigError> {
        let requests = parse_selector("app.requests_metric", &raw.requests_metric)?;
        let errors = match non_empty(raw.errors_metric.as_deref()) {
            Some(text) => ErrorRule::Selector(parse_selector("app.errors_metric", text)?),
            None => ErrorRule::server_errors(&requests),
        };
        let latency = match non_empty(Some(&raw.latency_histogram)) {
            None => None,
            Some(text) => {
                let key = "app.latency_histogram";
                let selector = parse_selector(key, text)?;
                if selector.name.ends_with("_bucket") {
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "name the histogram without `_bucket`, e.g. `{}`",
                            selector.name.trim_end_matches("_bucket")
                        ),
                    ));
                }
                if selector.matchers.iter().any(|m| m.name() == "le") {
                    return Err(ConfigError::invalid(
                        key,
                        "must not match on `le`: the agent reads every bucket",
                    ));
                }
                Some(selector)
            }
        };
        let mut gauges = Vec::with_capacity(raw.gauges.len());
        for name in &raw.gauges {
            let key = "app.gauges";
            let selector = parse_selector(key, name)?;
            if !selector.matchers.is_empty() || selector.name != name.trim() {
                return Err(ConfigError::invalid(
                    key,
                    format!("`{name}` is not a plain metric name"),
                ));
            }
            if selector.name.len() > MAX_GAUGE_NAME_BYTES {
                return Err(ConfigError::invalid(
                    key,
                    format!("`{name}` is longer than {MAX_GAUGE_NAME_BYTES} bytes"),
                ));
            }
            gauges.push(selector);
        }
        gauges.sort_by(|a, b| a.name.cmp(&b.name));
        gauges.dedup_by(|a, b| a.name == b.name);
        if gauges.len() > MAX_GAUGES {
            return Err(ConfigError::invalid(
                "app.gauges",
                format!("at most {MAX_GAUGES} gauges, got {}", gauges.len()),
            ));
        }
        Ok(Queries {
            requests,
            errors,
            latency,
            gauges,
        })
    }
}

/// Parses a selector for `key`, with the whole reason in the message.
fn parse_selector(key: &str, text: &str) -> Result<Selector, ConfigError> {
    Selector::parse(text).map_err(|err| {
        ConfigError::invalid(
            key,
            format!("`{text}` is not a selector: {}", error_chain(&err)),
        )
    })
}

// === impl ErrorRule ===

impl ErrorRule {
    /// Builds the default rule over the requests selector.
    fn server_errors(requests: &Selector) -> ErrorRule {
        let five_xx = |label: &str, op: MatchOp| {
            LabelMatcher::new(label, op, "5..").expect("`5..` is within the supported regex subset")
        };
        let mut by_code = requests.clone();
        by_code.matchers.push(five_xx("code", MatchOp::RegexMatch));
        let mut by_status = requests.clone();
        by_status
            .matchers
            .push(five_xx("status", MatchOp::RegexMatch));
        by_status
            .matchers
            .push(five_xx("code", MatchOp::RegexNoMatch));
        ErrorRule::ServerErrors { by_code, by_status }
    }
}

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
