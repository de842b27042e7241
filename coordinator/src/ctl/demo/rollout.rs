//! `rollguardctl demo rollout`: a rollout through its phases on a local
//! fleet of `auto` hosts, caught at 90 % and rolled back.
//!
//! The version is healthy at 5 % and 25 %; at 90 % the demo makes every
//! promoted app fail (a bug that shows only under load, through each app's
//! control file), the policy rolls every promoted host back, and the team's
//! channel (a webhook in this process, Slack format) hears each step.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::fleet::{DemoPki, Fleet, Host, BETA_VERSION, STABLE_VERSION};
use crate::ctl::args::Format;
use crate::ctl::results::{print_results, wait_for_results};
use crate::ctl::rollout::{print_checks, print_rollout};

/// The whole demo must end within this.
const DEADLINE: Duration = Duration::from_secs(150);

/// The coordinator's config; `{chat}` is the channel's webhook.
const CONFIG: &str = r#"[[notify.webhooks]]
url = "{chat}"
events = ["rollout.*", "rollback_decided"]
format = "slack"

[deployments.demo]
check_interval = "1s"
consecutive_failures = 3
min_requests = 20
[[deployments.demo.rules]]
metric = "error_rate"
max = 0.05
[[deployments.demo.rules]]
metric = "latency_p99_ms"
max_ratio_to_baseline = 2.0
min_baseline = 10.0

[deployments.demo.blast_radius]
impact_level = "non-critical"
affected_users = "internal-team-only"
fallback_strategy = "automatic-rollback"
data_at_risk = "none"
financial_impact = "minimal"
reputation_risk = "low"

[deployments.demo.rollout]
phases = [5, 25, 90, 100]
min_phase_duration = "8s"
min_passing_rounds = 4
promote_action = "promote"
status_every = "4s"
status_for = "8s"
retrospective_after = "2s"
"#;

/// Runs the rollout demo with `n` hosts; returns the exit code.
pub(super) async fn script(
    n: u32,
    dir: &Path,
    [coordinator_bin, agent_bin, app_bin]: [&Path; 3],
    fleet: &mut Fleet,
) -> anyhow::Result<u8> {
    let started = Instant::now();
    println!("== rollguard rollout demo: working in {}", dir.display());
    let hosts: Vec<Host> = (1..=n)
        .map(|i| (format!("host-{i:02}"), "auto", STABLE_VERSION))
        .collect();
    let pki = DemoPki::make(dir, &hosts)?;
    let (chat_url, mut chat) = chat_channel().await?;
    let config = CONFIG.replace("{chat}", &chat_url);
    let url = fleet
        .start_coordinator(dir, coordinator_bin, &pki, &config)
        .await?;
    println!("== coordinator at {url}; deployment `demo`, its blast radius and rollout:");
    for line in config
        .lines()
        .skip_while(|l| !l.starts_with("[deployments.demo.blast_radius]"))
        .filter(|l| !l.trim().is_empty())
    {
        println!("   {line}");
    }
    for host in &hosts {
        fleet
            .start_host("1h", dir, [agent_bin, app_bin], &url, host, &pki)
            .await?;
    }
    println!(
        "== {n} hosts on {STABLE_VERSION}, each agent with --cohort auto and a `promote` action taking {{version}}"
    );
    let mut client = crate::ctl::connect(&url, Some(pki.client_tls()?)).await?;
    let checks = preflight(&mut client).await?;
    println!("\n== preflight: rollguardctl rollout preflight demo --version {BETA_VERSION}");
    print_checks(&checks);
    let response = client
        .rollout_start(pb::RolloutStartRequest {
            deployment: "demo".to_owned(),
            version: BETA_VERSION.to_owned(),
            actor: "demo".to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    if !response.started {
        print_checks(&response.checks);
        bail!("the rollout was refused");
    }
    println!("\n== rollguardctl rollout start demo --version {BETA_VERSION}: started\n");
    let ended = follow(&mut client, dir, &mut chat, started).await?;
    let command = ended.rollback_command.clone();
    println!("\n== rollback {command}: results per promoted host");
    let results = wait_for_results(&mut client, &command, Duration::from_secs(60)).await?;
    print_results(&results, Format::Table);
    // The retrospective follows `retrospective_after` the end.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if drain(&mut chat, started).contains(&"retrospective".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("\n== rollguardctl rollout retro demo");
    let retro = client
        .rollout_retro(pb::RolloutRetroRequest {
            deployment: "demo".to_owned(),
        })
        .await?
        .into_inner();
    for phase in retro.rollout.iter().flat_map(|r| &r.phase_log) {
        println!(
            "phase {} ({} %): {} new host(s)",
            phase.phase,
            phase.percent,
            phase.hosts.len()
        );
        if let Some(comparison) = &phase.comparison {
            crate::ctl::rollout::print_comparison(comparison);
        }
    }
    println!("\n== done in {:.0}s", started.elapsed().as_secs_f64());
    let all_succeeded = results
        .results
        .iter()
        .all(|r| r.checked_status().ok() == Some(rollguard_common::CommandStatus::Succeeded));
    Ok(if ended.phase == 3 && all_succeeded {
        0
    } else {
        1
    })
}

/// Waits until the preflight passes (every agent reports its app's health).
async fn preflight(
    client: &mut ControlServiceClient<Channel>,
) -> anyhow::Result<Vec<pb::PreflightCheck>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = client
            .rollout_preflight(pb::RolloutPreflightRequest {
                deployment: "demo".to_owned(),
                version: BETA_VERSION.to_owned(),
                ..Default::default()
            })
            .await?
            .into_inner();
        if response.ok {
            return Ok(response.checks);
        }
        if Instant::now() >= deadline {
            print_checks(&response.checks);
            bail!("the preflight did not pass within 60s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Prints the rollout at each change of phase or state and the channel's
/// messages as they come; at 90 % makes the promoted apps fail. Returns the
/// ended rollout.
async fn follow(
    client: &mut ControlServiceClient<Channel>,
    dir: &Path,
    chat: &mut mpsc::Receiver<String>,
    started: Instant,
) -> anyhow::Result<pb::Rollout> {
    let mut shown = (0, String::new());
    let mut previous: Option<pb::Rollout> = None;
    let mut broken = false;
    loop {
        if started.elapsed() > DEADLINE {
            bail!(
                "the rollout did not end within {DEADLINE:?}; logs in {}",
                dir.display()
            );
        }
        drain(chat, started);
        let rollout = client
            .rollout_status(pb::RolloutStatusRequest {
                deployment: "demo".to_owned(),
            })
            .await?
            .into_inner()
            .rollout
            .context("no rollout")?;
        if (rollout.phase, rollout.state.clone()) != shown {
            // The phase that just passed its gate, with its table, then the new one.
            if let Some(last) = previous.as_ref().filter(|p| p.phase != rollout.phase) {
                println!(
                    "\n[{:>5.1}s] phase {} at its gate: rollguardctl rollout status demo",
                    started.elapsed().as_secs_f64(),
                    last.phase
                );
                print_rollout(Format::Table, Some(last));
            }
            shown = (rollout.phase, rollout.state.clone());
            println!(
                "\n[{:>5.1}s] rollguardctl rollout status demo",
                started.elapsed().as_secs_f64()
            );
            print_rollout(Format::Table, Some(&rollout));
        }
        let settled = rollout
            .gate
            .as_ref()
            .is_some_and(|g| g.promotes_total > 0 && g.promotes_succeeded == g.promotes_total);
        if rollout.percent == 90 && settled && !broken {
            broken = true;
            println!(
                "\n[{:>5.1}s] == at 90 % the build meets a bug that shows only under load: every promoted app now fails a third of its requests",
                started.elapsed().as_secs_f64()
            );
            for host in &rollout.hosts_promoted {
                std::fs::write(dir.join(host).join("control"), "error_rate=0.3\n")?;
            }
        }
        if matches!(
            rollout.state.as_str(),
            "rolled_back" | "aborted" | "completed"
        ) {
            drain(chat, started);
            return Ok(rollout);
        }
        previous = Some(rollout);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Prints the channel's messages so far; returns the events' last words.
fn drain(chat: &mut mpsc::Receiver<String>, started: Instant) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(text) = chat.try_recv() {
        println!(
            "[{:>5.1}s] #rollouts  rollguard: {text}",
            started.elapsed().as_secs_f64()
        );
        if text.contains("retrospective") {
            seen.push("retrospective".to_owned());
        }
    }
    seen
}

/// A team channel's incoming webhook in this process: every POSTed
/// `{"text": ...}` comes out of the receiver.
async fn chat_channel() -> anyhow::Result<(String, mpsc::Receiver<String>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks/rollouts", listener.local_addr()?);
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, tx.clone()));
        }
    });
    Ok((url, rx))
}

/// Serves one keep-alive connection's POSTs.
async fn serve(stream: TcpStream, tx: mpsc::Sender<String>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        // Request line, then headers up to the blank line.
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length.min(1 << 20)];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) {
            if let Some(text) = value["text"].as_str() {
                let _ = tx.send(text.to_owned()).await;
            }
        }
        if write
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    }
}
