//! The simulated application: request counts, latencies and gauges advanced by
//! a fixed tick, the `/healthz` verdicts, and the Prometheus text exposition.
//!
//! Everything is deterministic: rates are kept exact with integer carries
//! (parts per million), latencies follow a fixed shape spread by smooth
//! weighted round robin. This module does no IO and reads no clock; the
//! caller passes the time and the file contents in.

use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// Error rate of a healthy version.
const BASE_ERROR_RATE: f64 = 0.002;
/// Mean latency of a healthy version, in milliseconds.
const BASE_LATENCY_MS: f64 = 20.0;
/// Upper bounds of the latency buckets in seconds; `+Inf` follows the last.
const BUCKET_BOUNDS_SECS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const N_BUCKETS: usize = BUCKET_BOUNDS_SECS.len() + 1;
/// Latency shape: (share in percent, multiple of the mean latency).
const LATENCY_SHAPE: [(u64, f64); 4] = [(50, 0.6), (40, 1.0), (9, 2.0), (1, 5.0)];
const PPM: u64 = 1_000_000;
/// Queue depth while healthy, its growth per failing tick, and its ceiling.
const QUEUE_BASE: u64 = 3;
const QUEUE_GROWTH: u64 = 5;
const QUEUE_MAX: u64 = 500;

/// How the beta version misbehaves once it has been installed for a while.
#[derive(Debug, Clone)]
pub(crate) struct BetaProfile {
    /// The version string that gets the beta behaviour.
    pub(crate) version: String,
    /// How long the beta stays healthy after it is installed.
    pub(crate) fail_after: Duration,
    /// Error rate once failing, in [0, 1].
    pub(crate) error_rate: f64,
    /// Multiplier of the mean latency once failing.
    pub(crate) latency_factor: f64,
}

/// Overrides from the control file; `None` keeps the version's own value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ControlOverride {
    /// Error rate for every version, in [0, 1].
    pub(crate) error_rate: Option<f64>,
    /// Mean latency for every version, in milliseconds.
    pub(crate) latency_ms: Option<f64>,
}

/// Parses a control file: `key=value` lines with keys `error_rate` and
/// `latency_ms`; blank lines and `#` comments are ignored.
pub(crate) fn parse_control(text: &str) -> anyhow::Result<ControlOverride> {
    let mut control = ControlOverride::default();
    for (line_idx, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line_no = line_idx + 1;
        let (key, value) = line
            .split_once('=')
            .with_context(|| format!("line {line_no}: expected key=value"))?;
        let value: f64 = value
            .trim()
            .parse()
            .with_context(|| format!("line {line_no}: value is not a number"))?;
        match key.trim() {
            "error_rate" if (0.0..=1.0).contains(&value) => control.error_rate = Some(value),
            "latency_ms" if value.is_finite() && value >= 0.0 => control.latency_ms = Some(value),
            "error_rate" | "latency_ms" => bail!("line {line_no}: value {value} is out of range"),
            other => bail!("line {line_no}: unknown key {other:?}"),
        }
    }
    Ok(control)
}

/// The state of the simulated app: what is installed and what it has served.
#[derive(Debug)]
pub(crate) struct Sim {
    beta: BetaProfile,
    /// Simulated requests per second, counted in tenths per 100 ms tick.
    rps: u64,
    version: String,
    installed_at: Instant,
    control: ControlOverride,
    /// Integer carries keep every rate exact over time: requests in tenths,
    /// errors and probe failures in parts per million.
    request_carry: u64,
    error_carry_ppm: u64,
    probe_carry_ppm: u64,
    /// Smooth weighted round robin state, one entry per latency shape step.
    shape_current: [i64; LATENCY_SHAPE.len()],
    ok_total: u64,
    error_total: u64,
    /// Non-cumulative observation counts per bucket.
    bucket_counts: [u64; N_BUCKETS],
    duration_sum_secs: f64,
    queue_depth: u64,
}

impl Sim {
    /// Returns a fresh app with `version` installed at `now`.
    pub(crate) fn new(beta: BetaProfile, rps: u32, version: String, now: Instant) -> Self {
        Sim {
            beta,
            rps: u64::from(rps),
            version,
            installed_at: now,
            control: ControlOverride::default(),
            request_carry: 0,
            error_carry_ppm: 0,
            probe_carry_ppm: 0,
            shape_current: [0; LATENCY_SHAPE.len()],
            ok_total: 0,
            error_total: 0,
            bucket_counts: [0; N_BUCKETS],
            duration_sum_secs: 0.0,
            queue_depth: QUEUE_BASE,
        }
    }

    /// Returns the installed version.
    pub(crate) fn version(&self) -> &str {
        &self.version
    }

    /// Installs `version` at `now`; returns whether it differs from the installed one.
    pub(crate) fn set_version(&mut self, version: &str, now: Instant) -> bool {
        if version == self.version {
            return false;
        }
        self.version = version.to_owned();
        self.installed_at = now;
        true
    }

    /// Replaces the control-file override.
    pub(crate) fn set_control(&mut self, control: ControlOverride) {
        self.control = control;
    }

    /// Returns the error rate and mean latency (ms) in effect at `now`.
    pub(crate) fn conditions(&self, now: Instant) -> (f64, f64) {
        let beta_failing = self.version == self.beta.version
            && now.saturating_duration_since(self.installed_at) >= self.beta.fail_after;
        let (error_rate, latency_ms) = if beta_failing {
            let latency_ms = BASE_LATENCY_MS * self.beta.latency_factor;
            (self.beta.error_rate, latency_ms)
        } else {
            (BASE_ERROR_RATE, BASE_LATENCY_MS)
        };
        (
            self.control.error_rate.unwrap_or(error_rate),
            self.control.latency_ms.unwrap_or(latency_ms),
        )
    }

    /// Returns whether the app is worse than a healthy version at `now`.
    pub(crate) fn failing(&self, now: Instant) -> bool {
        let (error_rate, latency_ms) = self.conditions(now);
        error_rate > BASE_ERROR_RATE || latency_ms > BASE_LATENCY_MS
    }

    /// Serves one 100 ms tick worth of simulated requests.
    pub(crate) fn tick(&mut self, now: Instant) {
        let (error_rate, latency_ms) = self.conditions(now);
        self.request_carry += self.rps;
        let n_requests = self.request_carry / 10;
        self.request_carry %= 10;
        self.error_carry_ppm += n_requests * to_ppm(error_rate);
        let n_errors = (self.error_carry_ppm / PPM).min(n_requests);
        self.error_carry_ppm %= PPM;
        self.error_total += n_errors;
        self.ok_total += n_requests - n_errors;

        let mean_secs = latency_ms / 1000.0;
        for (count, (_, factor)) in self.spread(n_requests).into_iter().zip(LATENCY_SHAPE) {
            let latency_secs = mean_secs * factor;
            let bucket_idx = BUCKET_BOUNDS_SECS
                .iter()
                .position(|&bound| latency_secs <= bound)
                .unwrap_or(N_BUCKETS - 1);
            self.bucket_counts[bucket_idx] += count;
            self.duration_sum_secs += count as f64 * latency_secs;
        }

        self.queue_depth = if self.failing(now) {
            (self.queue_depth + QUEUE_GROWTH).min(QUEUE_MAX)
        } else {
            // Drain a fifth per tick, at least one, down to the base depth.
            (self.queue_depth - (self.queue_depth / 5).max(1)).max(QUEUE_BASE)
        };
    }

    /// Splits `n_requests` over the latency shape steps.
    fn spread(&mut self, n_requests: u64) -> [u64; LATENCY_SHAPE.len()] {
        let whole_cycles = n_requests / 100;
        let mut counts = LATENCY_SHAPE.map(|(share, _)| whole_cycles * share);
        // The rest goes one by one through smooth weighted round robin (as
        // nginx balances upstreams): every 100 picks hit each step exactly
        // `share` times, interleaved, so even the 1% tail shows up steadily.
        for _ in 0..n_requests % 100 {
            let mut pick = 0;
            for (step_idx, (share, _)) in LATENCY_SHAPE.iter().enumerate() {
                self.shape_current[step_idx] += *share as i64;
                if self.shape_current[step_idx] > self.shape_current[pick] {
                    pick = step_idx;
                }
            }
            self.shape_current[pick] -= 100;
            counts[pick] += 1;
        }
        counts
    }

    /// Returns whether one `/healthz` probe at `now` passes: always while
    /// healthy, otherwise all but a fraction equal to the current error rate.
    pub(crate) fn probe(&mut self, now: Instant) -> bool {
        if !self.failing(now) {
            return true;
        }
        self.probe_carry_ppm += to_ppm(self.conditions(now).0);
        if self.probe_carry_ppm >= PPM {
            self.probe_carry_ppm -= PPM;
            return false;
        }
        true
    }

    /// Returns the `/metrics` body (text exposition format 0.0.4).
    pub(crate) fn render(&self, now: Instant) -> String {
        let mut out = String::new();
        self.write_exposition(&mut out, now)
            .expect("writing to a String cannot fail");
        out
    }

    fn write_exposition(&self, out: &mut String, now: Instant) -> fmt::Result {
        let failing = self.failing(now);
        writeln!(
            out,
            "# HELP http_requests_total Requests served, by method and status code."
        )?;
        writeln!(out, "# TYPE http_requests_total counter")?;
        for (code, total) in [("200", self.ok_total), ("500", self.error_total)] {
            writeln!(
                out,
                "http_requests_total{{method=\"GET\",code=\"{code}\"}} {total}"
            )?;
        }
        writeln!(
            out,
            "# HELP http_request_duration_seconds Request latency in seconds."
        )?;
        writeln!(out, "# TYPE http_request_duration_seconds histogram")?;
        let mut cumulative = 0;
        for (bucket_idx, count) in self.bucket_counts.iter().enumerate() {
            cumulative += count;
            let le = BUCKET_BOUNDS_SECS
                .get(bucket_idx)
                .map_or_else(|| "+Inf".to_owned(), f64::to_string);
            writeln!(
                out,
                "http_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            )?;
        }
        writeln!(
            out,
            "http_request_duration_seconds_sum {}",
            self.duration_sum_secs
        )?;
        writeln!(out, "http_request_duration_seconds_count {cumulative}")?;
        let (cache_hit_ratio, worker_health) = if failing { (0.62, 0.5) } else { (0.95, 1.0) };
        let gauges = [
            (
                "queue_depth",
                "Requests waiting for a worker.",
                self.queue_depth as f64,
            ),
            (
                "cache_hit_ratio",
                "Share of lookups served from cache.",
                cache_hit_ratio,
            ),
            (
                "worker_health",
                "Health of the worker pool, 0 to 1.",
                worker_health,
            ),
        ];
        for (name, help, value) in gauges {
            writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            )?;
        }
        writeln!(out, "# HELP demo_app_info The installed version; always 1.")?;
        writeln!(out, "# TYPE demo_app_info gauge")?;
        let version = escape_label_value(&self.version);
        writeln!(out, "demo_app_info{{version=\"{version}\"}} 1")
    }
}

/// Converts a rate in [0, 1] to parts per million.
fn to_ppm(rate: f64) -> u64 {
    (rate.clamp(0.0, 1.0) * PPM as f64).round() as u64
}

/// Escapes a label value as the text format requires: `\`, `"` and newline.
fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests;
