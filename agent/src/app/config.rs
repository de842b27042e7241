//! The `[app]` table: its raw (serde) form, [`RawApp`], and the checked
//! [`AppConfig`] with the parsed selectors the scraper reads.
//!
//! Every key is checked when the agent config is validated, before anything
//! binds or connects. The only IO is reading the trust roots of `https://`
//! URLs (`app.ca`, else the system store), so a bad file is a config error.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use rollguard_common::config::{self, ConfigError};
use rollguard_common::exposition::{LabelMatcher, MatchOp, Selector};
use rollguard_common::sample::MAX_GAUGES;
use rollguard_proto::https::TrustRoots;
use serde::{Deserialize, Serialize};

use super::error_chain;

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

/// The `[app]` table: application health from a Prometheus text scrape
/// and/or an HTTP health probe. Both may be on at once; with neither URL
/// set, samples carry no app health.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApp {
    /// Prometheus text endpoint to scrape (`http://` or `https://`); unset or empty turns scraping off.
    pub scrape_url: Option<String>,
    /// How often to scrape; default the agent's `interval`.
    pub scrape_interval: Option<String>,
    /// How long one scrape may take; default 2s, but at most `scrape_interval`.
    pub scrape_timeout: Option<String>,
    /// Selector whose matching series sum to the request count; default `http_requests_total`.
    pub requests_metric: String,
    /// Selector whose matching series sum to the error count; default: the
    /// `requests_metric` series whose `code` or `status` label is 5xx.
    pub errors_metric: Option<String>,
    /// Latency histogram: base name plus optional matchers; default
    /// `http_request_duration_seconds`; empty turns it off.
    pub latency_histogram: String,
    /// Gauges copied as they are (latest value); default `queue_depth`,
    /// `cache_hit_ratio`, `worker_health`.
    pub gauges: Vec<String>,
    /// Health URL to GET (`http://` or `https://`); unset or empty turns probing off.
    pub probe_url: Option<String>,
    /// How often to probe; default the agent's `interval`.
    pub probe_interval: Option<String>,
    /// How long one probe may take; default 1s, but at most `probe_interval`.
    pub probe_timeout: Option<String>,
    /// PEM file of the CA(s) that `https://` scrape and probe URLs must chain
    /// to, instead of the system's trust store; default none (system roots).
    pub ca: Option<PathBuf>,
}

impl Default for RawApp {
    fn default() -> Self {
        RawApp {
            scrape_url: None,
            scrape_interval: None,
            scrape_timeout: None,
            requests_metric: DEFAULT_REQUESTS_METRIC.to_owned(),
            errors_metric: None,
            latency_histogram: DEFAULT_LATENCY_HISTOGRAM.to_owned(),
            gauges: DEFAULT_GAUGES.iter().map(|s| (*s).to_owned()).collect(),
            probe_url: None,
            probe_interval: None,
            probe_timeout: None,
            ca: None,
        }
    }
}

/// The checked `[app]` table: at least one of scrape and probe is set.
#[derive(Debug, Clone)]
pub(crate) struct AppConfig {
    /// The metrics scrape, when `app.scrape_url` is set.
    pub(crate) scrape: Option<ScrapeConfig>,
    /// The health probe, when `app.probe_url` is set.
    pub(crate) probe: Option<ProbeConfig>,
    /// What an `https://` server must chain to: `app.ca` when set, else the
    /// system's roots when a URL is `https://`; `None` for plain http only.
    pub(crate) roots_opt: Option<TrustRoots>,
}

/// A checked metrics scrape.
#[derive(Debug, Clone)]
pub(crate) struct ScrapeConfig {
    /// `http://` or `https://` URL of the Prometheus text endpoint.
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
    /// `http://` or `https://` URL to GET.
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
        // Read even with no URL set, so a bad `app.ca` shows up early.
        let ca_roots_opt = match raw.ca.as_deref().filter(|p| !p.as_os_str().is_empty()) {
            Some(path) => Some(TrustRoots::from_pem_file(path).map_err(|err| {
                ConfigError::invalid(
                    "app.ca",
                    format!("not a usable CA file: {}", error_chain(&err)),
                )
            })?),
            None => None,
        };
        if scrape.is_none() && probe.is_none() {
            return Ok(None);
        }
        let urls = [
            ("app.scrape_url", scrape.as_ref().map(|s| &s.url)),
            ("app.probe_url", probe.as_ref().map(|p| &p.url)),
        ];
        let roots_opt = match ca_roots_opt {
            Some(roots) => Some(roots),
            None => system_roots_for(&urls)?,
        };
        Ok(Some(AppConfig {
            scrape,
            probe,
            roots_opt,
        }))
    }
}

/// Loads the system's roots when one of `urls` is `https://` (and there is
/// no `app.ca`); a failure names the first such key.
fn system_roots_for(urls: &[(&str, Option<&Uri>)]) -> Result<Option<TrustRoots>, ConfigError> {
    let https_opt = urls.iter().find_map(|(key, url)| {
        url.filter(|u| u.scheme_str() == Some("https"))
            .map(|u| (key, u))
    });
    let Some((key, url)) = https_opt else {
        return Ok(None);
    };
    TrustRoots::system().map(Some).map_err(|err| {
        ConfigError::invalid(
            *key,
            format!(
                "`{url}` is https:// but {}; set `app.ca` to the CA's PEM file",
                error_chain(&err)
            ),
        )
    })
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

/// Parses an `http://` or `https://` URL for `key`.
fn parse_url(key: &str, value: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = value
        .parse()
        .map_err(|err| ConfigError::invalid(key, format!("`{value}` is not a URL ({err})")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(ConfigError::invalid(
            key,
            format!("`{value}` is not an http:// or https:// URL"),
        ));
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
