//! Every family of `/metrics`, read from fleet and decision state at scrape
//! time by one `prometheus-client` collector. Every family's HELP and TYPE
//! appear from start-up, before there is data for it; per-host families
//! only with `[metrics] per_host = true`.
//!
//! Label values are escaped here ([`Escaped`]): the crate writes them as
//! given, and a host id may hold a `"` or a `\`.

use std::fmt::Write as _;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use rollguard_common::aggregate::CohortAggregate;
use rollguard_common::policy::CohortFigures;
use rollguard_common::{DeploymentName, HostSample};

use super::Scrape;
use crate::counters::COMMIT_BOUNDS;
use crate::fleet::{CohortView, DeploymentView};
use crate::store::RoundRecord;

type Result = std::result::Result<(), std::fmt::Error>;

/// A label value, escaped for the text format.
#[derive(Debug, Clone, Copy)]
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

type Labels<'a> = Vec<(&'static str, Escaped<'a>)>;

/// Starts a family; returns its encoder.
fn family<'e>(
    encoder: &'e mut DescriptorEncoder<'_>,
    name: &'e str,
    help: &str,
    metric_type: MetricType,
) -> std::result::Result<MetricEncoder<'e>, std::fmt::Error> {
    encoder.encode_descriptor(name, help, None, metric_type)
}

/// A gauge family with one sample per labelled value.
fn gauges<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
) -> Result {
    let mut family = family(encoder, name, help, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A counter family: declared without `_total` (see `text.rs`).
fn counters<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, u64)>,
) -> Result {
    let name = name.strip_suffix("_total").unwrap_or(name);
    let mut family = family(encoder, name, help, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A counter family of one unlabelled sample.
fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> Result {
    let name = name.strip_suffix("_total").unwrap_or(name);
    ConstCounter::new(value).encode(family(encoder, name, help, MetricType::Counter)?)
}

/// What one scrape reads, read once.
struct Reading {
    views: Vec<DeploymentView>,
    /// Deployments seen or configured, sorted.
    deployments: Vec<DeploymentName>,
    /// Each deployment's latest round, if it has one.
    rounds: Vec<(DeploymentName, RoundRecord)>,
}

/// The collector over fleet, decisions and counters.
#[derive(Debug)]
pub(crate) struct FleetCollector {
    scrape: Scrape,
}

impl FleetCollector {
    pub(crate) fn new(scrape: Scrape) -> Self {
        FleetCollector { scrape }
    }

    fn read(&self) -> Reading {
        let views = self.scrape.fleet.status(None);
        let mut deployments: Vec<DeploymentName> =
            views.iter().map(|v| v.deployment.clone()).collect();
        deployments.extend(self.scrape.config.deployments.keys().cloned());
        deployments.sort();
        deployments.dedup();
        let rounds = deployments
            .iter()
            .filter_map(|d| self.scrape.decisions.latest(d).map(|r| (d.clone(), r)))
            .collect();
        Reading {
            views,
            deployments,
            rounds,
        }
    }
}

impl Collector for FleetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result {
        let reading = self.read();
        cohort_gauges(&mut encoder, &reading.views)?;
        host_figures(&mut encoder, &reading.views)?;
        self.app_figures(&mut encoder, &reading.rounds)?;
        self.verdicts(&mut encoder, &reading)?;
        self.commands_and_samples(&mut encoder)?;
        self.commit_histogram(&mut encoder)?;
        if self.scrape.config.metrics_per_host {
            self.per_host(&mut encoder)?;
        }
        Ok(())
    }
}

fn cohort_labels<'a>(view: &'a DeploymentView, cohort: &'a CohortView) -> Labels<'a> {
    vec![
        ("deployment", Escaped(view.deployment.as_str())),
        ("cohort", Escaped(cohort.cohort.as_str())),
    ]
}

type CohortGauge = (&'static str, &'static str, fn(&CohortView) -> f64);

fn cohort_gauges(encoder: &mut DescriptorEncoder<'_>, views: &[DeploymentView]) -> Result {
    let families: [CohortGauge; 3] = [
        (
            "rollguard_agents_connected",
            "Agents connected and reporting, per deployment and cohort.",
            |c| f64::from(c.hosts_connected),
        ),
        (
            "rollguard_agents_stale",
            "Agents connected but silent for more than three intervals.",
            |c| f64::from(c.hosts_stale),
        ),
        (
            "rollguard_agents_disconnected",
            "Agents seen before that are not connected now.",
            |c| f64::from(c.hosts_disconnected),
        ),
    ];
    for (name, help, get) in families {
        let samples = views.iter().flat_map(|view| {
            view.cohorts
                .iter()
                .map(move |cohort| (cohort_labels(view, cohort), get(cohort)))
        });
        gauges(encoder, name, help, samples)?;
    }
    Ok(())
}

/// Name, help, and the mean (and max, if the family has one) of a cohort.
type HostFigure = (
    &'static str,
    &'static str,
    fn(&CohortAggregate) -> (f64, Option<f64>),
);

const HOST_FIGURES: [HostFigure; 7] = [
    (
        "rollguard_cohort_cpu_usage_ratio",
        "CPU busy share (0-1) over the cohort's hosts: mean and max.",
        |a| (a.cpu_percent_mean / 100.0, Some(a.cpu_percent_max / 100.0)),
    ),
    (
        "rollguard_cohort_memory_usage_ratio",
        "Memory used share (0-1) over the cohort's hosts: mean and max.",
        |a| {
            (
                a.memory_percent_mean / 100.0,
                Some(a.memory_percent_max / 100.0),
            )
        },
    ),
    (
        "rollguard_cohort_load1",
        "One-minute load average over the cohort's hosts: mean and max.",
        |a| (a.load1_mean, Some(a.load1_max)),
    ),
    (
        "rollguard_cohort_disk_read_bytes_per_second",
        "Whole-disk read rate, mean over the cohort's hosts.",
        |a| (a.disk_read_bytes_per_sec_mean, None),
    ),
    (
        "rollguard_cohort_disk_written_bytes_per_second",
        "Whole-disk write rate, mean over the cohort's hosts.",
        |a| (a.disk_write_bytes_per_sec_mean, None),
    ),
    (
        "rollguard_cohort_network_receive_bytes_per_second",
        "Network receive rate, mean over the cohort's hosts.",
        |a| (a.net_rx_bytes_per_sec_mean, None),
    ),
    (
        "rollguard_cohort_network_transmit_bytes_per_second",
        "Network transmit rate, mean over the cohort's hosts.",
        |a| (a.net_tx_bytes_per_sec_mean, None),
    ),
];

fn host_figures(encoder: &mut DescriptorEncoder<'_>, views: &[DeploymentView]) -> Result {
    for (name, help, get) in HOST_FIGURES {
        let mut samples = Vec::new();
        for view in views {
            for cohort in view.cohorts.iter().filter(|c| c.aggregate.hosts > 0) {
                let (mean, max) = get(&cohort.aggregate);
                let labels = cohort_labels(view, cohort);
                match max {
                    Some(max) => {
                        let with = |stat| {
                            let mut labels = labels.clone();
                            labels.push(("stat", Escaped(stat)));
                            labels
                        };
                        samples.push((with("mean"), mean));
                        samples.push((with("max"), max));
                    }
                    None => samples.push((labels, mean)),
                }
            }
        }
        gauges(encoder, name, help, samples)?;
    }
    Ok(())
}

/// Name, help, and a cohort's figure from its round figures and the round's length.
type AppFigure = (
    &'static str,
    &'static str,
    fn(&CohortFigures, f64) -> Option<f64>,
);

const APP_FIGURES: [AppFigure; 3] = [
    (
        "rollguard_cohort_error_ratio",
        "Errors per request over the cohort in the latest round.",
        |f, _| f.error_rate,
    ),
    (
        "rollguard_cohort_request_latency_p99_seconds",
        "99th percentile request latency over the cohort in the latest round.",
        |f, _| f.latency_p99_ms.map(|ms| ms / 1000.0),
    ),
    (
        "rollguard_cohort_requests_per_second",
        "Requests per second over the cohort in the latest round.",
        |f, secs| (secs > 0.0).then(|| f.requests / secs),
    ),
];

fn bool_value(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

fn deployment_labels(deployment: &DeploymentName) -> Labels<'_> {
    vec![("deployment", Escaped(deployment.as_str()))]
}

impl FleetCollector {
    /// App figures come from each deployment's latest round.
    fn app_figures(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        rounds: &[(DeploymentName, RoundRecord)],
    ) -> Result {
        for (name, help, get) in APP_FIGURES {
            let mut samples = Vec::new();
            for (deployment, round) in rounds {
                let policy = self.scrape.config.deployment(deployment);
                let secs = policy.check_interval.as_secs_f64();
                for (cohort, figures) in [
                    ("beta", &round.evaluation.beta),
                    ("baseline", &round.evaluation.baseline),
                ] {
                    if let Some(value) = get(figures, secs) {
                        let mut labels = deployment_labels(deployment);
                        labels.push(("cohort", Escaped(cohort)));
                        samples.push((labels, value));
                    }
                }
            }
            gauges(encoder, name, help, samples)?;
        }
        Ok(())
    }

    fn verdicts(&self, encoder: &mut DescriptorEncoder<'_>, reading: &Reading) -> Result {
        let verdicts = self.scrape.counters.verdicts();
        counters(
            encoder,
            "rollguard_verdicts_total",
            "Evaluation rounds by deployment and verdict since the coordinator started.",
            verdicts.iter().map(|((deployment, verdict), count)| {
                (
                    vec![
                        ("deployment", Escaped(deployment.as_str())),
                        ("verdict", Escaped(verdict)),
                    ],
                    *count,
                )
            }),
        )?;
        gauges(
            encoder,
            "rollguard_deployment_verdict",
            "The latest round's verdict per deployment (1 for the current verdict).",
            reading.rounds.iter().flat_map(|(deployment, round)| {
                ["pass", "fail", "inconclusive", "error"].map(|verdict| {
                    let mut labels = deployment_labels(deployment);
                    labels.push(("verdict", Escaped(verdict)));
                    let current = round.evaluation.verdict.as_str() == verdict;
                    (labels, bool_value(current))
                })
            }),
        )?;
        let decisions = &self.scrape.decisions;
        gauges(
            encoder,
            "rollguard_consecutive_failures",
            "Failing rounds in a row per deployment.",
            reading.deployments.iter().map(|d| {
                let consecutive = decisions.state(d).consecutive;
                (deployment_labels(d), f64::from(consecutive))
            }),
        )?;
        gauges(
            encoder,
            "rollguard_deployment_armed",
            "1 when the policy may decide a rollback of the deployment, 0 after a decision until rearm.",
            reading
                .deployments
                .iter()
                .map(|d| (deployment_labels(d), bool_value(decisions.state(d).armed))),
        )?;
        let retries = self.scrape.config.action_retries;
        gauges(
            encoder,
            "rollguard_hosts_needing_attention",
            "Hosts whose newest rollback failed on its last retry: they may still run the beta.",
            reading.deployments.iter().map(|d| {
                let hosts = self.scrape.fleet.needs_attention(d.as_str(), retries);
                (deployment_labels(d), hosts.len() as f64)
            }),
        )?;
        gauges(
            encoder,
            "rollguard_deployment_blast_radius_exceeded",
            "1 when the deployment's beta share exceeds max_beta_share.",
            reading.rounds.iter().map(|(d, round)| {
                let exceeded = round.evaluation.blast_radius_exceeded;
                (deployment_labels(d), bool_value(exceeded))
            }),
        )
    }

    fn commands_and_samples(&self, encoder: &mut DescriptorEncoder<'_>) -> Result {
        let results = self.scrape.fleet.command_results_by_status();
        gauges(
            encoder,
            "rollguard_command_results",
            "Per-host results of every command known, by status.",
            results
                .iter()
                .map(|(status, count)| (vec![("status", Escaped(status))], *count as f64)),
        )?;
        let counters_now = &self.scrape.counters;
        for (name, help, atomic) in [
            (
                "rollguard_samples_ingested_total",
                "Samples applied to fleet state.",
                &counters_now.samples_ingested,
            ),
            (
                "rollguard_samples_rejected_total",
                "Samples refused as malformed (the stream ended with INVALID_ARGUMENT).",
                &counters_now.samples_rejected,
            ),
            (
                "rollguard_samples_late_total",
                "Samples applied to fleet state but left out of rounds: a backlog resent after a reconnect, older than the round window.",
                &counters_now.samples_late,
            ),
            (
                "rollguard_samples_deduplicated_total",
                "Samples skipped as already applied (resent after a reconnect).",
                &counters_now.samples_deduplicated,
            ),
        ] {
            let value = atomic.load(std::sync::atomic::Ordering::Relaxed);
            counter(encoder, name, help, value)?;
        }
        counter(
            encoder,
            "rollguard_store_errors_total",
            "Store commits and reopen attempts that failed (and queued writes dropped while it could not commit); /readyz is 503 until a commit succeeds.",
            self.scrape.counters.store_errors(),
        )?;
        Ok(())
    }

    fn commit_histogram(&self, encoder: &mut DescriptorEncoder<'_>) -> Result {
        let commits = self.scrape.counters.commits();
        // The crate takes each bucket's own count; ours are cumulative.
        let mut buckets = Vec::with_capacity(COMMIT_BOUNDS.len() + 1);
        let mut below = 0;
        for (bound, cumulative) in COMMIT_BOUNDS.iter().zip(commits.buckets) {
            buckets.push((*bound, cumulative.saturating_sub(below)));
            below = cumulative;
        }
        buckets.push((f64::MAX, commits.count.saturating_sub(below)));
        let mut family = family(
            encoder,
            "rollguard_store_commit_duration_seconds",
            "Time to apply and fsync one group commit of the store.",
            MetricType::Histogram,
        )?;
        family.encode_histogram::<Labels<'_>>(commits.sum_secs, commits.count, &buckets, None)
    }

    fn per_host(&self, encoder: &mut DescriptorEncoder<'_>) -> Result {
        type HostGauge = (&'static str, &'static str, fn(&HostSample) -> f64);
        let agents = self.scrape.fleet.agents(None);
        let families: [HostGauge; 3] = [
            (
                "rollguard_host_cpu_usage_ratio",
                "CPU busy share (0-1) of one host.",
                |s| s.cpu_percent / 100.0,
            ),
            (
                "rollguard_host_memory_usage_ratio",
                "Memory used share (0-1) of one host.",
                |s| s.memory_percent() / 100.0,
            ),
            (
                "rollguard_host_load1",
                "One-minute load average of one host.",
                |s| s.load1,
            ),
        ];
        for (name, help, get) in families {
            let samples = agents.iter().filter(|a| a.connected).filter_map(|agent| {
                let sample = agent.latest.as_ref()?;
                let identity = &agent.identity;
                let labels = vec![
                    ("host", Escaped(identity.host_id.as_str())),
                    ("deployment", Escaped(identity.deployment.as_str())),
                    ("cohort", Escaped(identity.cohort.as_str())),
                ];
                Some((labels, get(sample)))
            });
            gauges(encoder, name, help, samples)?;
        }
        Ok(())
    }
}
