//! The agent's link to the coordinator, and the loop that drives everything:
//! collect on every tick (host figures, plus app health when configured),
//! stream samples, run commands, report results, reconnect with exponential
//! backoff and jitter.
//!
//! Main types: [`Link`] (the loop and the state it owns), `session::Session`
//! (one open stream) and its `Connector`, `resend::ResendBuffer` (unacked
//! samples), `command::Commands` (the command policy and the action tasks)
//! and `backoff::Backoff`.
//!
//! One task on a current-thread runtime: /proc reads take microseconds. App
//! scrapes and probes run in their own tasks (see `app`); a tick only takes
//! what they counted.
//! Samples that the coordinator has not acked are buffered (bounded; the
//! oldest are dropped first) and resent after a reconnect. Command updates
//! are never dropped: they wait for the next session, and the journal can
//! answer any repeat of a finished command.
//!
//! With `[tripwire]`, every tick also feeds the `Tripwire` with whether a
//! stream is open (and since when none has been) and the tick's sample;
//! when it fires, the action runs as a local command (journalled, once),
//! and its report goes on every stream that takes it until acknowledged.

mod backoff;
mod command;
mod resend;
mod session;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use rollguard_common::time::unix_ms;
use rollguard_proto::duration_to_pb;
use rollguard_proto::v1 as pb;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::backoff::Backoff;
use self::command::{local_message, update_message, Commands};
use self::resend::ResendBuffer;
use self::session::{Connector, GrpcConnector, Session};
use crate::app::AppMonitor;
use crate::collect::Collector;
use crate::config::Config;
use crate::journal::Journal;
use crate::tripwire::{Reach, Tripwire};
use crate::version;

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let now_ms = unix_ms(SystemTime::now());
    let journal = Journal::open(&config.state_dir, now_ms).map_err(|err| {
        anyhow::anyhow!(
            "cannot open the command journal in {}: {err}",
            config.state_dir.display()
        )
    })?;
    tracing::info!(path = %journal.path().display(), skipped_lines = journal.skipped_lines(), "command journal open");
    let connector = GrpcConnector::new(&config.coordinator, config.tls.clone())?;
    Link::new(config, journal).run(connector, shutdown).await;
    tracing::info!("agent stopped");
    Ok(())
}

/// The link's state: what the loop owns between two events.
#[derive(Debug)]
pub(crate) struct Link {
    config: Config,
    commands: Commands,
    samples: ResendBuffer,
    /// Command updates waiting for a session.
    pending: VecDeque<pb::CommandUpdate>,
    session: Option<Session>,
    backoff: Backoff,
    /// Identifies this process's sequence numbers to the coordinator.
    session_id: u64,
    app_version: String,
    /// Every task the link spawns (actions, app scrapes and probes), so
    /// that stopping can wait for them.
    tracker: TaskTracker,
    /// The local tripwire, when configured.
    tripwire_opt: Option<Tripwire>,
    /// Since when no stream has been open; `None` while one is.
    unreachable_since: Option<tokio::time::Instant>,
}

impl Link {
    /// Returns a link that runs the actions `config` defines, journalled in `journal`.
    pub(crate) fn new(config: Config, journal: Journal) -> Link {
        let tracker = TaskTracker::new();
        let commands = Commands::new(&config, journal, tracker.clone());
        // A local run the coordinator has not heard of yet means it fired
        // in this outage (the agent restarted since): it stays disarmed.
        let tripwire_opt = config.tripwire.clone().map(|tripwire| {
            Tripwire::new(
                tripwire,
                config.host_id.clone(),
                commands.has_unreported_local(),
            )
        });
        Link {
            commands,
            tripwire_opt,
            unreachable_since: Some(tokio::time::Instant::now()),
            samples: ResendBuffer::new(config.resend_buffer_bytes),
            config,
            pending: VecDeque::new(),
            session: None,
            backoff: Backoff::new(),
            session_id: fastrand::u64(1..),
            app_version: String::new(),
            tracker,
        }
    }

    /// Runs the loop over sessions from `connector` until `shutdown` is cancelled.
    pub(crate) async fn run(mut self, mut connector: impl Connector, shutdown: CancellationToken) {
        tracing::info!(
            backend = self.config.collect.backend.name(),
            "collecting host figures"
        );
        let mut collector = Collector::new(self.config.collect.clone());
        // Scrapes and probes run on their own intervals; every sample takes
        // what they counted since the previous one.
        let app_monitor_opt = self
            .config
            .app
            .as_ref()
            .map(|app| AppMonitor::start(app, &shutdown, &self.tracker));
        // The first tick is one interval after the collector's baseline, so the
        // first rates cover a whole interval rather than a few microseconds.
        let interval = self.config.interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.app_version = version::read(&self.config.version)
            .await
            .unwrap_or_else(|err| {
                tracing::warn!(error = %err, "cannot read the app version");
                String::new()
            });
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => self.on_tick(&mut collector, app_monitor_opt.as_ref()).await,
                () = tokio::time::sleep_until(self.backoff.reconnect_at()), if self.session.is_none() => {
                    self.connect(&mut connector).await;
                }
                message = next_message(&mut self.session) => self.on_message(message),
                update = self.commands.next_update() => self.on_update(update),
            }
        }
        self.stop(app_monitor_opt).await;
    }

    /// Takes a sample, buffers it and sends it; notices a new app version.
    async fn on_tick(&mut self, collector: &mut Collector, app_monitor_opt: Option<&AppMonitor>) {
        let mut collected = collector.collect(Instant::now(), SystemTime::now());
        collected.sample.app = app_monitor_opt.map(AppMonitor::take);
        for err in &collected.errors {
            tracing::debug!(error = %err, "collector error");
        }
        self.judge_locally(&collected.sample);
        let dropped_before = self.samples.dropped();
        self.samples.push(&collected.sample);
        if dropped_before == 0 && self.samples.dropped() > 0 {
            let (n_samples, bytes) = self.samples.len_and_bytes();
            tracing::warn!(
                n_samples,
                bytes,
                "resend buffer full: dropping the oldest unacked samples"
            );
        }
        match version::read(&self.config.version).await {
            Ok(current) if current != self.app_version => {
                tracing::info!(from = %self.app_version, to = %current, "app version changed");
                self.app_version = current;
                if let Some(s) = &self.session {
                    // A lost label update is repeated in the next Hello.
                    let _ = s.up_tx.try_send(labels(&self.app_version));
                }
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(error = %err, "cannot read the app version"),
        }
        if let (Some(s), Some((seq, sample))) = (&mut self.session, self.samples.newest()) {
            let batch = s.batch(seq, std::iter::once(sample));
            if s.up_tx.try_send(batch).is_err() {
                tracing::debug!("upstream full; the sample stays buffered");
                s.reset_compaction();
            }
        }
    }

    /// Feeds the tripwire one round; runs its action if it fires.
    fn judge_locally(&mut self, sample: &rollguard_common::HostSample) {
        let Some(tripwire) = &mut self.tripwire_opt else {
            return;
        };
        let reach = match (&self.session, self.unreachable_since) {
            (Some(_), _) => Reach::Reachable,
            (None, Some(since)) => Reach::Unreachable(since.elapsed()),
            (None, None) => Reach::Unreachable(Duration::ZERO),
        };
        if let Some(trip) = tripwire.round(reach, sample) {
            // Disarmed for this outage whether or not the start could be
            // journalled: nothing unrecorded ever runs.
            self.commands.run_local(&trip, SystemTime::now());
        }
    }

    /// Journals an action's update and sends what it yields.
    fn on_update(&mut self, update: command::Update) {
        match self.commands.finish(update) {
            Some(wire) => self.deliver(wire),
            // A local run: its report, now that it finished.
            None => self.report_local(),
        }
    }

    /// Sends the reports of finished local runs the coordinator has not
    /// acknowledged, if the open stream takes them; else they wait for one.
    fn report_local(&mut self) {
        let Some(s) = self.session.as_ref().filter(|s| s.local_rollbacks) else {
            return;
        };
        for report in self.commands.local_reports() {
            if s.up_tx.try_send(local_message(report)).is_err() {
                tracing::debug!("upstream full; the local rollback is reported on the next stream");
            }
        }
    }

    /// Opens a session; on success resends what was not acked, then whatever
    /// updates waited, then the unacknowledged local rollbacks.
    async fn connect(&mut self, connector: &mut impl Connector) {
        match connector.open(self.hello()).await {
            Ok(mut s) => {
                tracing::info!(coordinator = %self.config.coordinator, "connected");
                // The outage is over: the tripwire re-arms.
                self.unreachable_since = None;
                if let Some(tripwire) = &mut self.tripwire_opt {
                    tripwire.reconnected();
                }
                let (n_samples, bytes) = self.samples.len_and_bytes();
                if n_samples > 1 {
                    // One is the usual sample in flight; more is a backlog.
                    tracing::info!(
                        n_samples,
                        bytes,
                        dropped = self.samples.take_dropped(),
                        "resending unacked samples"
                    );
                }
                for chunk in self.samples.chunks(s.max_batch) {
                    let batch = s.batch(chunk[0].seq, chunk.iter().map(|u| &u.sample));
                    let _ = s.up_tx.send(batch).await;
                }
                while let Some(update) = self.pending.pop_front() {
                    let _ = s.up_tx.send(update_message(update)).await;
                }
                let reports = self.commands.local_reports();
                if !reports.is_empty() && !s.local_rollbacks {
                    tracing::warn!(n_reports = reports.len(), "this coordinator does not take local rollback reports; they wait for one that does");
                }
                for report in reports.into_iter().filter(|_| s.local_rollbacks) {
                    let _ = s.up_tx.send(local_message(report)).await;
                }
                self.session = Some(s);
            }
            Err(err) => {
                tracing::warn!(coordinator = %self.config.coordinator, error = %err, retry_in_ms = self.backoff.delay().as_millis() as u64, "cannot connect; retrying");
                self.backoff.failed();
            }
        }
    }

    /// Handles what the session yielded: a message, its end, or its failure.
    fn on_message(&mut self, message: Result<Option<pb::CoordinatorMessage>, tonic::Status>) {
        match message {
            Ok(Some(pb::CoordinatorMessage { kind: Some(kind) })) => self.handle(kind),
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::warn!("coordinator closed the stream; reconnecting");
                self.end_session();
            }
            Err(status) => {
                tracing::warn!(error = %status.message(), code = ?status.code(), "stream failed; reconnecting");
                self.end_session();
            }
        }
    }

    /// Handles one coordinator message.
    fn handle(&mut self, kind: pb::coordinator_message::Kind) {
        match kind {
            pb::coordinator_message::Kind::Welcome(_) => {}
            pb::coordinator_message::Kind::SampleAck(ack) => self.samples.ack(ack.seq),
            pb::coordinator_message::Kind::Goodbye(goodbye) => {
                tracing::info!(reason = %goodbye.reason, "coordinator said goodbye; reconnecting");
                self.end_session();
            }
            pb::coordinator_message::Kind::Command(command) => {
                for update in self.commands.on_command(command) {
                    self.deliver(update);
                }
            }
            pb::coordinator_message::Kind::LocalRollbackAck(ack) => {
                self.commands.local_reported(&ack.command_id);
            }
        }
    }

    /// Sends `update` now, or keeps it for the next session rather than lose it.
    fn deliver(&mut self, update: pb::CommandUpdate) {
        let Some(s) = &self.session else {
            self.pending.push_back(update);
            return;
        };
        if let Err(err) = s.up_tx.try_send(update_message(update)) {
            if let pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::CommandUpdate(update)),
            } = err.into_inner()
            {
                self.pending.push_back(update);
            }
        }
    }

    fn end_session(&mut self) {
        self.unreachable_since
            .get_or_insert_with(tokio::time::Instant::now);
        let lasted = self.session.take().map(|s| s.age()).unwrap_or_default();
        self.backoff.session_ended(lasted);
    }

    fn hello(&self) -> pb::Hello {
        let config = &self.config;
        pb::Hello {
            host_id: config.host_id.to_string(),
            deployment: config.deployment.to_string(),
            // Auto is COHORT_UNSPECIFIED: the coordinator decides.
            cohort: config
                .cohort
                .map_or(pb::Cohort::Unspecified, pb::Cohort::from) as i32,
            app_version: self.app_version.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            action_names: config.actions.keys().cloned().collect(),
            interval: Some(duration_to_pb(config.interval)),
            labels: config.labels.clone().into_iter().collect(),
            session_id: self.session_id,
        }
    }

    /// Stop order: collectors are done (the loop ended); let a running action
    /// finish within the grace period and report it; stop the app tasks;
    /// wait for every tracked task (same deadline); then close the stream.
    async fn stop(mut self, app_monitor_opt: Option<AppMonitor>) {
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
        while self.commands.running() > 0 {
            match tokio::time::timeout_at(deadline, self.commands.next_update()).await {
                Ok(update) => self.on_update(update),
                Err(_) => {
                    tracing::warn!(
                        running = self.commands.running(),
                        "stopping with an action still running; it will be reported as interrupted"
                    );
                    break;
                }
            }
        }
        if let Some(app_monitor) = app_monitor_opt {
            app_monitor.stop().await;
        }
        // Normally everything has ended by now; this catches a task that
        // outlived its owner's wait. Past the grace, the runtime drops what
        // is left (an action's process is killed on drop).
        self.tracker.close();
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.tracker.len(),
                "stopping with agent tasks still running"
            );
        }
        if let Some(s) = self.session.take() {
            s.close().await;
        }
    }
}

async fn next_message(
    session: &mut Option<Session>,
) -> Result<Option<pb::CoordinatorMessage>, tonic::Status> {
    match session {
        Some(s) => s.next_message().await,
        None => std::future::pending().await,
    }
}

fn labels(app_version: &str) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Labels(pb::LabelsUpdate {
            app_version: app_version.to_owned(),
        })),
    }
}
