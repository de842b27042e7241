//! What one round holds: each host's contribution ([`HostRound`]), how a
//! cohort's hosts add up, and the [`RoundInput`] a round is judged on.
//!
//! Rounds are windowed by the coordinator's receive time: every sample that
//! arrives during a round is added to its host's [`HostRound`]. App counts
//! add up (requests, errors, bucket deltas); host figures are the mean of
//! the host's samples in the round; gauges keep the latest value.

use super::host_figure::{HostFigure, PerFigure};
use crate::exposition::histogram_quantile;
use crate::ids::HostId;
use crate::sample::{AppHealth, Bucket, HostSample};
use crate::Cohort;

/// The data of one round of one deployment.
#[derive(Debug, Clone, Copy)]
pub struct RoundInput<'a> {
    /// Hosts that sent at least one sample during the round.
    pub hosts: &'a [HostRound],
    /// Length of the round, for `request_rate`.
    pub round_secs: f64,
    /// Beta hosts of the deployment seen in the last 24 h (blast radius).
    pub beta_seen: u32,
    /// All hosts of the deployment seen in the last 24 h.
    pub hosts_seen: u32,
}

/// App counts of one host or cohort over one round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppTotals {
    /// Hosts (or samples) that carried app data.
    pub reporting: u32,
    pub requests: f64,
    pub errors: f64,
    pub latency_buckets: Vec<Bucket>,
    pub scrape_enabled: bool,
    pub scrapes: u32,
    pub scrape_errors: u32,
    pub last_scrape_error: String,
    pub probe_enabled: bool,
    pub probes: u32,
    pub probe_errors: u32,
    pub last_probe_error: String,
    pub probe_latency_buckets: Vec<Bucket>,
}

impl AppTotals {
    /// Adds another host's (or sample's) totals.
    pub fn add(&mut self, other: &AppTotals) {
        // Saturating: counts come from peers (validated, but summed over many).
        self.reporting = self.reporting.saturating_add(other.reporting);
        self.requests += other.requests;
        self.errors += other.errors;
        add_buckets(&mut self.latency_buckets, &other.latency_buckets);
        self.scrape_enabled |= other.scrape_enabled;
        self.scrapes = self.scrapes.saturating_add(other.scrapes);
        self.scrape_errors = self.scrape_errors.saturating_add(other.scrape_errors);
        if !other.last_scrape_error.is_empty() {
            self.last_scrape_error.clone_from(&other.last_scrape_error);
        }
        self.probe_enabled |= other.probe_enabled;
        self.probes = self.probes.saturating_add(other.probes);
        self.probe_errors = self.probe_errors.saturating_add(other.probe_errors);
        if !other.last_probe_error.is_empty() {
            self.last_probe_error.clone_from(&other.last_probe_error);
        }
        add_buckets(
            &mut self.probe_latency_buckets,
            &other.probe_latency_buckets,
        );
    }

    /// Adds one sample's app health (as `add` would its totals, without the copies).
    fn add_sample(&mut self, app: &AppHealth) {
        self.reporting = self.reporting.saturating_add(1);
        self.requests += app.requests;
        self.errors += app.errors;
        add_buckets(&mut self.latency_buckets, &app.latency_buckets);
        self.scrape_enabled |= app.scrape_enabled;
        self.scrapes = self.scrapes.saturating_add(app.scrapes);
        self.scrape_errors = self.scrape_errors.saturating_add(app.scrape_errors);
        if !app.scrape_error.is_empty() {
            self.last_scrape_error.clone_from(&app.scrape_error);
        }
        self.probe_enabled |= app.probe_enabled;
        self.probes = self.probes.saturating_add(app.probes);
        self.probe_errors = self.probe_errors.saturating_add(app.probe_errors);
        if !app.probe_error.is_empty() {
            self.last_probe_error.clone_from(&app.probe_error);
        }
        add_buckets(&mut self.probe_latency_buckets, &app.probe_latency_buckets);
    }

    /// Σerrors / Σrequests, `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.errors / self.requests)
    }

    /// Failed probes / probes, `None` without probes.
    pub fn probe_error_rate(&self) -> Option<f64> {
        (self.probes > 0).then(|| f64::from(self.probe_errors) / f64::from(self.probes))
    }

    /// True when scrapes were configured but every one in the round failed.
    pub fn scrape_blind(&self) -> bool {
        self.scrape_enabled && self.scrapes > 0 && self.scrape_errors >= self.scrapes
    }
}

/// One host's contribution to one round.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRound {
    pub host_id: HostId,
    pub cohort: Cohort,
    /// Samples received in the round.
    pub samples: u32,
    /// Sums of host figures over the samples (divide by `samples`, or by
    /// `psi_samples` for the PSI figures).
    sums: PerFigure,
    /// Samples that had PSI figures, which some samples lack.
    psi_samples: u32,
    pub app: AppTotals,
    /// Latest gauge values.
    pub gauges: Vec<(String, f64)>,
}

impl HostRound {
    /// Starts an empty round for a host.
    pub fn new(host_id: HostId, cohort: Cohort) -> Self {
        HostRound {
            host_id,
            cohort,
            samples: 0,
            sums: PerFigure::default(),
            psi_samples: 0,
            app: AppTotals::default(),
            gauges: Vec::new(),
        }
    }

    /// Adds one received sample.
    pub fn add(&mut self, sample: &HostSample) {
        self.samples = self.samples.saturating_add(1);
        if sample.pressure.is_some() {
            self.psi_samples = self.psi_samples.saturating_add(1);
        }
        for figure in HostFigure::ALL {
            if let Some(value) = figure.of(sample) {
                self.sums[figure] += value;
            }
        }
        if let Some(app) = &sample.app {
            // Several samples of one host count as one reporting host.
            let reporting = self.app.reporting.max(1);
            self.app.add_sample(app);
            self.app.reporting = reporting;
            if !app.gauges.is_empty() {
                self.gauges.clone_from(&app.gauges);
            }
        }
    }

    /// Returns the host's mean of a host metric over the round, `None` if absent.
    pub fn host_figure(&self, name: &str) -> Option<f64> {
        if self.samples == 0 {
            return None;
        }
        let figure = HostFigure::from_name(name)?;
        let n_samples = if figure.is_pressure() {
            self.psi_samples
        } else {
            self.samples
        };
        (n_samples > 0).then(|| self.sums[figure] / f64::from(n_samples))
    }

    /// Returns the latest value of a gauge.
    pub fn gauge(&self, name: &str) -> Option<f64> {
        self.gauges.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// Adds the cumulative histogram `from` into `into`: in place when the
/// bounds are the same (the usual case), else as [`merge_buckets`].
fn add_buckets(into: &mut Vec<Bucket>, from: &[Bucket]) {
    if from.is_empty() {
        return;
    }
    let same_bounds = into.len() == from.len()
        && into
            .iter()
            .zip(from)
            .all(|(x, y)| x.upper_bound == y.upper_bound);
    if same_bounds {
        for (x, y) in into.iter_mut().zip(from) {
            x.cumulative_count += y.cumulative_count;
        }
    } else {
        *into = merge_buckets(into, from);
    }
}

/// Merges two cumulative histograms bucket by bound.
///
/// Hosts normally share bounds; where they differ, the union of bounds is
/// used and a histogram contributes, at a bound it lacks, its count at its
/// largest bound below it (a lower bound of the true count).
pub fn merge_buckets(a: &[Bucket], b: &[Bucket]) -> Vec<Bucket> {
    if a.is_empty() {
        return b.to_vec();
    }
    if b.is_empty() {
        return a.to_vec();
    }
    if a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.upper_bound == y.upper_bound) {
        return a
            .iter()
            .zip(b)
            .map(|(x, y)| Bucket {
                upper_bound: x.upper_bound,
                cumulative_count: x.cumulative_count + y.cumulative_count,
            })
            .collect();
    }
    // One pass over both (bounds strictly increase in each): linear, where
    // looking each bound of the union up in both was quadratic, and a round
    // merges under the fleet lock (issue 10).
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut a_idx, mut b_idx) = (0, 0);
    let (mut a_count, mut b_count) = (0.0, 0.0);
    while a_idx < a.len() || b_idx < b.len() {
        let bound = match (a.get(a_idx), b.get(b_idx)) {
            (Some(x), Some(y)) if y.upper_bound.total_cmp(&x.upper_bound).is_lt() => y.upper_bound,
            (Some(x), _) => x.upper_bound,
            (None, Some(y)) => y.upper_bound,
            (None, None) => break,
        };
        while let Some(x) = a.get(a_idx).filter(|x| x.upper_bound <= bound) {
            a_count = x.cumulative_count;
            a_idx += 1;
        }
        while let Some(y) = b.get(b_idx).filter(|y| y.upper_bound <= bound) {
            b_count = y.cumulative_count;
            b_idx += 1;
        }
        merged.push(Bucket {
            upper_bound: bound,
            cumulative_count: a_count + b_count,
        });
    }
    merged
}

/// The `q` quantile of cumulative buckets (bounds in seconds), in milliseconds.
pub fn quantile_ms(q: f64, buckets: &[Bucket]) -> Option<f64> {
    let pairs: Vec<(f64, f64)> = buckets
        .iter()
        .map(|b| (b.upper_bound, b.cumulative_count))
        .collect();
    histogram_quantile(q, &pairs)
        .filter(|v| v.is_finite())
        .map(|seconds| seconds * 1000.0)
}
