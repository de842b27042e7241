//! The coordinator's own metrics, served as Prometheus text exposition
//! format 0.0.4 on `--http-listen` (`/metrics`), with `/healthz` (the process
//! is alive) and `/readyz` (the store is open and the gRPC listener is up).
//!
//! Counters are atomics bumped on the hot path; everything else (agents,
//! cohort figures, verdicts, commands) is read from fleet and judge state at
//! scrape time. Names follow Prometheus conventions so `promtool check
//! metrics` is clean: base units (`_seconds`, `_bytes`, `_ratio`), `_total`
//! on counters, HELP on every family. Label cardinality is bounded by
//! deployments and cohorts; per-host series exist only with
//! `[metrics] per_host = true`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::counters::{Counters, COMMIT_BOUNDS};
use crate::decisions::Decisions;
use crate::fleet::Fleet;
use crate::outbound::AgentTx;

/// One gauge family: name, help, and how to read it.
type Spec<F> = (&'static str, &'static str, F);
type CohortGauge = Spec<fn(&crate::fleet::CohortView) -> f64>;
type HostFigure = Spec<fn(&rollguard_common::aggregate::CohortAggregate) -> (f64, Option<f64>)>;
type AppFigure = Spec<fn(&rollguard_common::policy::CohortFigures, f64) -> Option<f64>>;

/// What a scrape reads.
#[derive(Debug, Clone)]
pub(crate) struct Scrape {
    pub(crate) config: Arc<Config>,
    pub(crate) fleet: Arc<Fleet<AgentTx>>,
    pub(crate) decisions: Arc<Decisions>,
    pub(crate) counters: Arc<Counters>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    scrape: Scrape,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "metrics listener accept failed");
                    continue;
                }
            },
        };
        let scrape = scrape.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let scrape = scrape.clone();
                    async move { Ok::<_, std::convert::Infallible>(route(&request, &scrape)) }
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

fn route(request: &Request<hyper::body::Incoming>, scrape: &Scrape) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, content_type: &'static str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    if request.method() != hyper::Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        );
    }
    match request.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(scrape),
        ),
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" => {
            if scrape.counters.ready.load(Ordering::Relaxed) {
                text(StatusCode::OK, "text/plain", "ready\n".to_owned())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready\n".to_owned(),
                )
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    }
}

/// Escapes a label value for the text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn start<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (idx, (key, val)) in labels.iter().enumerate() {
                if idx > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", fmt_value(value));
    }
}

fn fmt_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{value}")
    }
}

/// Renders every family.
pub(crate) fn render(scrape: &Scrape) -> String {
    let mut out = String::with_capacity(8192);
    let views = scrape.fleet.status(None);

    let gauges: [CohortGauge; 3] = [
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
    for (name, help, get) in gauges {
        let mut family = Family::start(&mut out, name, "gauge", help);
        for view in &views {
            for cohort in &view.cohorts {
                family.sample(
                    name,
                    &[
                        ("deployment", view.deployment.as_str()),
                        ("cohort", cohort.cohort.as_str()),
                    ],
                    get(cohort),
                );
            }
        }
    }

    let host_figures: [HostFigure; 7] = [
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
    for (name, help, get) in host_figures {
        let mut family = Family::start(&mut out, name, "gauge", help);
        for view in &views {
            for cohort in &view.cohorts {
                if cohort.aggregate.hosts == 0 {
                    continue;
                }
                let (mean, max) = get(&cohort.aggregate);
                let base = [
                    ("deployment", view.deployment.as_str()),
                    ("cohort", cohort.cohort.as_str()),
                ];
                match max {
                    Some(max) => {
                        family.sample(name, &[base[0], base[1], ("stat", "mean")], mean);
                        family.sample(name, &[base[0], base[1], ("stat", "max")], max);
                    }
                    None => family.sample(name, &base, mean),
                }
            }
        }
    }

    // App figures and verdicts come from each deployment's latest round.
    let mut deployments: Vec<rollguard_common::DeploymentName> =
        views.iter().map(|v| v.deployment.clone()).collect();
    deployments.extend(scrape.config.deployments.keys().cloned());
    deployments.sort();
    deployments.dedup();
    let rounds: Vec<_> = deployments
        .iter()
        .filter_map(|d| scrape.decisions.latest(d).map(|r| (d.clone(), r)))
        .collect();
    let app_figures: [AppFigure; 3] = [
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
    for (name, help, get) in app_figures {
        let mut family = Family::start(&mut out, name, "gauge", help);
        for (deployment, round) in &rounds {
            let secs = scrape
                .config
                .deployment(deployment)
                .check_interval
                .as_secs_f64();
            for (cohort, figures) in [
                ("beta", &round.evaluation.beta),
                ("baseline", &round.evaluation.baseline),
            ] {
                if let Some(value) = get(figures, secs) {
                    family.sample(
                        name,
                        &[("deployment", deployment.as_str()), ("cohort", cohort)],
                        value,
                    );
                }
            }
        }
    }
    {
        let name = "rollguard_verdicts_total";
        let mut family = Family::start(
            &mut out,
            name,
            "counter",
            "Evaluation rounds by deployment and verdict since the coordinator started.",
        );
        let verdicts = scrape.counters.verdicts();
        for ((deployment, verdict), count) in verdicts {
            family.sample(
                name,
                &[("deployment", &deployment), ("verdict", verdict)],
                count as f64,
            );
        }
    }
    {
        let name = "rollguard_deployment_verdict";
        let mut family = Family::start(
            &mut out,
            name,
            "gauge",
            "The latest round's verdict per deployment (1 for the current verdict).",
        );
        for (deployment, round) in &rounds {
            for verdict in ["pass", "fail", "inconclusive", "error"] {
                let current = round.evaluation.verdict.as_str() == verdict;
                family.sample(
                    name,
                    &[("deployment", deployment.as_str()), ("verdict", verdict)],
                    if current { 1.0 } else { 0.0 },
                );
            }
        }
    }
    {
        let name = "rollguard_consecutive_failures";
        let mut family = Family::start(
            &mut out,
            name,
            "gauge",
            "Failing rounds in a row per deployment.",
        );
        for deployment in &deployments {
            family.sample(
                name,
                &[("deployment", deployment.as_str())],
                f64::from(scrape.decisions.state(deployment).consecutive),
            );
        }
        let name = "rollguard_deployment_armed";
        let mut family = Family::start(&mut out, name, "gauge", "1 when the policy may decide a rollback of the deployment, 0 after a decision until rearm.");
        for deployment in &deployments {
            family.sample(
                name,
                &[("deployment", deployment.as_str())],
                if scrape.decisions.state(deployment).armed {
                    1.0
                } else {
                    0.0
                },
            );
        }
        let name = "rollguard_deployment_blast_radius_exceeded";
        let mut family = Family::start(
            &mut out,
            name,
            "gauge",
            "1 when the deployment's beta share exceeds max_beta_share.",
        );
        for (deployment, round) in &rounds {
            family.sample(
                name,
                &[("deployment", deployment.as_str())],
                if round.evaluation.blast_radius_exceeded {
                    1.0
                } else {
                    0.0
                },
            );
        }
    }
    {
        let name = "rollguard_command_results";
        let mut family = Family::start(
            &mut out,
            name,
            "gauge",
            "Per-host results of every command known, by status.",
        );
        for (status, count) in scrape.fleet.command_results_by_status() {
            family.sample(name, &[("status", status)], count as f64);
        }
    }
    for (name, help, counter) in [
        (
            "rollguard_samples_ingested_total",
            "Samples applied to fleet state.",
            &scrape.counters.samples_ingested,
        ),
        (
            "rollguard_samples_rejected_total",
            "Samples refused as malformed (the stream ended with INVALID_ARGUMENT).",
            &scrape.counters.samples_rejected,
        ),
        (
            "rollguard_samples_late_total",
            "Samples applied to fleet state but left out of rounds: a backlog resent after a reconnect, older than the round window.",
            &scrape.counters.samples_late,
        ),
        (
            "rollguard_samples_deduplicated_total",
            "Samples skipped as already applied (resent after a reconnect).",
            &scrape.counters.samples_deduplicated,
        ),
    ] {
        let mut family = Family::start(&mut out, name, "counter", help);
        family.sample(name, &[], counter.load(Ordering::Relaxed) as f64);
    }
    {
        let name = "rollguard_store_commit_duration_seconds";
        let commits = scrape.counters.commits();
        let mut family = Family::start(
            &mut out,
            name,
            "histogram",
            "Time to apply and fsync one group commit of the store.",
        );
        for (bucket, bound) in commits.buckets.iter().zip(COMMIT_BOUNDS) {
            let le = format!("{bound}");
            family.sample(&format!("{name}_bucket"), &[("le", &le)], *bucket as f64);
        }
        let count = commits.count as f64;
        family.sample(&format!("{name}_bucket"), &[("le", "+Inf")], count);
        family.sample(&format!("{name}_sum"), &[], commits.sum_secs);
        family.sample(&format!("{name}_count"), &[], count);
    }
    if scrape.config.metrics_per_host {
        let agents = scrape.fleet.agents(None);
        for (name, help, get) in [
            (
                "rollguard_host_cpu_usage_ratio",
                "CPU busy share (0-1) of one host.",
                (|s: &rollguard_common::HostSample| s.cpu_percent / 100.0)
                    as fn(&rollguard_common::HostSample) -> f64,
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
        ] {
            let mut family = Family::start(&mut out, name, "gauge", help);
            for agent in agents.iter().filter(|a| a.connected) {
                if let Some(sample) = &agent.latest {
                    family.sample(
                        name,
                        &[
                            ("host", agent.identity.host_id.as_str()),
                            ("deployment", agent.identity.deployment.as_str()),
                            ("cohort", agent.identity.cohort.as_str()),
                        ],
                        get(sample),
                    );
                }
            }
        }
    }
    out
}
