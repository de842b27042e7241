//! `--hold`: a standing fleet for fault tests and the reconnect storm.
//!
//! Every simulated agent connects, sends one sample per interval, and keeps
//! going until SIGTERM or SIGINT. Unlike a measuring step (`step.rs`), an
//! agent whose stream ends reconnects on the real agent's schedule
//! (exponential from 200 ms to 30 s plus up to 50 % jitter, reset by a
//! session of 10 s: `agent/src/link/backoff.rs`), keeping its session id and
//! sequence numbers. It runs each command at most once, as the real agent's
//! journal makes it: a command id it has run before is answered from memory
//! (`succeeded`) and counted as a repeat, never run again.
//!
//! At the end it reports how many distinct commands each agent ran, and
//! every outage: from the moment fewer than all agents were connected,
//! after all had been, to the moment all were again.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::certs::Certs;
use crate::config::Config;
use crate::sim::{self, Identity, Link};
use rollguard_proto::v1 as pb;

/// First reconnect delay (the agent's `BACKOFF_MIN`).
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Largest reconnect delay (the agent's `BACKOFF_MAX`).
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A session that lasted this long resets the backoff (the agent's `HEALTHY_SESSION`).
const HEALTHY_SESSION: Duration = Duration::from_secs(10);
/// How often the connected count is looked at for outages.
const WATCH_EVERY: Duration = Duration::from_millis(20);

/// What the whole fleet saw, written with `--json`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct HoldReport {
    pub(crate) agents: usize,
    pub(crate) beta_agents: usize,
    /// Seconds from the start until every agent was connected the first time.
    pub(crate) all_connected_secs: Option<f64>,
    pub(crate) connected_at_end: usize,
    /// Every time the fleet was not whole after having been.
    pub(crate) outages: Vec<Outage>,
    /// Stream sessions opened, the first ones included.
    pub(crate) sessions: usize,
    /// Connect attempts that failed (refused, no Welcome, ...).
    pub(crate) failed_connects: usize,
    /// Agents by how many distinct commands of their action they ran: `[n0, n1, n2, ...]`.
    pub(crate) agents_by_runs: Vec<usize>,
    /// Beta agents that ran no command.
    pub(crate) beta_agents_without_run: usize,
    /// Commands received again after they had run (answered from memory).
    pub(crate) repeats_answered: usize,
    /// Host ids of agents that ran more than one command (at most 20).
    pub(crate) ran_more_than_once: Vec<String>,
}

/// One outage, in seconds from the start of the run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Outage {
    pub(crate) down_at_secs: f64,
    /// `None`: the run ended before every agent was back.
    pub(crate) all_back_after_secs: Option<f64>,
    /// Fewest agents connected during the outage.
    pub(crate) lowest_connected: usize,
}

/// What one agent saw.
#[derive(Debug, Default)]
struct AgentOutcome {
    sessions: usize,
    failed_connects: usize,
    /// Command ids of this agent's action that it ran.
    ran: HashSet<String>,
    repeats: usize,
}

/// Runs the standing fleet until SIGTERM or SIGINT; prints a summary and writes the JSON.
pub(crate) async fn run(
    config: &Config,
    endpoint: &tonic::transport::Endpoint,
    certs: Option<&Certs>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let n_agents = config.agents.get();
    let stop = CancellationToken::new();
    let connected = Arc::new(AtomicUsize::new(0));
    let permits = Arc::new(Semaphore::new(config.connect_concurrency.get()));
    let slots = sim::Slots::open(config, n_agents, endpoint, certs).await?;
    let mut agents = Vec::with_capacity(n_agents);
    for idx in 0..n_agents {
        let (identity, link) = slots.agent(idx);
        agents.push(tokio::spawn(agent(
            identity,
            link,
            Arc::clone(&permits),
            Arc::clone(&connected),
            stop.clone(),
        )));
    }

    let watcher = tokio::spawn(watch_outages(
        n_agents,
        Arc::clone(&connected),
        start,
        stop.clone(),
    ));
    rollguard_proto::process::shutdown_signal().await;
    let connected_at_end = connected.load(Ordering::Relaxed);
    stop.cancel();
    let (all_connected, outages) = watcher.await.context("the outage watcher failed")?;
    let mut report = HoldReport {
        agents: n_agents,
        all_connected_secs: all_connected.map(|d| d.as_secs_f64()),
        connected_at_end,
        outages,
        ..HoldReport::default()
    };
    for (idx, agent) in agents.into_iter().enumerate() {
        let outcome = agent.await.context("a simulated agent task failed")?;
        report.sessions += outcome.sessions;
        report.failed_connects += outcome.failed_connects;
        report.repeats_answered += outcome.repeats;
        let runs = outcome.ran.len();
        if report.agents_by_runs.len() <= runs {
            report.agents_by_runs.resize(runs + 1, 0);
        }
        report.agents_by_runs[runs] += 1;
        if config.is_beta(idx) {
            report.beta_agents += 1;
            report.beta_agents_without_run += usize::from(runs == 0);
        }
        if runs > 1 && report.ran_more_than_once.len() < 20 {
            report.ran_more_than_once.push(config.host_id(idx));
        }
    }
    print_summary(&report);
    if let Some(path) = &config.json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn print_summary(report: &HoldReport) {
    println!(
        "{} agents ({} beta), {} connected at the end, {} sessions, {} failed connects",
        report.agents,
        report.beta_agents,
        report.connected_at_end,
        report.sessions,
        report.failed_connects
    );
    if let Some(secs) = report.all_connected_secs {
        println!("all connected after {secs:.2} s");
    }
    for outage in &report.outages {
        match outage.all_back_after_secs {
            Some(back) => println!(
                "outage at {:.2} s: down to {} connected, all back after {back:.2} s",
                outage.down_at_secs, outage.lowest_connected
            ),
            None => println!(
                "outage at {:.2} s: down to {} connected, not all back by the end",
                outage.down_at_secs, outage.lowest_connected
            ),
        }
    }
    println!(
        "agents by commands run: {:?}; beta agents without a run: {}; repeats answered: {}",
        report.agents_by_runs, report.beta_agents_without_run, report.repeats_answered
    );
}

/// Watches the connected count until `stop`; returns when the fleet was
/// first whole and every outage after that.
async fn watch_outages(
    n_agents: usize,
    connected: Arc<AtomicUsize>,
    start: Instant,
    stop: CancellationToken,
) -> (Option<Duration>, Vec<Outage>) {
    let mut all_connected = None;
    let mut outages: Vec<Outage> = Vec::new();
    let mut open: Option<(Instant, usize)> = None;
    let mut ticker = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        // Agents leave as they stop: that is no outage.
        if stop.is_cancelled() {
            break;
        }
        let now = Instant::now();
        let count = connected.load(Ordering::Relaxed);
        if all_connected.is_none() {
            if count == n_agents {
                all_connected = Some(now - start);
                tracing::info!(
                    n_agents,
                    secs = (now - start).as_secs_f64(),
                    "hold: all connected"
                );
            }
            continue;
        }
        match (&mut open, count == n_agents) {
            (None, false) => {
                tracing::info!(connected = count, n_agents, "hold: outage");
                open = Some((now, count));
            }
            (Some((_, lowest)), false) => *lowest = (*lowest).min(count),
            (Some((down_at, lowest)), true) => {
                let back = now - *down_at;
                tracing::info!(secs = back.as_secs_f64(), "hold: all back");
                outages.push(Outage {
                    down_at_secs: (*down_at - start).as_secs_f64(),
                    all_back_after_secs: Some(back.as_secs_f64()),
                    lowest_connected: *lowest,
                });
                open = None;
            }
            (None, true) => {}
        }
    }
    if let Some((down_at, lowest)) = open {
        outages.push(Outage {
            down_at_secs: (down_at - start).as_secs_f64(),
            all_back_after_secs: None,
            lowest_connected: lowest,
        });
    }
    (all_connected, outages)
}

/// One standing agent: connect, sample, answer, reconnect, until `stop`.
async fn agent(
    identity: Identity,
    link: Link,
    first_connect: Arc<Semaphore>,
    connected: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> AgentOutcome {
    let mut outcome = AgentOutcome::default();
    let mut samples = crate::sample::SampleGen::new(identity.idx, identity.interval);
    let mut seq: u64 = 0;
    let mut delay = BACKOFF_MIN;
    let mut first = Some(first_connect);
    loop {
        // Only the first connect is paced; reconnects come as a real fleet's do.
        let permit = match first.take() {
            Some(permits) => Some(permits.acquire_owned().await),
            None => None,
        };
        let session = tokio::select! {
            () = stop.cancelled() => return outcome,
            session = sim::connect(&identity, link.clone()) => session,
        };
        drop(permit);
        let lasted = match session {
            Err(err) => {
                outcome.failed_connects += 1;
                tracing::debug!(host_id = %identity.host_id, error = %format!("{err:#}"), "connect failed");
                None
            }
            Ok((up_tx, inbound, compactor)) => {
                outcome.sessions += 1;
                connected.fetch_add(1, Ordering::Relaxed);
                let began = Instant::now();
                let mut session = Session {
                    identity: &identity,
                    up_tx,
                    compactor,
                    seq: &mut seq,
                    samples: &mut samples,
                    outcome: &mut outcome,
                };
                session.run(inbound, &stop).await;
                connected.fetch_sub(1, Ordering::Relaxed);
                Some(began.elapsed())
            }
        };
        if stop.is_cancelled() {
            return outcome;
        }
        if lasted.is_some_and(|lasted| lasted >= HEALTHY_SESSION) {
            delay = BACKOFF_MIN;
        }
        let wait = delay + delay.mul_f64(f64::from(fastrand::u32(0..1000)) / 2000.0);
        delay = (delay * 2).min(BACKOFF_MAX);
        tokio::select! {
            () = stop.cancelled() => return outcome,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One open stream of a standing agent.
struct Session<'a> {
    identity: &'a Identity,
    up_tx: mpsc::Sender<pb::AgentMessage>,
    compactor: Option<rollguard_proto::compact::Compactor>,
    seq: &'a mut u64,
    samples: &'a mut crate::sample::SampleGen,
    outcome: &'a mut AgentOutcome,
}

impl Session<'_> {
    /// Samples and answers until the stream ends or `stop`.
    async fn run(
        &mut self,
        mut inbound: tonic::Streaming<pb::CoordinatorMessage>,
        stop: &CancellationToken,
    ) {
        // Spread the agents' ticks over one interval, as a real fleet's are.
        let offset = self
            .identity
            .interval
            .mul_f64(f64::from(fastrand::u32(0..1000)) / 1000.0);
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + offset, self.identity.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {
                    if !self.send_sample().await {
                        return;
                    }
                }
                message = inbound.message() => {
                    let Ok(Some(message)) = message else { return };
                    if let Some(pb::coordinator_message::Kind::Command(command)) = message.kind {
                        if !self.on_command(&command).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Sends the next sample; false when the stream is gone.
    async fn send_sample(&mut self) -> bool {
        let sample = self.samples.next(SystemTime::now());
        let batch = pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Samples(pb::SampleBatch {
                first_seq: *self.seq + 1,
                samples: vec![match &mut self.compactor {
                    Some(compactor) => compactor.encode(&sample),
                    None => pb::HostSample::from(&sample),
                }],
            })),
        };
        *self.seq += 1;
        self.up_tx.send(batch).await.is_ok()
    }

    /// Runs a command once (answering a repeat from memory); false when the stream is gone.
    async fn on_command(&mut self, command: &pb::Command) -> bool {
        if command.action == self.identity.action
            && !self.outcome.ran.insert(command.command_id.clone())
        {
            self.outcome.repeats += 1;
        }
        sim::answer(self.identity, command, &self.up_tx)
            .await
            .is_ok()
    }
}
