//! [`Commands`]: the command policy, and the tasks that run actions.
//!
//! A command names an action; the command line comes from this host's
//! config. A command runs only when its id is new to the journal, it was
//! sent before its `not_after` (both on the coordinator's clock, so a
//! skewed clock here does not matter: [`is_expired`]), the action is
//! defined here, and its start
//! was durably journalled. Anything else is answered without running:
//! a repeat gets the journalled result (or `Running`), a start the journal
//! could not record (a full disk) is `Failed` with the reason, the rest are
//! `Rejected` with the reason. Each id therefore runs at most once, also
//! across restarts.
//!
//! Action tasks report through a channel ([`Update`]); [`Commands::finish`]
//! journals their result. Nothing here touches the stream: callers send
//! the returned `pb::CommandUpdate`s.
//!
//! A local run (the tripwire fired, [`Commands::run_local`]) goes through
//! the same journal and action task under an id of its own making; it
//! yields no `CommandUpdate` (the coordinator never sent it), but a
//! `pb::LocalRollback` report once finished ([`Commands::local_reports`]),
//! until the coordinator acknowledges it ([`Commands::local_reported`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rollguard_common::ids::REASON_EXPIRED;
use rollguard_common::time::unix_ms;
use rollguard_common::{CommandStatus, HostId};
use rollguard_proto::v1 as pb;
use rollguard_proto::{duration_to_pb, time_from_pb, time_to_pb};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::action;
use crate::config::{Action, Config};
use crate::journal::{Entry, Journal, Outcome};
use crate::tripwire::Trip;

#[cfg(test)]
mod tests;

/// Queue of updates from action tasks. One command yields at most two
/// updates and commands are rare, so it never fills in practice.
const UPDATE_CAPACITY: usize = 256;

/// An update from a running action task.
#[derive(Debug)]
pub(crate) struct Update {
    command_id: String,
    /// Set on the final update.
    outcome: Option<Outcome>,
    status: CommandStatus,
    /// A local run: nothing to send for it but its report, once finished.
    local: bool,
}

/// The command policy, the journal it keeps, and the running actions.
#[derive(Debug)]
pub(crate) struct Commands {
    journal: Journal,
    actions: BTreeMap<String, Action>,
    host_id: HostId,
    /// Default working directory of actions.
    state_dir: PathBuf,
    update_tx: mpsc::Sender<Update>,
    update_rx: mpsc::Receiver<Update>,
    /// Actions started and not yet finished.
    running: usize,
    /// Where action tasks are spawned, so shutdown can wait for them.
    tracker: TaskTracker,
    /// Local runs that succeeded and the coordinator may not know of yet.
    local_done: Vec<LocalDone>,
}

/// A local run that succeeded: it covers a command for the same action
/// decided before it started ([`covering_local_run`]).
#[derive(Debug, Clone)]
pub(crate) struct LocalDone {
    id: String,
    action: String,
    /// On this host's clock.
    started_at: SystemTime,
}

impl Commands {
    /// Returns the policy for the actions `config` defines, over `journal`;
    /// action tasks are spawned on `tracker`.
    pub(crate) fn new(config: &Config, journal: Journal, tracker: TaskTracker) -> Commands {
        let (update_tx, update_rx) = mpsc::channel(UPDATE_CAPACITY);
        let local_done = journal
            .unreported()
            .iter()
            .filter_map(|(id, trip)| match journal.get(id) {
                Some(Entry::Finished(outcome)) => local_done(id, trip, outcome),
                _ => None,
            })
            .collect();
        Commands {
            local_done,
            journal,
            actions: config.actions.clone(),
            host_id: config.host_id.clone(),
            state_dir: config.state_dir.clone(),
            update_tx,
            update_rx,
            running: 0,
            tracker,
        }
    }

    /// Returns how many actions are running.
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Waits for the next update from an action task.
    pub(crate) async fn next_update(&mut self) -> Update {
        // `self` holds a sender, so the channel never closes.
        self.update_rx
            .recv()
            .await
            .expect("Commands holds an update sender")
    }

    /// Journals a final result; returns the update to send (none for a
    /// local run: its report is in [`Commands::local_reports`] once finished).
    pub(crate) fn finish(&mut self, update: Update) -> Option<pb::CommandUpdate> {
        let wire = (!update.local).then(|| update_to_wire(&update));
        if let Some(outcome) = update.outcome {
            if update.local {
                let trip = self
                    .journal
                    .unreported()
                    .iter()
                    .find(|(id, _)| *id == update.command_id);
                if let Some(done) = trip.and_then(|(id, trip)| local_done(id, trip, &outcome)) {
                    self.local_done.push(done);
                }
            }
            self.running = self.running.saturating_sub(1);
            if let Err(err) = self.journal.finish(&update.command_id, outcome) {
                tracing::error!(command_id = %update.command_id, error = %err, "cannot record the command result");
            }
        }
        wire
    }

    /// Returns true when the journal holds a local run the coordinator has
    /// not acknowledged: the tripwire fired in the current outage.
    pub(crate) fn has_unreported_local(&self) -> bool {
        !self.journal.unreported().is_empty()
    }

    /// Journals and starts the tripwire's action, once: `false` when its
    /// start could not be recorded, and then nothing runs.
    pub(crate) fn run_local(&mut self, trip: &Trip, now: SystemTime) -> bool {
        let id = local_id(&self.host_id, now);
        let Some(action) = self.actions.get(&trip.action).cloned() else {
            // Config validation makes this unreachable; never run what is not defined.
            tracing::error!(action = %trip.action, "the tripwire's action is not defined; not run");
            return false;
        };
        if let Err(err) = self.journal.start_local(&id, trip) {
            tracing::error!(command_id = %id, error = %err, "cannot record the local rollback in the journal; not run");
            return false;
        }
        tracing::warn!(command_id = %id, action = %trip.action, reason = %trip.reason, unreachable_ms = trip.unreachable_ms, "local tripwire fired: running the action");
        let span = tracing::info_span!(
            "agent.action",
            host.id = %self.host_id,
            action = %trip.action,
            command_id = %id,
            local = true,
            exit_code = tracing::field::Empty,
            status = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        self.spawn(id, action, span, now, true);
        true
    }

    /// Returns the reports of the finished local runs the coordinator has
    /// not acknowledged, oldest first (a run still going is reported later).
    pub(crate) fn local_reports(&self) -> Vec<pb::LocalRollback> {
        self.journal
            .unreported()
            .iter()
            .filter_map(|(id, trip)| match self.journal.get(id) {
                Some(Entry::Finished(outcome)) => Some(local_to_wire(id, trip, outcome)),
                _ => None,
            })
            .collect()
    }

    /// The coordinator recorded local run `id`: it is never sent again.
    pub(crate) fn local_reported(&mut self, id: &str) {
        tracing::info!(command_id = %id, "the coordinator recorded the local rollback");
        if let Err(err) = self.journal.reported(id) {
            tracing::warn!(command_id = %id, error = %err, "cannot record the acknowledgement; a restart reports it again");
        }
    }

    /// Decides what to do with a command; returns the updates to send now.
    pub(crate) fn on_command(&mut self, command: pb::Command) -> Vec<pb::CommandUpdate> {
        let id = command.command_id.clone();
        if id.is_empty() {
            tracing::warn!("command without an id ignored");
            return Vec::new();
        }
        match self.journal.get(&id) {
            Some(Entry::Finished(outcome)) => {
                // Already done here: answer again, never run again.
                tracing::info!(command_id = %id, status = %outcome.status, "repeat of a finished command; reporting its result");
                return vec![outcome_to_wire(&id, outcome)];
            }
            Some(Entry::Running) => {
                return vec![simple_update(&id, CommandStatus::Running, "")];
            }
            None => {}
        }
        let now = SystemTime::now();
        // Checked before the deadline: a rollback decided while this host
        // was away, and already done here by the tripwire, is answered
        // done (and never expires into a catch-up that would run it again).
        if let Some(local) = covering_local_run(&command, now, &self.local_done) {
            let reason = format!(
                "already done here by local rollback {} (the tripwire, while the coordinator was away); not run again",
                local.id
            );
            tracing::info!(command_id = %id, local_id = %local.id, "command covered by a local rollback; not run again");
            let outcome = Outcome {
                status: CommandStatus::Succeeded,
                exit_code: None,
                reason,
                output_tail: String::new(),
                duration_ms: 0,
                started_at_unix_ms: unix_ms(local.started_at),
            };
            if let Err(err) = self.journal.finish(&id, outcome.clone()) {
                tracing::error!(command_id = %id, error = %err, "cannot record the answer");
            }
            return vec![outcome_to_wire(&id, &outcome)];
        }
        if is_expired(&command, now) {
            return self.reject(&command, REASON_EXPIRED.to_owned(), now);
        }
        let Some(defined) = self.actions.get(&command.action) else {
            let reason = format!(
                "unknown action `{}`: this host does not define it",
                command.action
            );
            return self.reject(&command, reason, now);
        };
        // `{version}` is filled in here, checked again whatever the coordinator checked.
        let action = match defined.for_version(&command.version) {
            Ok(action) => action,
            Err(why) => {
                let reason = format!("action `{}`: {why}", command.action);
                return self.reject(&command, reason, now);
            }
        };
        // Durably record the start before anything runs: at most once, also across restarts.
        if let Err(err) = self.journal.start(&id) {
            return vec![unrecorded(&command, &err, now)];
        }
        tracing::info!(command_id = %id, action = %command.action, reason = %command.reason, "running action");
        // The action's span is a child of the decision's trace (W3C context in the command).
        let span = tracing::info_span!(
            "agent.action",
            host.id = %self.host_id,
            action = %command.action,
            command_id = %id,
            exit_code = tracing::field::Empty,
            status = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        rollguard_proto::otel::set_parent(&span, &command.trace_context);
        self.spawn(id.clone(), action, span, now, false);
        vec![simple_update(&id, CommandStatus::Accepted, "")]
    }

    /// Journals `command` as rejected for `reason`; returns the update to send.
    fn reject(
        &mut self,
        command: &pb::Command,
        reason: String,
        now: SystemTime,
    ) -> Vec<pb::CommandUpdate> {
        let id = &command.command_id;
        tracing::warn!(command_id = %id, action = %command.action, %reason, "command rejected");
        let outcome = Outcome {
            status: CommandStatus::Rejected,
            exit_code: None,
            reason,
            output_tail: String::new(),
            duration_ms: 0,
            started_at_unix_ms: unix_ms(now),
        };
        if let Err(err) = self.journal.finish(id, outcome.clone()) {
            tracing::error!(command_id = %id, error = %err, "cannot record the rejection");
        }
        vec![outcome_to_wire(id, &outcome)]
    }

    /// Starts the task that runs `action` as command `id` in `span` and reports on it.
    fn spawn(
        &mut self,
        id: String,
        action: Action,
        span: tracing::Span,
        now: SystemTime,
        local: bool,
    ) {
        self.running += 1;
        let state_dir = self.state_dir.clone();
        let update_tx = self.update_tx.clone();
        let started_at_unix_ms = unix_ms(now);
        self.tracker.spawn(async move {
            let _ = update_tx
                .send(Update {
                    command_id: id.clone(),
                    outcome: None,
                    status: CommandStatus::Running,
                    local,
                })
                .await;
            let result = action::run(&action, &state_dir)
                .instrument(span.clone())
                .await;
            let duration_ms = u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX);
            span.record("status", result.status.as_str());
            span.record("duration_ms", duration_ms);
            if let Some(code) = result.exit_code {
                span.record("exit_code", code);
            }
            drop(span);
            tracing::info!(command_id = %id, status = %result.status, exit_code = ?result.exit_code, "action finished");
            let status = result.status;
            let _ = update_tx
                .send(Update {
                    command_id: id,
                    outcome: Some(Outcome {
                        status,
                        exit_code: result.exit_code,
                        reason: result.reason,
                        output_tail: result.output_tail,
                        duration_ms,
                        started_at_unix_ms,
                    }),
                    status,
                    local,
                })
                .await;
        });
    }
}

/// Returns whether `command` is past its deadline, judged on the
/// coordinator's clock alone (issue 11): it is expired iff it was sent after
/// its `not_after`, both stamped by the coordinator. This host's clock may
/// be hours off (an agent an hour ahead used to reject every command), and
/// comparing two times from one clock needs no agreement between two.
///
/// What this does not see is the time in flight, which is small next to the
/// command TTL; a copy held in a buffer during a partition was still valid
/// when it was sent, and the coordinator resends pending commands, freshly
/// stamped, on reconnect. Only without a `sent_at` (a coordinator older
/// than the field) is `not_after` compared with `agent_now`, as before.
///
/// A command without a valid deadline, or with a `sent_at` that is not a
/// valid time, is expired: never run what cannot be bounded.
fn is_expired(command: &pb::Command, agent_now: SystemTime) -> bool {
    let Some(Ok(not_after)) = command
        .not_after
        .as_ref()
        .map(|t| time_from_pb("not_after", t))
    else {
        return true;
    };
    match command.sent_at.as_ref().map(|t| time_from_pb("sent_at", t)) {
        Some(Ok(sent_at)) => sent_at > not_after,
        Some(Err(_)) => true,
        None => agent_now > not_after,
    }
}

/// A finished local run, if it succeeded.
fn local_done(id: &str, trip: &Trip, outcome: &Outcome) -> Option<LocalDone> {
    (outcome.status == CommandStatus::Succeeded).then(|| LocalDone {
        id: id.to_owned(),
        action: trip.action.clone(),
        started_at: SystemTime::UNIX_EPOCH + Duration::from_millis(outcome.started_at_unix_ms),
    })
}

/// Returns the local run that already did what `command` asks: the same
/// action, succeeded, started after the command was decided. Without this a
/// host whose tripwire fired during an outage would run the coordinator's
/// rollback of the same outage a second time when the link returns.
///
/// The decision's time on this host's clock is `agent_now` minus the
/// command's age (`sent_at - issued_at`, both on the coordinator's clock),
/// so a skewed clock here does not matter (the time in flight is ignored,
/// as in [`is_expired`]). A command without both times is never covered.
fn covering_local_run<'a>(
    command: &pb::Command,
    agent_now: SystemTime,
    local_done: &'a [LocalDone],
) -> Option<&'a LocalDone> {
    let time = |t: &Option<prost_types::Timestamp>, name| {
        t.as_ref().and_then(|t| time_from_pb(name, t).ok())
    };
    let age = time(&command.sent_at, "sent_at")?
        .duration_since(time(&command.issued_at, "issued_at")?)
        .unwrap_or(Duration::ZERO);
    let decided = agent_now.checked_sub(age)?;
    local_done
        .iter()
        .find(|local| local.action == command.action && local.started_at >= decided)
}

/// Returns the update for a command whose start could not be journalled
/// (a full disk, issue 11): failed, with the reason, and never run.
///
/// Nothing is written for it (the disk that refused the start would refuse
/// that too) and the journal does not remember the id: it never ran, so a
/// later delivery may still run it once. The coordinator ignores updates
/// after a final one and retries with a new command id, which runs once
/// space is back.
fn unrecorded(command: &pb::Command, err: &std::io::Error, now: SystemTime) -> pb::CommandUpdate {
    let reason = format!("cannot record the command in the journal: {err}");
    tracing::error!(command_id = %command.command_id, action = %command.action, %reason, "command failed; not run");
    let outcome = Outcome {
        status: CommandStatus::Failed,
        exit_code: None,
        reason,
        output_tail: String::new(),
        duration_ms: 0,
        started_at_unix_ms: unix_ms(now),
    };
    outcome_to_wire(&command.command_id, &outcome)
}

/// Longest id of a local run: the coordinator's limit on a name.
const MAX_ID_LEN: usize = rollguard_common::ids::MAX_NAME_LEN;

/// The id of a local run at `now`: `local-<host>-<unix ms>`, the host cut
/// (on a char boundary) so that the id stays a valid name.
fn local_id(host_id: &HostId, now: SystemTime) -> String {
    let ms = unix_ms(now).to_string();
    let mut host = host_id.as_str().to_owned();
    let room = MAX_ID_LEN - "local-".len() - 1 - ms.len();
    host.truncate(host.floor_char_boundary(room));
    format!("local-{host}-{ms}")
}

/// Most rules a report names (the coordinator's limit).
const MAX_REPORTED_RULES: usize = 32;

/// The report of a finished local run.
fn local_to_wire(id: &str, trip: &Trip, outcome: &Outcome) -> pb::LocalRollback {
    pb::LocalRollback {
        command_id: id.to_owned(),
        action: trip.action.clone(),
        reason: trip.reason.clone(),
        figures: trip
            .figures
            .iter()
            .take(MAX_REPORTED_RULES)
            .map(|rule| pb::TrippedRule {
                metric: rule.metric.clone(),
                value: rule.value,
                limit: rule.limit,
                limit_text: rule.limit_text.clone(),
            })
            .collect(),
        consecutive_failures: trip.consecutive,
        unreachable_for: Some(duration_to_pb(Duration::from_millis(trip.unreachable_ms))),
        status: pb::CommandStatus::from(outcome.status) as i32,
        exit_code: outcome.exit_code,
        result_reason: outcome.reason.clone(),
        output_tail: outcome.output_tail.clone(),
        started_at: Some(time_to_pb(
            SystemTime::UNIX_EPOCH + Duration::from_millis(outcome.started_at_unix_ms),
        )),
        duration: Some(duration_to_pb(Duration::from_millis(outcome.duration_ms))),
    }
}

/// Wraps a local run's report for the stream.
pub(crate) fn local_message(report: pb::LocalRollback) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::LocalRollback(report)),
    }
}

/// Wraps a command update for the stream.
pub(crate) fn update_message(update: pb::CommandUpdate) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::CommandUpdate(update)),
    }
}

fn simple_update(id: &str, status: CommandStatus, reason: &str) -> pb::CommandUpdate {
    pb::CommandUpdate {
        command_id: id.to_owned(),
        status: pb::CommandStatus::from(status) as i32,
        reason: reason.to_owned(),
        ..Default::default()
    }
}

fn outcome_to_wire(id: &str, outcome: &Outcome) -> pb::CommandUpdate {
    pb::CommandUpdate {
        command_id: id.to_owned(),
        status: pb::CommandStatus::from(outcome.status) as i32,
        exit_code: outcome.exit_code,
        reason: outcome.reason.clone(),
        output_tail: outcome.output_tail.clone(),
        started_at: Some(time_to_pb(
            SystemTime::UNIX_EPOCH + Duration::from_millis(outcome.started_at_unix_ms),
        )),
        duration: Some(duration_to_pb(Duration::from_millis(outcome.duration_ms))),
    }
}

fn update_to_wire(update: &Update) -> pb::CommandUpdate {
    match &update.outcome {
        Some(outcome) => outcome_to_wire(&update.command_id, outcome),
        None => simple_update(&update.command_id, update.status, ""),
    }
}
