//! `rollguardctl demo`: a whole fleet on loopback, as real child processes.
//!
//! Starts a coordinator on a temporary data dir with a policy, and per host a
//! small app (`rollguard-demo-app`, whose beta build starts failing after a
//! while) and an agent that scrapes and probes it, with a rollback action
//! that installs the stable version and leaves evidence. Shows live status,
//! the automatic rollback on the beta hosts only, each host's result, `why`
//! and the beta-vs-baseline report, then stops everything cleanly (also on
//! Ctrl-C).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

use super::agents::print_agents;
use super::args::{DemoArgs, Format};
use super::connect::connect;
use super::results::{print_results, wait_for_results};

/// Version the beta hosts start on, and the one a rollback switches to.
const BETA_VERSION: &str = "2.0.0-beta.3";
const STABLE_VERSION: &str = "1.9.4";

struct Fleet {
    children: Vec<(String, Child)>,
}

impl Fleet {
    async fn stop(&mut self) {
        // SIGTERM everyone, agents first, then wait; SIGKILL what lingers.
        for (_, child) in self.children.iter().rev() {
            if let Some(pid) = child
                .id()
                .and_then(|p| rustix::process::Pid::from_raw(p as i32))
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        for (name, child) in self.children.iter_mut() {
            match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                Ok(Ok(status)) => tracing::debug!(%name, %status, "stopped"),
                _ => {
                    let _ = child.kill().await;
                }
            }
        }
        self.children.clear();
    }
}

/// Runs the demo; returns the exit code.
pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<u8> {
    let bin_dir = std::env::current_exe()
        .context("locating rollguardctl")?
        .parent()
        .context("rollguardctl has no directory")?
        .to_path_buf();
    let coordinator_bin = bin_dir.join("rollguard-coordinator");
    let agent_bin = bin_dir.join("rollguard-agent");
    let app_bin = bin_dir.join("rollguard-demo-app");
    for bin in [&coordinator_bin, &agent_bin, &app_bin] {
        if !bin.exists() {
            bail!(
                "{} not found beside rollguardctl; build the workspace first: cargo build --release --workspace",
                bin.display()
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("rollguard-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut fleet = Fleet {
        children: Vec::new(),
    };
    let outcome = tokio::select! {
        result = script(&args, &dir, [&coordinator_bin, &agent_bin, &app_bin], &mut fleet) => result,
        _ = tokio::signal::ctrl_c() => {
            println!("\ninterrupted; stopping the fleet");
            Ok(130)
        }
    };
    fleet.stop().await;
    if args.keep_data {
        println!("logs, store and evidence kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("demo fleet stopped");
    outcome
}

async fn script(
    args: &DemoArgs,
    dir: &Path,
    [coordinator_bin, agent_bin, app_bin]: [&Path; 3],
    fleet: &mut Fleet,
) -> anyhow::Result<u8> {
    println!("== rollguard demo: working in {}", dir.display());
    let data_dir = dir.join("coordinator-data");
    let addr_file = data_dir.join(crate::ADDR_FILE);
    std::fs::create_dir_all(&data_dir)?;
    let config = dir.join("coordinator.toml");
    std::fs::write(&config, COORDINATOR_CONFIG)?;
    let coordinator = Command::new(coordinator_bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data_dir)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(dir, "coordinator")?)
        .kill_on_drop(true)
        .spawn()
        .context("starting the coordinator")?;
    fleet.children.push(("coordinator".to_owned(), coordinator));
    let addr = read_addr(&addr_file, "the coordinator to listen").await?;
    let url = format!("http://{}", addr.trim());
    println!("== coordinator listening on {url}, policy for deployment `demo`:");
    for line in COORDINATOR_CONFIG.lines().filter(|l| !l.trim().is_empty()) {
        println!("   {line}");
    }

    let mut hosts = Vec::new();
    for idx in 1..=args.beta {
        hosts.push((format!("beta-{idx}"), "beta", BETA_VERSION));
    }
    for idx in 1..=args.baseline {
        hosts.push((format!("baseline-{idx}"), "baseline", STABLE_VERSION));
    }
    for (host_id, cohort, version) in &hosts {
        let state_dir = dir.join(host_id);
        std::fs::create_dir_all(&state_dir)?;
        let version_file = state_dir.join("version");
        std::fs::write(&version_file, format!("{version}\n"))?;
        let app_addr_file = state_dir.join("app.addr");
        let app = Command::new(app_bin)
            .args(["--listen", "127.0.0.1:0", "--beta-version", BETA_VERSION])
            .args(["--fail-after", &args.fail_after])
            .arg("--version-file")
            .arg(&version_file)
            .arg("--addr-file")
            .arg(&app_addr_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(dir, &format!("{host_id}-app"))?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the app of {host_id}"))?;
        fleet.children.push((format!("{host_id}-app"), app));
        let app_url = format!(
            "http://{}",
            read_addr(&app_addr_file, "the app to listen").await?.trim()
        );
        let config = state_dir.join("agent.toml");
        std::fs::write(&config, agent_config(host_id, cohort, &state_dir, &app_url))?;
        let child = Command::new(agent_bin)
            .arg("--config")
            .arg(&config)
            .arg("--coordinator")
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(dir, host_id)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting agent {host_id}"))?;
        fleet.children.push((host_id.clone(), child));
        println!(
            "== {host_id} ({cohort}): app {version} at {app_url}, agent scraping and probing it"
        );
    }

    let mut client = connect(&url).await?;
    let n_hosts = hosts.len();
    let agents = wait_for_agents(
        &client,
        "every agent to report figures",
        Duration::from_secs(30),
        |agents| {
            agents
                .iter()
                .filter(|a| a.connected && a.latest.is_some())
                .count()
                == n_hosts
        },
    )
    .await?;
    println!("\n== agents");
    print_agents(&agents, Format::Table);

    println!(
        "\n== live status from the watch stream; the beta build starts failing after {}",
        args.fail_after
    );
    let mut watch = client
        .watch_fleet_status(pb::WatchFleetStatusRequest::default())
        .await?
        .into_inner();
    let started = Instant::now();
    let mut last_line = String::new();
    let mut decided = false;
    while let Some(status) = watch.message().await? {
        if let Some(d) = status.deployments.iter().find(|d| d.deployment == "demo") {
            if let Some(j) = &d.judgement {
                let line = format!(
                    "{} ({}/{} failing rounds): {}",
                    super::judge::verdict_name(j.verdict).to_uppercase(),
                    j.consecutive,
                    j.consecutive_failures,
                    j.reason
                );
                if line != last_line {
                    println!("[{:>5.1}s] {line}", started.elapsed().as_secs_f64());
                    last_line = line;
                }
                if !j.armed {
                    decided = true;
                    break;
                }
            }
        }
        if started.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    drop(watch);
    if !decided {
        bail!(
            "no automatic rollback within 120s; see the logs in {}",
            dir.display()
        );
    }

    let history = client
        .history(pb::HistoryRequest::default())
        .await?
        .into_inner();
    let command_id = history
        .entries
        .iter()
        .rev()
        .find(|e| e.action == "rollback")
        .map(|e| e.command_id.clone())
        .context("the rollback is not in the history")?;
    println!("\n== automatic rollback {command_id}: results per beta host");
    let command = wait_for_results(&mut client, &command_id, Duration::from_secs(60)).await?;
    print_results(&command, Format::Table);

    println!("\n== why: the rounds that led to it");
    let why = client
        .why(pb::WhyRequest {
            deployment: "demo".to_owned(),
            rounds: 5,
        })
        .await?
        .into_inner();
    for j in &why.rounds {
        println!(
            "{}  {}  {}/{}{}",
            j.at.as_ref()
                .map(super::output::fmt_time)
                .unwrap_or_default(),
            super::judge::verdict_name(j.verdict).to_uppercase(),
            j.consecutive,
            j.consecutive_failures,
            if j.decision == "roll_back" {
                format!("  => ROLLBACK {}", j.command_id)
            } else {
                String::new()
            }
        );
        super::judge::print_rules(j);
    }

    println!("\n== evidence left by the rollback action on each host");
    for (host_id, _, _) in &hosts {
        let log = std::fs::read_to_string(dir.join(host_id).join("rollback.log"))
            .unwrap_or_else(|_| "(no rollback ran here)\n".to_owned());
        print!("{host_id}: {log}");
    }

    // The agents re-read their version file each interval: wait for the switch to show.
    let agents = wait_for_agents(
        &client,
        "the beta hosts to report the stable version",
        Duration::from_secs(10),
        |agents| agents.iter().all(|a| a.app_version == STABLE_VERSION),
    )
    .await?;
    println!("\n== agents after the rollback (every host now on {STABLE_VERSION})");
    print_agents(&agents, Format::Table);

    println!("\n== audit history");
    let history = client
        .history(pb::HistoryRequest::default())
        .await?
        .into_inner();
    for entry in &history.entries {
        println!(
            "{}  {}  {}  by {}  ({})",
            entry
                .time
                .as_ref()
                .map(super::output::fmt_time)
                .unwrap_or_default(),
            entry.deployment,
            entry.action,
            entry.actor,
            entry.reason
        );
    }
    println!(
        "\nre-arm with `rollguardctl --coordinator {url} rearm demo`; roll back by hand with `rollguardctl --coordinator {url} rollback demo --reason ...`"
    );

    if args.keep_running {
        println!("\n== the fleet keeps running at {url}; try `rollguardctl --coordinator {url} status --watch`. Ctrl-C stops it.");
        std::future::pending::<()>().await;
    }
    let all_succeeded = command
        .results
        .iter()
        .all(|r| r.checked_status().ok() == Some(rollguard_common::CommandStatus::Succeeded));
    Ok(if all_succeeded { 0 } else { 1 })
}

/// The demo's coordinator config: one deployment with an absolute and a relative rule.
const COORDINATOR_CONFIG: &str = r#"[deployments.demo]
check_interval = "2s"
consecutive_failures = 3
min_requests = 50
[[deployments.demo.rules]]
metric = "error_rate"
max = 0.05
[[deployments.demo.rules]]
metric = "latency_p99_ms"
max_ratio_to_baseline = 2.0
min_baseline = 10.0
"#;

/// Polls ListAgents until `pred` holds; returns that listing.
async fn wait_for_agents(
    client: &ControlServiceClient<Channel>,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&[pb::AgentInfo]) -> bool,
) -> anyhow::Result<pb::ListAgentsResponse> {
    let pred = &pred;
    poll(what, timeout, || {
        let mut client = client.clone();
        async move {
            let response = client
                .list_agents(pb::ListAgentsRequest::default())
                .await
                .ok()?
                .into_inner();
            pred(&response.agents).then_some(response)
        }
    })
    .await
}

async fn read_addr(path: &Path, what: &str) -> anyhow::Result<String> {
    poll(what, Duration::from_secs(30), || async {
        std::fs::read_to_string(path)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .await
}

fn agent_config(host_id: &str, cohort: &str, state_dir: &Path, app_url: &str) -> String {
    format!(
        r#"host_id = "{host_id}"
deployment = "demo"
cohort = "{cohort}"
version_file = "{version}"
state_dir = "{state}"

[app]
scrape_url = "{app_url}/metrics"
probe_url = "{app_url}/healthz"

[actions.rollback]
# argv, run without a shell by the agent; this one happens to call sh.
command = ["/bin/sh", "-c", "echo \"$(date -u +%FT%TZ) rolled back to {STABLE_VERSION}\" >> rollback.log && echo {STABLE_VERSION} > version && echo switched to {STABLE_VERSION}"]
timeout = "30s"
"#,
        version = state_dir.join("version").display(),
        state = state_dir.display(),
    )
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    let path: PathBuf = dir.join(format!("{name}.log"));
    std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))
}

async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
