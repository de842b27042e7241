//! A cohort's hosts in one round and the values a rule is judged on: pooled
//! app metrics, mean (or worst-host) host figures and gauges.

use super::config::{Metric, MetricKind};
use super::round::{quantile_ms, AppTotals, HostRound};
use super::verdict::CohortFigures;
use crate::Cohort;

/// One cohort's reporting hosts in a round, with their app totals pooled.
#[derive(Debug)]
pub(super) struct CohortRound<'a> {
    /// Hosts of the cohort that sent at least one sample.
    pub(super) hosts: Vec<&'a HostRound>,
    /// The hosts' app totals added up.
    pub(super) app: AppTotals,
}

impl<'a> CohortRound<'a> {
    /// Returns the hosts of `cohort` that reported in the round, pooled.
    pub(super) fn of(hosts: &'a [HostRound], cohort: Cohort) -> Self {
        let hosts: Vec<&HostRound> = hosts
            .iter()
            .filter(|h| h.cohort == cohort && h.samples > 0)
            .collect();
        let mut app = AppTotals::default();
        for host in &hosts {
            app.add(&host.app);
        }
        CohortRound { hosts, app }
    }

    /// Returns how many hosts reported.
    pub(super) fn n_hosts(&self) -> usize {
        self.hosts.len()
    }

    /// Returns the figures stored with every round.
    pub(super) fn figures(&self) -> CohortFigures {
        let (hosts, app) = (&self.hosts, &self.app);
        CohortFigures {
            hosts: hosts.len() as u32,
            requests: app.requests,
            errors: app.errors,
            error_rate: app.error_rate(),
            latency_p99_ms: quantile_ms(0.99, &app.latency_buckets),
            cpu_percent: mean(hosts.iter().filter_map(|h| h.host_figure("cpu_percent"))),
            memory_percent: mean(hosts.iter().filter_map(|h| h.host_figure("memory_percent"))),
            latency_buckets: app
                .latency_buckets
                .iter()
                .map(|b| (b.upper_bound, b.cumulative_count))
                .collect(),
        }
    }

    /// Returns the cohort's value of `metric`, `None` when no host has it.
    pub(super) fn value(&self, metric: &Metric, round_secs: f64) -> Option<f64> {
        let hosts = &self.hosts;
        match (metric.kind, metric.worst_host) {
            (MetricKind::App, false) => app_value(&metric.base, &self.app, round_secs),
            (MetricKind::App, true) => max(hosts
                .iter()
                .filter_map(|h| app_value(&metric.base, &h.app, round_secs))),
            (MetricKind::Host, false) => {
                mean(hosts.iter().filter_map(|h| h.host_figure(&metric.base)))
            }
            (MetricKind::Host, true) => {
                max(hosts.iter().filter_map(|h| h.host_figure(&metric.base)))
            }
            (MetricKind::Gauge, false) => mean(hosts.iter().filter_map(|h| h.gauge(&metric.base))),
            (MetricKind::Gauge, true) => max(hosts.iter().filter_map(|h| h.gauge(&metric.base))),
        }
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

fn max(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.fold(None, |acc: Option<f64>, v| {
        Some(acc.map_or(v, |a| a.max(v)))
    })
}

/// The pooled value of an app metric over `app` (one host's or a cohort's totals).
fn app_value(metric: &str, app: &AppTotals, round_secs: f64) -> Option<f64> {
    match metric {
        "error_rate" => app.error_rate(),
        "request_rate" => {
            (round_secs > 0.0 && app.reporting > 0).then(|| app.requests / round_secs)
        }
        "latency_p50_ms" => quantile_ms(0.5, &app.latency_buckets),
        "latency_p95_ms" => quantile_ms(0.95, &app.latency_buckets),
        "latency_p99_ms" => quantile_ms(0.99, &app.latency_buckets),
        "latency_p999_ms" => quantile_ms(0.999, &app.latency_buckets),
        "probe_error_rate" => app.probe_error_rate(),
        "probe_latency_p50_ms" => quantile_ms(0.5, &app.probe_latency_buckets),
        "probe_latency_p95_ms" => quantile_ms(0.95, &app.probe_latency_buckets),
        "probe_latency_p99_ms" => quantile_ms(0.99, &app.probe_latency_buckets),
        "probe_latency_p999_ms" => quantile_ms(0.999, &app.probe_latency_buckets),
        _ => None,
    }
}
