//! rollguardctl: the operator's gRPC client.
//!
//! stdout carries only the command's output (with `-o json`, exactly one JSON
//! document, also on failure); logs go to stderr.

mod demo;
mod judge;
mod output;

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand, ValueEnum};
use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use serde_json::{json, Value};
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument;

use self::output::{fmt_bytes, fmt_rate, fmt_time, table};

/// Time allowed to establish the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default deadline of one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Operate a rollguard fleet: status, agents, rollback, history.
#[derive(Debug, Parser)]
#[command(name = "rollguardctl", version, about)]
pub struct Cli {
    /// Coordinator URL.
    #[arg(
        long,
        global = true,
        env = "ROLLGUARD_COORDINATOR",
        default_value = "http://127.0.0.1:7600"
    )]
    pub coordinator: String,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// OTLP/gRPC endpoint for this call's trace (env OTEL_EXPORTER_OTLP_ENDPOINT).
    #[arg(long, global = true, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document for scripts.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Per deployment and cohort: hosts connected/stale and aggregate figures.
    Status {
        /// Only this deployment.
        #[arg(long)]
        deployment: Option<String>,
        /// Keep redrawing from the server's stream.
        #[arg(long)]
        watch: bool,
    },
    /// One row per host with its latest figures.
    Agents {
        /// Only this deployment.
        #[arg(long)]
        deployment: Option<String>,
    },
    /// Every deployment with its policy (rules, rounds, dry run) and arming;
    /// one only hosts announce shows as having no policy.
    Deployments,
    /// Roll back DEPLOYMENT's beta hosts now (allowed whether armed or not).
    Rollback {
        /// The deployment to roll back.
        deployment: String,
        /// Why; kept in the audit history.
        #[arg(long)]
        reason: String,
        /// Wait for each host's result; exit non-zero unless all succeeded.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Each target host's result of a rollback (its id is in `history` and
    /// `why`); exits non-zero unless every host succeeded.
    Results {
        /// The rollback's command id.
        command_id: String,
        /// Wait until every host has a final result (or --timeout passes).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// The audit history of changes (rollbacks and the like).
    History {
        /// Only this deployment.
        #[arg(long)]
        deployment: Option<String>,
        /// At most this many entries (newest).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// The last rounds' verdicts of DEPLOYMENT with each rule's value,
    /// baseline, limit and outcome: why it rolled back (or why not).
    Why {
        /// The deployment to explain.
        deployment: String,
        /// How many rounds, newest last.
        #[arg(long, default_value_t = 10)]
        rounds: u32,
    },
    /// Let the policy decide a rollback of DEPLOYMENT again (resets the count).
    Rearm {
        /// The deployment to re-arm.
        deployment: String,
        /// Why; kept in the audit history.
        #[arg(long, default_value = "re-armed by an operator")]
        reason: String,
    },
    /// Beta vs baseline over a window: error rate, p99 latency, CPU, memory.
    Report {
        /// The deployment to report on.
        deployment: String,
        /// How far back.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        window: Duration,
    },
    /// Run a whole local fleet (coordinator and three agents) and a rollback.
    Demo(demo::DemoArgs),
}

/// Returns true when the arguments ask for `-o json` (for errors found
/// before they parse).
pub fn wants_json(args: impl IntoIterator<Item = String>) -> bool {
    let mut previous_was_flag = false;
    for arg in args {
        if previous_was_flag && arg == "json" {
            return true;
        }
        if matches!(arg.as_str(), "-ojson" | "-o=json" | "--output=json") {
            return true;
        }
        previous_was_flag = matches!(arg.as_str(), "-o" | "--output");
    }
    false
}

/// Runs the parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    let format = cli.output;
    match dispatch(cli).await {
        Ok(code) => code,
        Err(err) => {
            if format == Format::Json {
                println!("{}", json!({ "error": format!("{err:#}") }));
            }
            eprintln!("rollguardctl: {err:#}");
            1
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    if let Command::Demo(args) = cli.command {
        return demo::run(args).await;
    }
    let mut client = connect(&cli.coordinator).await?;
    let format = cli.output;
    match cli.command {
        Command::Status { deployment, watch } => {
            status(&mut client, format, deployment.unwrap_or_default(), watch).await
        }
        Command::Agents { deployment } => {
            agents(&mut client, format, deployment.unwrap_or_default()).await
        }
        Command::Deployments => deployments(&mut client, format).await,
        Command::Rollback {
            deployment,
            reason,
            wait,
            timeout,
        } => rollback(&mut client, format, deployment, reason, wait, timeout).await,
        Command::Results {
            command_id,
            wait,
            timeout,
        } => results(&mut client, format, &command_id, wait, timeout).await,
        Command::History { deployment, limit } => {
            history(&mut client, format, deployment.unwrap_or_default(), limit).await
        }
        Command::Why { deployment, rounds } => {
            judge::why(&mut client, format, deployment, rounds).await
        }
        Command::Rearm { deployment, reason } => {
            judge::rearm(&mut client, format, deployment, reason).await
        }
        Command::Report { deployment, window } => {
            judge::report(&mut client, format, deployment, window).await
        }
        Command::Demo(_) => unreachable!("handled above"),
    }
}

/// Connects to the coordinator with the CLI's connect timeout.
pub async fn connect(url: &str) -> anyhow::Result<ControlServiceClient<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("bad coordinator URL `{url}`"))?
        .connect_timeout(CONNECT_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to the coordinator at {url}"))?;
    Ok(ControlServiceClient::new(channel))
}

pub(crate) fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

pub(crate) fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow!("{:?}: {}", status.code(), status.message())
}

// === status ===

async fn status(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
    watch: bool,
) -> anyhow::Result<u8> {
    if !watch {
        let response = client
            .get_fleet_status(request(pb::GetFleetStatusRequest { deployment }))
            .await
            .map_err(status_error)?
            .into_inner();
        print_status(&response, format);
        return Ok(0);
    }
    let mut stream = client
        .watch_fleet_status(pb::WatchFleetStatusRequest { deployment })
        .await
        .map_err(status_error)?
        .into_inner();
    while let Some(response) = stream.message().await.map_err(status_error)? {
        if format == Format::Table {
            // Clear the screen and home the cursor, then redraw.
            print!("\x1b[2J\x1b[H");
        }
        print_status(&response, format);
    }
    Ok(0)
}

pub(crate) fn print_status(response: &pb::GetFleetStatusResponse, format: Format) {
    match format {
        Format::Json => println!("{}", status_json(response)),
        Format::Table => {
            let mut rows = vec![vec![
                "DEPLOYMENT".to_owned(),
                "COHORT".to_owned(),
                "CONNECTED".to_owned(),
                "STALE".to_owned(),
                "GONE".to_owned(),
                "CPU% MEAN".to_owned(),
                "CPU% MAX".to_owned(),
                "MEM% MEAN".to_owned(),
                "MEM% MAX".to_owned(),
                "LOAD1".to_owned(),
                "DISK R/W".to_owned(),
                "NET RX/TX".to_owned(),
                "VERSIONS".to_owned(),
            ]];
            let width = rows[0].len();
            for deployment in &response.deployments {
                // An unconfigured name is most often a typo in an agent's config.
                let name = if !deployment.unconfigured {
                    deployment.deployment.clone()
                } else {
                    format!("{} (no policy)", deployment.deployment)
                };
                if deployment.cohorts.is_empty() {
                    let mut row = vec![name.clone(), "-".to_owned()];
                    row.extend(["0", "0", "0"].map(str::to_owned));
                    row.resize(width, "-".to_owned());
                    rows.push(row);
                }
                for cohort in &deployment.cohorts {
                    rows.push(vec![
                        name.clone(),
                        cohort_name(cohort.cohort).to_owned(),
                        cohort.hosts_connected.to_string(),
                        cohort.hosts_stale.to_string(),
                        cohort.hosts_disconnected.to_string(),
                        format!("{:.1}", cohort.cpu_percent_mean),
                        format!("{:.1}", cohort.cpu_percent_max),
                        format!("{:.1}", cohort.memory_percent_mean),
                        format!("{:.1}", cohort.memory_percent_max),
                        format!("{:.2}", cohort.load1_mean),
                        format!(
                            "{} / {}",
                            fmt_rate(cohort.disk_read_bytes_per_sec_mean),
                            fmt_rate(cohort.disk_write_bytes_per_sec_mean)
                        ),
                        format!(
                            "{} / {}",
                            fmt_rate(cohort.net_rx_bytes_per_sec_mean),
                            fmt_rate(cohort.net_tx_bytes_per_sec_mean)
                        ),
                        cohort.versions.join(" "),
                    ]);
                }
            }
            if response.deployments.is_empty() {
                println!("no hosts seen yet");
            } else {
                print!("{}", table(&rows));
            }
            for deployment in &response.deployments {
                if let Some(j) = &deployment.judgement {
                    println!();
                    judge::print_judgement_header(&deployment.deployment, j);
                    judge::print_rules(j);
                }
            }
        }
    }
}

fn status_json(response: &pb::GetFleetStatusResponse) -> Value {
    let deployments: Vec<Value> = response
        .deployments
        .iter()
        .map(|d| {
            let cohorts: Vec<Value> = d
                .cohorts
                .iter()
                .map(|c| {
                    json!({
                        "cohort": cohort_name(c.cohort),
                        "hosts_connected": c.hosts_connected,
                        "hosts_stale": c.hosts_stale,
                        "hosts_disconnected": c.hosts_disconnected,
                        "cpu_percent_mean": c.cpu_percent_mean,
                        "cpu_percent_max": c.cpu_percent_max,
                        "memory_percent_mean": c.memory_percent_mean,
                        "memory_percent_max": c.memory_percent_max,
                        "load1_mean": c.load1_mean,
                        "load1_max": c.load1_max,
                        "swap_used_bytes_mean": c.swap_used_bytes_mean,
                        "disk_read_bytes_per_sec_mean": c.disk_read_bytes_per_sec_mean,
                        "disk_write_bytes_per_sec_mean": c.disk_write_bytes_per_sec_mean,
                        "net_rx_bytes_per_sec_mean": c.net_rx_bytes_per_sec_mean,
                        "net_tx_bytes_per_sec_mean": c.net_tx_bytes_per_sec_mean,
                        "pressure_mean": c.pressure_mean.map(|p| json!({
                            "cpu_some_avg10": p.cpu_some_avg10,
                            "memory_some_avg10": p.memory_some_avg10,
                            "io_some_avg10": p.io_some_avg10,
                        })),
                        "versions": c.versions,
                    })
                })
                .collect();
            json!({
                "deployment": d.deployment,
                "rollback_action": d.rollback_action,
                "configured": !d.unconfigured,
                "cohorts": cohorts,
                "judgement": d.judgement.as_ref().map(judge::judgement_json),
            })
        })
        .collect();
    json!({
        "generated_at": response.generated_at.as_ref().map(fmt_time),
        "deployments": deployments,
    })
}

fn cohort_name(value: i32) -> &'static str {
    match pb::Cohort::try_from(value) {
        Ok(pb::Cohort::Beta) => "beta",
        Ok(pb::Cohort::Baseline) => "baseline",
        _ => "unknown",
    }
}

// === agents ===

async fn agents(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
) -> anyhow::Result<u8> {
    let response = client
        .list_agents(request(pb::ListAgentsRequest { deployment }))
        .await
        .map_err(status_error)?
        .into_inner();
    print_agents(&response, format);
    Ok(0)
}

async fn deployments(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
) -> anyhow::Result<u8> {
    let response = client
        .list_deployments(request(pb::ListDeploymentsRequest {}))
        .await
        .map_err(status_error)?
        .into_inner();
    match format {
        Format::Json => {
            let deployments: Vec<Value> =
                response.deployments.iter().map(deployment_json).collect();
            println!("{}", Value::Array(deployments));
        }
        Format::Table => {
            let mut rows = vec![[
                "DEPLOYMENT",
                "POLICY",
                "ARMED",
                "FAILING",
                "HOSTS",
                "ROUND",
                "RULES",
            ]
            .map(str::to_owned)
            .to_vec()];
            for d in &response.deployments {
                let rules: Vec<String> = d
                    .rules
                    .iter()
                    .map(|r| format!("{} {}", r.metric, r.limit_text))
                    .collect();
                rows.push(vec![
                    d.deployment.clone(),
                    match (d.configured, d.dry_run) {
                        (false, _) => "none".to_owned(),
                        (true, true) => "dry run".to_owned(),
                        (true, false) => "yes".to_owned(),
                    },
                    if d.armed { "yes" } else { "no" }.to_owned(),
                    format!("{}/{}", d.consecutive, d.consecutive_failures),
                    format!("{}/{}", d.hosts_connected, d.hosts_seen),
                    d.check_interval
                        .as_ref()
                        .and_then(|i| rollguard_proto::duration_from_pb("check_interval", i).ok())
                        .map(|i| humantime::format_duration(i).to_string())
                        .unwrap_or_default(),
                    rules.join("; "),
                ]);
            }
            if response.deployments.is_empty() {
                println!("no deployment configured or seen");
            } else {
                print!("{}", table(&rows));
            }
        }
    }
    Ok(0)
}

fn deployment_json(d: &pb::DeploymentInfo) -> Value {
    let rules: Vec<Value> = d
        .rules
        .iter()
        .map(|r| {
            json!({
                "metric": r.metric,
                "max": r.max,
                "min": r.min,
                "max_ratio_to_baseline": r.max_ratio_to_baseline,
                "min_baseline": r.min_baseline,
                "limit_text": r.limit_text,
            })
        })
        .collect();
    json!({
        "deployment": d.deployment,
        "configured": d.configured,
        "rollback_action": d.rollback_action,
        "check_interval_secs": d.check_interval.as_ref().map(|i| i.seconds as f64 + f64::from(i.nanos) / 1e9),
        "consecutive_failures": d.consecutive_failures,
        "min_hosts": d.min_hosts,
        "min_requests": d.min_requests,
        "dry_run": d.dry_run,
        "max_beta_share": d.max_beta_share,
        "beta_hosts": d.beta_hosts,
        "on_inconclusive": d.on_inconclusive,
        "on_error": d.on_error,
        "rules": rules,
        "armed": d.armed,
        "consecutive": d.consecutive,
        "hosts_seen": d.hosts_seen,
        "hosts_connected": d.hosts_connected,
    })
}

pub(crate) fn print_agents(response: &pb::ListAgentsResponse, format: Format) {
    match format {
        Format::Json => {
            let agents: Vec<Value> = response.agents.iter().map(agent_json).collect();
            println!("{}", Value::Array(agents));
        }
        Format::Table => {
            let mut rows = vec![[
                "HOST",
                "DEPLOYMENT",
                "COHORT",
                "VERSION",
                "STATE",
                "LAST SEEN",
                "CPU%",
                "MEM",
                "LOAD1",
                "DISK R/W",
                "NET RX/TX",
            ]
            .map(str::to_owned)
            .to_vec()];
            for agent in &response.agents {
                let state = match (agent.connected, agent.stale) {
                    (true, false) => "connected",
                    (true, true) => "stale",
                    (false, _) => "disconnected",
                };
                let figures = match &agent.latest {
                    Some(s) => vec![
                        format!("{:.1}", s.cpu_percent),
                        format!(
                            "{} / {}",
                            fmt_bytes(s.memory_used_bytes as f64),
                            fmt_bytes(s.memory_total_bytes as f64)
                        ),
                        format!("{:.2}", s.load1),
                        format!(
                            "{} / {}",
                            fmt_rate(s.disk_read_bytes_per_sec),
                            fmt_rate(s.disk_write_bytes_per_sec)
                        ),
                        format!(
                            "{} / {}",
                            fmt_rate(s.net_rx_bytes_per_sec),
                            fmt_rate(s.net_tx_bytes_per_sec)
                        ),
                    ],
                    None => vec!["-".to_owned(); 5],
                };
                let mut row = vec![
                    agent.host_id.clone(),
                    agent.deployment.clone(),
                    cohort_name(agent.cohort).to_owned(),
                    if agent.app_version.is_empty() {
                        "-".to_owned()
                    } else {
                        agent.app_version.clone()
                    },
                    state.to_owned(),
                    agent.last_seen.as_ref().map(fmt_time).unwrap_or_default(),
                ];
                row.extend(figures);
                rows.push(row);
            }
            if response.agents.is_empty() {
                println!("no hosts seen yet");
            } else {
                print!("{}", table(&rows));
            }
        }
    }
}

fn agent_json(agent: &pb::AgentInfo) -> Value {
    let s = agent.latest.as_ref();
    // The checked domain form, for the lists and the app's percentiles.
    let latest = s.and_then(|s| rollguard_common::HostSample::try_from(s).ok());
    json!({
        "host_id": agent.host_id,
        "deployment": agent.deployment,
        "cohort": cohort_name(agent.cohort),
        "version": agent.app_version,
        "agent_version": agent.agent_version,
        "connected": agent.connected,
        "stale": agent.stale,
        "last_seen": agent.last_seen.as_ref().map(fmt_time),
        "actions": agent.action_names,
        "labels": agent.labels,
        "cpu_percent": s.map(|s| s.cpu_percent),
        "cpu_core_percent": s.map(|s| s.cpu_core_percent.clone()),
        "memory_used_bytes": s.map(|s| s.memory_used_bytes),
        "memory_total_bytes": s.map(|s| s.memory_total_bytes),
        "memory_available_bytes": s.map(|s| s.memory_available_bytes),
        "swap_used_bytes": s.map(|s| s.swap_used_bytes),
        "load1": s.map(|s| s.load1),
        "load5": s.map(|s| s.load5),
        "load15": s.map(|s| s.load15),
        "disk_read_bytes_per_sec": s.map(|s| s.disk_read_bytes_per_sec),
        "disk_write_bytes_per_sec": s.map(|s| s.disk_write_bytes_per_sec),
        "disk_read_ops_per_sec": s.map(|s| s.disk_read_ops_per_sec),
        "disk_write_ops_per_sec": s.map(|s| s.disk_write_ops_per_sec),
        "net_rx_bytes_per_sec": s.map(|s| s.net_rx_bytes_per_sec),
        "net_tx_bytes_per_sec": s.map(|s| s.net_tx_bytes_per_sec),
        "pressure": s.and_then(|s| s.pressure).map(|p| json!({
            "cpu_some_avg10": p.cpu_some_avg10,
            "memory_some_avg10": p.memory_some_avg10,
            "io_some_avg10": p.io_some_avg10,
        })),
        "filesystems": s.map(|s| s.filesystems.iter().map(|f| json!({
            "mount_point": f.mount_point, "device": f.device, "fs_type": f.fs_type,
            "used_bytes": f.used_bytes, "total_bytes": f.total_bytes,
        })).collect::<Vec<_>>()),
        "disks": latest.as_ref().map(|s| &s.disks),
        "interfaces": latest.as_ref().map(|s| &s.interfaces),
        "app": latest.as_ref().and_then(|s| s.app.as_ref()).map(app_json),
    })
}

/// One host's application health over its latest interval, with the
/// percentiles of that interval's histogram deltas.
fn app_json(app: &rollguard_common::sample::AppHealth) -> Value {
    use rollguard_common::policy::quantile_ms;
    let latency = |q: f64| quantile_ms(q, &app.latency_buckets);
    json!({
        "requests": app.requests,
        "errors": app.errors,
        "error_rate": (app.requests > 0.0).then(|| app.errors / app.requests),
        "latency_p50_ms": latency(0.5),
        "latency_p95_ms": latency(0.95),
        "latency_p99_ms": latency(0.99),
        "latency_p999_ms": latency(0.999),
        "gauges": app.gauges.iter().cloned().collect::<std::collections::BTreeMap<String, f64>>(),
        "scrapes": app.scrapes,
        "scrape_errors": app.scrape_errors,
        "scrape_error": app.scrape_error,
        "probes": app.probes,
        "probe_errors": app.probe_errors,
        "probe_error": app.probe_error,
        "probe_latency_p99_ms": quantile_ms(0.99, &app.probe_latency_buckets),
    })
}

// === rollback ===

async fn rollback(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
    reason: String,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<u8> {
    // The trace of a manual rollback starts here and travels in the metadata.
    let span = tracing::info_span!("rollguardctl.rollback", deployment = %deployment);
    let mut call = request(pb::RollbackRequest {
        deployment: deployment.clone(),
        reason,
        actor: actor(),
    });
    rollguard_proto::otel::to_metadata(&span, call.metadata_mut());
    let response = client
        .rollback(call)
        .instrument(span)
        .await
        .map_err(status_error)?
        .into_inner();
    if response.target_host_ids.is_empty() {
        tracing::warn!(%deployment, "no beta host of this deployment is known yet; beta hosts that connect before not_after will get the rollback");
    }
    if !wait {
        match format {
            Format::Json => println!(
                "{}",
                json!({
                    "command_id": response.command_id,
                    "action": response.action,
                    "targets": response.target_host_ids,
                })
            ),
            Format::Table => println!(
                "rollback {} of {deployment}: action `{}` sent to {} beta host(s): {}",
                response.command_id,
                response.action,
                response.target_host_ids.len(),
                response.target_host_ids.join(", ")
            ),
        }
        return Ok(0);
    }
    let command = wait_for_results(client, &response.command_id, timeout).await?;
    print_results(&command, format);
    Ok(if all_succeeded(&command) { 0 } else { 1 })
}

async fn results(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    command_id: &str,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<u8> {
    let timeout = if wait { timeout } else { Duration::ZERO };
    let command = wait_for_results(client, command_id, timeout).await?;
    print_results(&command, format);
    Ok(if all_succeeded(&command) { 0 } else { 1 })
}

/// True when the command reached at least one host and every host succeeded.
fn all_succeeded(command: &pb::GetCommandResponse) -> bool {
    !command.results.is_empty()
        && command
            .results
            .iter()
            .all(|r| r.checked_status().ok() == Some(rollguard_common::CommandStatus::Succeeded))
}

/// Polls the command until every target has a final result or `timeout` passes.
pub async fn wait_for_results(
    client: &mut ControlServiceClient<Channel>,
    command_id: &str,
    timeout: Duration,
) -> anyhow::Result<pb::GetCommandResponse> {
    let deadline = Instant::now() + timeout;
    loop {
        let command = client
            .get_command(request(pb::GetCommandRequest {
                command_id: command_id.to_owned(),
            }))
            .await
            .map_err(status_error)?
            .into_inner();
        let done = command
            .results
            .iter()
            .all(|r| r.checked_status().map(|s| s.is_final()).unwrap_or(false));
        if done || Instant::now() >= deadline {
            return Ok(command);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn print_results(command: &pb::GetCommandResponse, format: Format) {
    let status_name =
        |r: &pb::HostResult| r.checked_status().map(|s| s.as_str()).unwrap_or("unknown");
    match format {
        Format::Json => {
            let results: Vec<Value> = command
                .results
                .iter()
                .map(|r| {
                    json!({
                        "host_id": r.host_id,
                        "status": status_name(r),
                        "exit_code": r.exit_code,
                        "reason": r.reason,
                        "output_tail": r.output_tail,
                        "started_at": r.started_at.as_ref().map(fmt_time),
                        "duration_ms": duration_ms(r),
                    })
                })
                .collect();
            println!(
                "{}",
                json!({
                    "command_id": command.command_id,
                    "deployment": command.deployment,
                    "action": command.action,
                    "results": results,
                })
            );
        }
        Format::Table => {
            println!(
                "rollback {} of {}: action `{}`",
                command.command_id, command.deployment, command.action
            );
            let mut rows = vec![
                ["HOST", "STATUS", "EXIT", "TOOK", "REASON", "OUTPUT (tail)"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            for r in &command.results {
                rows.push(vec![
                    r.host_id.clone(),
                    status_name(r).to_owned(),
                    r.exit_code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".to_owned()),
                    duration_ms(r).map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms")),
                    r.reason.clone(),
                    r.output_tail.lines().last().unwrap_or("").to_owned(),
                ]);
            }
            print!("{}", table(&rows));
        }
    }
}

/// How long the host's action ran, once it finished.
fn duration_ms(result: &pb::HostResult) -> Option<u64> {
    let finished = result
        .checked_status()
        .is_ok_and(|s| s.is_final() && s != rollguard_common::CommandStatus::Rejected);
    let took = rollguard_proto::duration_from_pb("duration", result.duration.as_ref()?).ok()?;
    finished.then(|| u64::try_from(took.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    format!("{user}@{host} (rollguardctl)")
}

// === history ===

async fn history(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
    limit: u32,
) -> anyhow::Result<u8> {
    let response = client
        .history(request(pb::HistoryRequest { deployment, limit }))
        .await
        .map_err(status_error)?
        .into_inner();
    match format {
        Format::Json => {
            let entries: Vec<Value> = response
                .entries
                .iter()
                .map(|e| {
                    json!({
                        "time": e.time.as_ref().map(fmt_time),
                        "deployment": e.deployment,
                        "action": e.action,
                        "reason": e.reason,
                        "command_id": e.command_id,
                        "actor": e.actor,
                        "detail": e.detail,
                    })
                })
                .collect();
            println!("{}", Value::Array(entries));
        }
        Format::Table => {
            if response.entries.is_empty() {
                println!("no history yet");
                return Ok(0);
            }
            let mut rows = vec![
                ["TIME", "DEPLOYMENT", "ACTION", "ACTOR", "COMMAND", "REASON"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            for e in &response.entries {
                rows.push(vec![
                    e.time.as_ref().map(fmt_time).unwrap_or_default(),
                    e.deployment.clone(),
                    e.action.clone(),
                    e.actor.clone(),
                    e.command_id.clone(),
                    e.reason.clone(),
                ]);
            }
            print!("{}", table(&rows));
        }
    }
    Ok(0)
}
