//! `rollguardctl demo`: a whole fleet on loopback, as real child processes.
//!
//! Starts a coordinator on a temporary data dir with a policy, and per host a
//! small app (`rollguard-demo-app`, whose beta build starts failing after a
//! while) and an agent that scrapes and probes it, with a rollback action
//! that installs the stable version and leaves evidence. Shows live status,
//! the automatic rollback on the beta hosts only, each host's result, `why`
//! and the beta-vs-baseline report, then stops everything cleanly (also on
//! Ctrl-C).

mod fleet;
mod rollout;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use tonic::transport::Channel;

use self::fleet::{poll, DemoPki, Fleet, Host, COORDINATOR_CONFIG, OPERATOR, STABLE_VERSION};
use super::agents::print_agents;
use super::args::{DemoArgs, DemoScenario, Format};
use super::connect::connect;
use super::judgement::{print_rules, verdict_name};
use super::output::fmt_time;
use super::results::{print_results, wait_for_results};

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
    let mut fleet = Fleet::default();
    let bins = [
        coordinator_bin.as_path(),
        agent_bin.as_path(),
        app_bin.as_path(),
    ];
    let scenario = async {
        match args.scenario {
            Some(DemoScenario::Rollout { hosts }) => {
                rollout::script(hosts, &dir, bins, &mut fleet).await
            }
            None => script(&args, &dir, bins, &mut fleet).await,
        }
    };
    let outcome = tokio::select! {
        result = scenario => result,
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

/// The demo's steps in order; returns the exit code.
async fn script(
    args: &DemoArgs,
    dir: &Path,
    [coordinator_bin, agent_bin, app_bin]: [&Path; 3],
    fleet: &mut Fleet,
) -> anyhow::Result<u8> {
    println!("== rollguard demo: working in {}", dir.display());
    let hosts = fleet::hosts(args);
    let pki = DemoPki::make(dir, &hosts)?;
    println!(
        "== mutual TLS: a CA and certificates for the coordinator, {} agents and operator `{OPERATOR}` (admin) in {}",
        hosts.len(),
        pki.dir.display()
    );
    let url = fleet
        .start_coordinator(dir, coordinator_bin, &pki, COORDINATOR_CONFIG)
        .await?;
    println!("== coordinator listening on {url}, policy for deployment `demo`:");
    for line in COORDINATOR_CONFIG.lines().filter(|l| !l.trim().is_empty()) {
        println!("   {line}");
    }

    for host in &hosts {
        let app_url = fleet
            .start_host(
                &args.fail_after,
                dir,
                [agent_bin, app_bin],
                &url,
                host,
                &pki,
            )
            .await?;
        let (host_id, cohort, version) = host;
        println!(
            "== {host_id} ({cohort}): app {version} at {app_url}, agent scraping and probing it"
        );
    }

    let mut client = connect(&url, Some(pki.client_tls()?)).await?;
    let ctl = pki.ctl_line(&url);
    println!("== the demo calls the coordinator as operator `{OPERATOR}`, as this line does:\n   {ctl} status");
    show_agents_reporting(&client, hosts.len()).await?;
    watch_until_disarmed(&mut client, args, dir).await?;
    let command = show_rollback_results(&mut client).await?;
    show_why(&mut client).await?;
    show_evidence(dir, &hosts);
    show_agents_on_stable(&client).await?;
    show_history(&mut client, &ctl).await?;

    if args.keep_running {
        println!(
            "\n== the fleet keeps running at {url}; try `{ctl} status --watch`. Ctrl-C stops it."
        );
        std::future::pending::<()>().await;
    }
    let all_succeeded = command
        .results
        .iter()
        .all(|r| r.checked_status().ok() == Some(rollguard_common::CommandStatus::Succeeded));
    Ok(if all_succeeded { 0 } else { 1 })
}

/// Waits until each of the `n_hosts` agents reports figures, and lists them.
async fn show_agents_reporting(
    client: &ControlServiceClient<Channel>,
    n_hosts: usize,
) -> anyhow::Result<()> {
    let agents = wait_for_agents(
        client,
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
    Ok(())
}

/// Prints the demo deployment's verdicts from the watch stream until the
/// policy disarms it by deciding a rollback; fails after 120s.
async fn watch_until_disarmed(
    client: &mut ControlServiceClient<Channel>,
    args: &DemoArgs,
    dir: &Path,
) -> anyhow::Result<()> {
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
                    verdict_name(j.verdict).to_uppercase(),
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
    Ok(())
}

/// Finds the automatic rollback in the history and prints each beta host's
/// result once final (or after 60s); returns the command.
async fn show_rollback_results(
    client: &mut ControlServiceClient<Channel>,
) -> anyhow::Result<pb::GetCommandResponse> {
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
    let command = wait_for_results(client, &command_id, Duration::from_secs(60)).await?;
    print_results(&command, Format::Table);
    Ok(command)
}

/// Prints the last rounds' verdicts and rules that led to the rollback.
async fn show_why(client: &mut ControlServiceClient<Channel>) -> anyhow::Result<()> {
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
            j.at.as_ref().map(fmt_time).unwrap_or_default(),
            verdict_name(j.verdict).to_uppercase(),
            j.consecutive,
            j.consecutive_failures,
            if j.decision == "roll_back" {
                format!("  => ROLLBACK {}", j.command_id)
            } else {
                String::new()
            }
        );
        print_rules(j);
    }
    Ok(())
}

/// Prints what the rollback action wrote on each host.
fn show_evidence(dir: &Path, hosts: &[Host]) {
    println!("\n== evidence left by the rollback action on each host");
    for (host_id, _, _) in hosts {
        let log = std::fs::read_to_string(dir.join(host_id).join("rollback.log"))
            .unwrap_or_else(|_| "(no rollback ran here)\n".to_owned());
        print!("{host_id}: {log}");
    }
}

/// Waits until every host reports the stable version, and lists them.
async fn show_agents_on_stable(client: &ControlServiceClient<Channel>) -> anyhow::Result<()> {
    // The agents re-read their version file each interval: wait for the switch to show.
    let agents = wait_for_agents(
        client,
        "the beta hosts to report the stable version",
        Duration::from_secs(10),
        |agents| agents.iter().all(|a| a.app_version == STABLE_VERSION),
    )
    .await?;
    println!("\n== agents after the rollback (every host now on {STABLE_VERSION})");
    print_agents(&agents, Format::Table);
    Ok(())
}

/// Prints the audit history and how to re-arm or roll back by hand.
async fn show_history(client: &mut ControlServiceClient<Channel>, ctl: &str) -> anyhow::Result<()> {
    println!("\n== audit history");
    let history = client
        .history(pb::HistoryRequest::default())
        .await?
        .into_inner();
    for entry in &history.entries {
        println!(
            "{}  {}  {}  by {}  ({})",
            entry.time.as_ref().map(fmt_time).unwrap_or_default(),
            entry.deployment,
            entry.action,
            entry.actor,
            entry.reason
        );
    }
    println!(
        "\nre-arm with `{ctl} rearm demo`; roll back by hand with `{ctl} rollback demo --reason ...`"
    );
    Ok(())
}

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
