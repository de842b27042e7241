//! Fleet state: every host seen, its connection and latest sample, and every
//! command with its per-host results.
//!
//! One `std::sync::Mutex` guards it; every critical section is short and
//! never awaits. Status views are computed from it on demand. Plain state:
//! no IO, no tokio, no wire types. A connected host's way to its stream is
//! an opaque `Tx` the fleet only hands back (to be sent on after the lock
//! is released); the service layer writes to the store and owns the streams.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::config::TARGET_WINDOW;
use crate::store::{unix_ms, AgentRecord, CommandRecord, ResultRecord, Snapshot};
use rollguard_common::aggregate::{version_counts, CohortAggregate};
use rollguard_common::policy::HostRound;
use rollguard_common::{Cohort, CommandId, CommandStatus, DeploymentName, HostId, HostSample};

/// A host is stale when silent for more than this many of its intervals.
pub(crate) const STALE_INTERVALS: u32 = 3;

/// What [`Fleet::connect`] did.
#[derive(Debug)]
pub(crate) struct Connected<Tx> {
    /// The new connection's id (see [`Fleet::disconnect`]).
    pub(crate) conn_id: u64,
    /// The host's record, to store.
    pub(crate) record: AgentRecord,
    /// Commands the host must be sent now, oldest first.
    pub(crate) pending: Vec<CommandRecord>,
    /// Commands the host joined as a late target, to store.
    pub(crate) updated: Vec<CommandRecord>,
    /// The connection this one replaced, to be told Goodbye.
    pub(crate) replaced: Option<Tx>,
}

/// What [`Fleet::dispatch`] did.
#[derive(Debug)]
pub(crate) struct Dispatched<Tx> {
    /// The streams of the targets connected now, to send the command on.
    pub(crate) senders: Vec<Tx>,
    /// The record with hosts that connected since the decision added as
    /// targets (to be stored), if that changed it.
    pub(crate) updated: Option<CommandRecord>,
}

/// What [`Fleet::record_samples`] did with a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Applied {
    /// New samples: each became the host's latest in turn.
    pub(crate) applied: usize,
    /// Of those, samples too old for the current round (a resent backlog).
    pub(crate) late: usize,
    /// Samples already applied before (resent after a reconnect), skipped.
    pub(crate) duplicates: usize,
}

/// What an agent said in its Hello, checked.
#[derive(Debug, Clone)]
pub(crate) struct HostIdentity {
    pub(crate) host_id: HostId,
    pub(crate) deployment: DeploymentName,
    /// The host's cohort: fixed by its agent, or (`auto`) beta while a
    /// rollout of its deployment has it promoted and baseline otherwise.
    pub(crate) cohort: Cohort,
    /// The agent left the cohort to the coordinator (`--cohort auto`).
    pub(crate) auto: bool,
    pub(crate) app_version: String,
    pub(crate) agent_version: String,
    pub(crate) action_names: Vec<String>,
    pub(crate) interval: Duration,
    /// Random per agent process (0: unknown).
    pub(crate) session_id: u64,
    /// Free-form labels from the agent's config (region, rack, ...).
    pub(crate) labels: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Conn<Tx> {
    id: u64,
    tx: Tx,
}

#[derive(Debug)]
struct HostEntry<Tx> {
    identity: HostIdentity,
    conn: Option<Conn<Tx>>,
    last_seen: SystemTime,
    /// Monotonic time of the last message; `None` for hosts loaded from the store.
    last_seen_at: Option<Instant>,
    latest: Option<HostSample>,
    /// Samples received since the last evaluation round of the deployment.
    round: Option<HostRound>,
    /// Highest sequence number applied in the agent's current session.
    last_seq: Option<u64>,
}

impl<Tx> HostEntry<Tx> {
    fn is_stale(&self, now: Instant) -> bool {
        let limit = self.identity.interval * STALE_INTERVALS;
        self.last_seen_at
            .is_none_or(|seen| now.saturating_duration_since(seen) > limit)
    }
}

#[derive(Debug)]
struct CommandState {
    record: CommandRecord,
    /// `record.targets` as a set: membership is checked per host and per update.
    target_set: HashSet<String>,
    results: HashMap<String, ResultRecord>,
}

impl CommandState {
    fn new(record: CommandRecord) -> Self {
        CommandState {
            target_set: record.targets.iter().cloned().collect(),
            // Sized for every target's answer: grown from empty, the map was
            // rehashed 17 times under the fleet's lock during a 100,000-host
            // fan-out (4 % of the coordinator's CPU, issue 15).
            results: HashMap::with_capacity(record.targets.len()),
            record,
        }
    }

    /// Adds a target; returns true if it is new.
    fn add_target(&mut self, host: &str) -> bool {
        // Looked up first: a dispatch calls this for every connected beta
        // host, nearly all of them targets already, under the fleet's lock.
        if self.target_set.contains(host) {
            return false;
        }
        self.target_set.insert(host.to_owned());
        self.record.targets.push(host.to_owned());
        true
    }
}

#[derive(Debug)]
struct Inner<Tx> {
    hosts: HashMap<HostId, HostEntry<Tx>>,
    commands: HashMap<CommandId, CommandState>,
    /// The commands manual rollbacks made, by their idempotency key; an
    /// entry lives exactly as long as its command does.
    requests: HashMap<String, CommandId>,
    /// Every command's targets counted by their status, kept as targets and
    /// results come, so that a /metrics scrape does not walk them all under the lock.
    tally: HashMap<CommandStatus, u64>,
    /// Per deployment, the hosts its rollout has promoted: an `auto` host
    /// among them is in the beta cohort, every other `auto` host in the
    /// baseline (issue 12). Set by the rollout, never by an agent.
    promoted: HashMap<DeploymentName, HashSet<String>>,
    /// Connected hosts per deployment, kept as streams come and go: the
    /// judge asks ten times a second, and a pass over 100,000 hosts under
    /// this lock each time was 6 % of the coordinator (issue 15).
    connected: BTreeMap<DeploymentName, u32>,
    next_conn_id: u64,
}

impl<Tx> Default for Inner<Tx> {
    fn default() -> Self {
        Inner {
            hosts: HashMap::new(),
            commands: HashMap::new(),
            requests: HashMap::new(),
            tally: HashMap::new(),
            promoted: HashMap::new(),
            connected: BTreeMap::new(),
            next_conn_id: 0,
        }
    }
}

impl<Tx> Inner<Tx> {
    /// One connected host of `deployment` fewer.
    fn lose_connected(&mut self, deployment: &DeploymentName) {
        if let Some(count) = self.connected.get_mut(deployment) {
            *count -= 1;
            if *count == 0 {
                self.connected.remove(deployment);
            }
        }
    }

    /// The cohort of an `auto` host: beta while promoted.
    fn auto_cohort(&self, deployment: &DeploymentName, host_id: &str) -> Cohort {
        let promoted = self
            .promoted
            .get(deployment)
            .is_some_and(|hosts| hosts.contains(host_id));
        if promoted {
            Cohort::Beta
        } else {
            Cohort::Baseline
        }
    }

    /// Puts every `auto` host of `deployment` in the cohort its promotion
    /// says; a host that moves starts a fresh round (its samples so far
    /// belong to the other cohort).
    fn recohort(&mut self, deployment: &DeploymentName) {
        let Inner {
            hosts, promoted, ..
        } = self;
        let set = promoted.get(deployment);
        for entry in hosts.values_mut() {
            if !entry.identity.auto || &entry.identity.deployment != deployment {
                continue;
            }
            let cohort = if set.is_some_and(|s| s.contains(entry.identity.host_id.as_str())) {
                Cohort::Beta
            } else {
                Cohort::Baseline
            };
            if entry.identity.cohort != cohort {
                entry.identity.cohort = cohort;
                entry.round = None;
            }
        }
    }

    /// Takes a new command in, its targets counted as not answered yet.
    fn insert_command(&mut self, state: CommandState) {
        *self.tally.entry(CommandStatus::NoAnswer).or_default() += state.target_set.len() as u64;
        let command_id = CommandId::new(state.record.command_id.clone());
        if !state.record.request_id.is_empty() {
            self.requests
                .insert(state.record.request_id.clone(), command_id.clone());
        }
        self.commands.insert(command_id, state);
    }

    /// The retry of `command_id` on `host_id`: a command closed to that host
    /// that names it as its first (or retries a retry of it).
    fn retried_by(&self, command_id: &str, host_id: &str) -> Option<String> {
        let state = self.commands.get(command_id)?;
        let first = if state.record.retry_of.is_empty() {
            command_id
        } else {
            state.record.retry_of.as_str()
        };
        self.commands
            .values()
            .find(|c| {
                c.record.retry_of == first
                    && c.record.attempt == state.record.attempt + 1
                    && c.target_set.contains(host_id)
            })
            .map(|c| c.record.command_id.clone())
    }

    /// Whether `host_id` has had a catch-up of `decision`: a closed command
    /// to it, of the same deployment, issued no earlier. (Catch-ups are
    /// issued only for a deployment's newest decision, so one issued since
    /// `decision` repeats it.)
    fn caught_up(&self, host_id: &HostId, decision: &CommandRecord) -> bool {
        // A local run is not a catch-up: the host ran its own tripwire's
        // action, not the decision.
        self.commands.values().any(|c| {
            c.record.closed
                && !c.record.local
                && c.record.kind.is_rollback()
                && c.record.deployment == decision.deployment
                && c.record.issued_at_unix_ms >= decision.issued_at_unix_ms
                && c.target_set.contains(host_id.as_str())
        })
    }
}

/// Shared fleet state; `Tx` is a connected host's way to its stream.
#[derive(Debug)]
pub(crate) struct Fleet<Tx> {
    inner: Mutex<Inner<Tx>>,
}

/// One host as the control API shows it.
#[derive(Debug, Clone)]
pub(crate) struct AgentView {
    pub(crate) identity: HostIdentity,
    pub(crate) connected: bool,
    pub(crate) stale: bool,
    pub(crate) last_seen: SystemTime,
    pub(crate) latest: Option<HostSample>,
}

/// One (deployment, cohort) as the control API shows it.
#[derive(Debug, Clone)]
pub(crate) struct CohortView {
    pub(crate) cohort: Cohort,
    pub(crate) hosts_connected: u32,
    pub(crate) hosts_stale: u32,
    pub(crate) hosts_disconnected: u32,
    pub(crate) aggregate: CohortAggregate,
    pub(crate) versions: Vec<String>,
}

/// One deployment as the control API shows it.
#[derive(Debug, Clone)]
pub(crate) struct DeploymentView {
    pub(crate) deployment: DeploymentName,
    pub(crate) cohorts: Vec<CohortView>,
}

/// One command with a result for every target (`NoAnswer` where none came).
#[derive(Debug, Clone)]
pub(crate) struct CommandView {
    pub(crate) record: CommandRecord,
    pub(crate) results: Vec<ResultRecord>,
}

/// Why a command update from an agent was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpdateError {
    #[error("unknown command id `{0}`")]
    UnknownCommand(String),
    #[error("command `{0}` was not sent to this host")]
    NotATarget(String),
}

impl<Tx: Clone> Fleet<Tx> {
    /// Rebuilds the fleet from the store: hosts as disconnected, commands with their results.
    pub(crate) fn from_snapshot(snapshot: Snapshot) -> Self {
        let mut inner = Inner::default();
        for agent in snapshot.agents {
            let host_id = HostId::new(agent.host_id);
            inner.hosts.insert(
                host_id.clone(),
                HostEntry {
                    identity: HostIdentity {
                        host_id,
                        deployment: DeploymentName::new(agent.deployment),
                        cohort: agent.cohort,
                        auto: agent.auto,
                        app_version: agent.app_version,
                        agent_version: agent.agent_version,
                        action_names: agent.action_names,
                        interval: Duration::from_secs(1),
                        session_id: 0,
                        labels: agent.labels,
                    },
                    conn: None,
                    last_seen: crate::store::from_unix_ms(agent.last_seen_unix_ms),
                    last_seen_at: None,
                    latest: None,
                    round: None,
                    last_seq: None,
                },
            );
        }
        for record in snapshot.commands {
            inner.insert_command(CommandState::new(record));
        }
        for result in snapshot.results {
            if let Some(state) = inner.commands.get_mut(result.command_id.as_str()) {
                if state.target_set.contains(&result.host_id) {
                    let previous = state.results.get(&result.host_id).map(|r| r.status);
                    move_in_tally(
                        &mut inner.tally,
                        Some(previous.unwrap_or(CommandStatus::NoAnswer)),
                        result.status,
                    );
                }
                state.results.insert(result.host_id.clone(), result);
            }
        }
        Fleet {
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<Tx>> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a connected agent (see [`Connected`]).
    pub(crate) fn connect(
        &self,
        mut identity: HostIdentity,
        tx: Tx,
        now: SystemTime,
    ) -> Connected<Tx> {
        let mut inner = self.lock();
        if identity.auto {
            identity.cohort = inner.auto_cohort(&identity.deployment, identity.host_id.as_str());
        }
        inner.next_conn_id += 1;
        let conn_id = inner.next_conn_id;
        let host_id = identity.host_id.clone();
        let record = agent_record(&identity, now);
        let mut entry = HostEntry {
            identity,
            conn: Some(Conn { id: conn_id, tx }),
            last_seen: now,
            last_seen_at: Some(Instant::now()),
            latest: None,
            round: None,
            last_seq: None,
        };
        if let Some(old) = inner.hosts.get_mut(&host_id) {
            // Keep the newest sample (for dedupe of resent samples) and the
            // round's counts, if the host stays in the same place.
            if old.identity.deployment == entry.identity.deployment
                && old.identity.cohort == entry.identity.cohort
            {
                entry.latest = old.latest.take();
                entry.round = old.round.take();
                // Same agent process: its resent samples must not count twice.
                if old.identity.session_id != 0
                    && old.identity.session_id == entry.identity.session_id
                {
                    entry.last_seq = old.last_seq;
                }
            }
        }
        *inner
            .connected
            .entry(entry.identity.deployment.clone())
            .or_default() += 1;
        let replaced = match inner.hosts.insert(host_id.clone(), entry) {
            Some(HostEntry {
                identity,
                conn: Some(conn),
                ..
            }) => {
                inner.lose_connected(&identity.deployment);
                Some(conn.tx)
            }
            _ => None,
        };
        let (pending, updated) = pending_for(&mut inner, &host_id, now);
        Connected {
            conn_id,
            record,
            pending,
            updated,
            replaced,
        }
    }

    /// Marks the host disconnected if `conn_id` is still its connection; returns the record to store.
    pub(crate) fn disconnect(
        &self,
        host_id: &HostId,
        conn_id: u64,
        now: SystemTime,
    ) -> Option<AgentRecord> {
        let mut inner = self.lock();
        let entry = inner.hosts.get_mut(host_id)?;
        if entry.conn.as_ref().map(|c| c.id) != Some(conn_id) {
            return None;
        }
        entry.conn = None;
        entry.last_seen = now;
        let record = agent_record(&entry.identity, now);
        let deployment = entry.identity.deployment.clone();
        inner.lose_connected(&deployment);
        Some(record)
    }

    /// Applies a batch of samples (sequence numbers from `first_seq`) in
    /// order: each one past the session's highest applied sequence number
    /// becomes the latest; the others (resent after a reconnect) are skipped.
    /// Sequence numbers, not agent clocks, decide, so a host with a wrong
    /// clock is never silenced.
    ///
    /// An applied sample adds to the current round unless the interval it
    /// covers started more than `round_window` before the batch's newest
    /// sample (by the agent's own clock, so skew between hosts does not
    /// matter): the backlog an agent resends after being cut off belongs to
    /// rounds already judged, and would make this one compare the beta's
    /// last minutes with the baseline's last seconds. (The round still gets
    /// the host's live samples until it ends, so after a reconnect it may
    /// hold up to two windows of that host.)
    pub(crate) fn record_samples(
        &self,
        host_id: &HostId,
        conn_id: u64,
        first_seq: u64,
        samples: Vec<HostSample>,
        round_window: Duration,
        now: SystemTime,
    ) -> Option<Applied> {
        let mut inner = self.lock();
        let entry = inner.hosts.get_mut(host_id)?;
        if entry.conn.as_ref().map(|c| c.id) != Some(conn_id) {
            return None;
        }
        entry.last_seen = now;
        entry.last_seen_at = Some(Instant::now());
        let newest = samples.iter().map(|s| s.collected_at).max();
        let mut applied = Applied::default();
        for (idx, sample) in samples.into_iter().enumerate() {
            let seq = first_seq.saturating_add(idx as u64);
            if entry.last_seq.is_some_and(|last| seq <= last) {
                applied.duplicates += 1;
                continue;
            }
            entry.last_seq = Some(seq);
            applied.applied += 1;
            // Kept when the interval it covers ends within the window of
            // the newest sample (which is always kept).
            let late = newest
                .and_then(|n| n.duration_since(sample.collected_at).ok())
                .is_some_and(|age| {
                    age.saturating_add(sample.interval) > round_window.max(sample.interval)
                });
            if late {
                applied.late += 1;
            } else {
                let identity = &entry.identity;
                entry
                    .round
                    .get_or_insert_with(|| {
                        HostRound::new(identity.host_id.clone(), identity.cohort)
                    })
                    .add(&sample);
            }
            entry.latest = Some(sample);
        }
        Some(applied)
    }

    /// Ends the current round of `deployment`: takes every host's samples
    /// since the last round. Also returns the beta hosts (by their own
    /// config: not a rollout's) and all hosts of the deployment seen within
    /// [`TARGET_WINDOW`] (for the blast radius).
    pub(crate) fn take_round(
        &self,
        deployment: &DeploymentName,
        now: SystemTime,
    ) -> (Vec<HostRound>, u32, u32) {
        let mut inner = self.lock();
        let mut rounds = Vec::new();
        let (mut beta_seen, mut hosts_seen) = (0u32, 0u32);
        for entry in inner.hosts.values_mut() {
            if &entry.identity.deployment != deployment {
                continue;
            }
            if entry.conn.is_some() || within_window(entry.last_seen, now) {
                hosts_seen += 1;
                // The blast radius bounds hosts beta by their own config; a
                // rollout's promoted (`auto`) hosts are bounded by its phases.
                if entry.identity.cohort == Cohort::Beta && !entry.identity.auto {
                    beta_seen += 1;
                }
            }
            if let Some(round) = entry.round.take() {
                rounds.push(round);
            }
        }
        // Sorted (for a round that reads the same whatever the map's order)
        // after the lock is released: at 100,000 hosts the sort is most of
        // the round's time, and every stream waits on this lock (issue 15).
        drop(inner);
        rounds.sort_unstable_by(|a, b| a.host_id.cmp(&b.host_id));
        (rounds, beta_seen, hosts_seen)
    }

    /// Counts per-host command results by status (targets without an answer are `no_answer`).
    pub(crate) fn command_results_by_status(&self) -> Vec<(&'static str, u64)> {
        let inner = self.lock();
        [
            CommandStatus::Accepted,
            CommandStatus::Running,
            CommandStatus::Succeeded,
            CommandStatus::Failed,
            CommandStatus::Rejected,
            CommandStatus::NoAnswer,
        ]
        .into_iter()
        .map(|status| {
            (
                status.as_str(),
                inner.tally.get(&status).copied().unwrap_or(0),
            )
        })
        .collect()
    }

    /// Returns every deployment with a connected host.
    pub(crate) fn connected_deployments(&self) -> Vec<DeploymentName> {
        // Called by the judge ten times a second: no pass over the hosts.
        self.lock().connected.keys().cloned().collect()
    }

    /// Records a new app version; returns the record to store.
    pub(crate) fn update_version(
        &self,
        host_id: &HostId,
        conn_id: u64,
        app_version: String,
        now: SystemTime,
    ) -> Option<AgentRecord> {
        let mut inner = self.lock();
        let entry = inner.hosts.get_mut(host_id)?;
        if entry.conn.as_ref().map(|c| c.id) != Some(conn_id) {
            return None;
        }
        entry.identity.app_version = app_version;
        entry.last_seen = now;
        entry.last_seen_at = Some(Instant::now());
        Some(agent_record(&entry.identity, now))
    }

    /// Applies a command update from `host_id`; returns the result to store, or
    /// `None` when it changes nothing (a repeat, or a step back from a final state).
    pub(crate) fn command_update(
        &self,
        host_id: &HostId,
        mut result: ResultRecord,
    ) -> Result<Option<ResultRecord>, UpdateError> {
        let mut inner = self.lock();
        let state = inner
            .commands
            .get_mut(result.command_id.as_str())
            .ok_or_else(|| UpdateError::UnknownCommand(result.command_id.clone()))?;
        if !state.target_set.contains(host_id.as_str()) {
            return Err(UpdateError::NotATarget(result.command_id.clone()));
        }
        result.host_id = host_id.as_str().to_owned();
        let previous = state.results.get(host_id.as_str());
        if let Some(previous) = previous {
            if previous.status.is_final()
                || previous.status == result.status && previous.exit_code == result.exit_code
            {
                return Ok(None);
            }
        }
        let from = previous.map_or(CommandStatus::NoAnswer, |r| r.status);
        state.results.insert(result.host_id.clone(), result.clone());
        move_in_tally(&mut inner.tally, Some(from), result.status);
        Ok(Some(result))
    }

    /// Returns the beta hosts of `deployment` seen within [`TARGET_WINDOW`], and
    /// whether the deployment is known at all.
    pub(crate) fn beta_targets(
        &self,
        deployment: &DeploymentName,
        now: SystemTime,
    ) -> (Vec<String>, bool) {
        let inner = self.lock();
        let mut known = false;
        let mut targets: Vec<String> = inner
            .hosts
            .values()
            .filter(|h| &h.identity.deployment == deployment)
            .inspect(|_| known = true)
            .filter(|h| h.identity.cohort == Cohort::Beta)
            .filter(|h| h.conn.is_some() || within_window(h.last_seen, now))
            .map(|h| h.identity.host_id.as_str().to_owned())
            .collect();
        targets.sort();
        (targets, known)
    }

    /// Takes a committed command into the fleet and returns the streams of
    /// every connected beta host of its deployment that it targets (see
    /// [`Dispatched`]); the caller sends on them, never under this lock.
    pub(crate) fn dispatch(&self, record: CommandRecord) -> Dispatched<Tx> {
        let mut state = CommandState::new(record);
        let (senders, updated) = {
            let mut inner = self.lock();
            let mut senders = Vec::new();
            let mut changed = false;
            for entry in inner.hosts.values() {
                // A closed command goes to its targets, whatever their
                // cohort now (a promote makes its targets beta; a catch-up
                // or a retry is for a host that was beta); an open one to
                // every beta host.
                if entry.identity.deployment.as_str() != state.record.deployment
                    || (!state.record.closed && entry.identity.cohort != Cohort::Beta)
                {
                    continue;
                }
                let Some(conn) = &entry.conn else { continue };
                if state.record.closed {
                    if !state.target_set.contains(entry.identity.host_id.as_str()) {
                        continue;
                    }
                } else {
                    changed |= state.add_target(entry.identity.host_id.as_str());
                }
                senders.push(conn.tx.clone());
            }
            let updated = changed.then(|| state.record.clone());
            inner.insert_command(state);
            (senders, updated)
        };
        Dispatched { senders, updated }
    }

    /// Returns command `command_id` if it is a decision (not a catch-up),
    /// `host_id` is one of its targets, no decision for its deployment came
    /// after it, and the host has had no catch-up of it yet: the command a
    /// catch-up repeats. A catch-up is never repeated: a host whose clock
    /// runs past every deadline would reject each one as expired and get
    /// the next, without end (issue 10).
    pub(crate) fn newest_command_for(
        &self,
        host_id: &HostId,
        command_id: &str,
    ) -> Option<CommandRecord> {
        let inner = self.lock();
        let state = inner.commands.get(command_id)?;
        if state.record.closed
            || !state.record.kind.is_rollback()
            || !state.target_set.contains(host_id.as_str())
        {
            return None;
        }
        let newer = inner.commands.values().any(|other| {
            !other.record.closed
                && other.record.deployment == state.record.deployment
                && other.record.issued_at_unix_ms > state.record.issued_at_unix_ms
        });
        (!newer && !inner.caught_up(host_id, &state.record)).then(|| state.record.clone())
    }

    /// Returns the decision a beta host must still catch up with on connect:
    /// the newest decision of its deployment, if its deadline has passed,
    /// the host was never one of its targets (it was away longer than
    /// [`TARGET_WINDOW`] when it was decided, or is new), and no catch-up of
    /// it was issued to the host yet. Hosts that were targets get the
    /// command itself on connect and answer it (or reject it as expired).
    pub(crate) fn missed_decision(
        &self,
        host_id: &HostId,
        now: SystemTime,
    ) -> Option<CommandRecord> {
        let inner = self.lock();
        let entry = inner.hosts.get(host_id)?;
        if entry.identity.cohort != Cohort::Beta {
            return None;
        }
        let deployment = entry.identity.deployment.as_str();
        let newest = inner
            .commands
            .values()
            .filter(|c| !c.record.closed && c.record.deployment == deployment)
            .max_by_key(|c| c.record.issued_at_unix_ms)?;
        if newest.record.not_after_unix_ms >= unix_ms(now)
            || newest.target_set.contains(host_id.as_str())
        {
            return None;
        }
        (!inner.caught_up(host_id, &newest.record)).then(|| newest.record.clone())
    }

    /// Takes in a local run a host reported, with its result: `false`
    /// (and nothing changes) when `record`'s id is known already, so a
    /// repeated report is recorded once. Never sent to anyone.
    pub(crate) fn record_local(&self, record: CommandRecord, result: ResultRecord) -> bool {
        let mut inner = self.lock();
        if inner.commands.contains_key(record.command_id.as_str()) {
            return false;
        }
        let mut state = CommandState::new(record);
        let status = result.status;
        state.results.insert(result.host_id.clone(), result);
        inner.insert_command(state);
        move_in_tally(&mut inner.tally, Some(CommandStatus::NoAnswer), status);
        true
    }

    /// Forgets a local run whose record the store refused, so that the
    /// host's next report of it is taken in again.
    pub(crate) fn forget_local(&self, command_id: &str) {
        let mut inner = self.lock();
        let is_local = inner
            .commands
            .get(command_id)
            .is_some_and(|c| c.record.local);
        if !is_local {
            return;
        }
        if let Some(state) = inner.commands.remove(command_id) {
            for result in state.results.values() {
                if let Some(n) = inner.tally.get_mut(&result.status) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }

    /// Returns a stored command's record.
    pub(crate) fn command_record(&self, command_id: &str) -> Option<CommandRecord> {
        self.lock()
            .commands
            .get(command_id)
            .map(|c| c.record.clone())
    }

    /// Sets the hosts `deployment`'s rollout has promoted (none: `hosts`
    /// empty) and moves its `auto` hosts to the cohort that says. Called by
    /// the rollout as it promotes, ends, and after a restart.
    pub(crate) fn set_promoted(&self, deployment: &DeploymentName, hosts: &[String]) {
        let mut inner = self.lock();
        if hosts.is_empty() {
            inner.promoted.remove(deployment);
        } else {
            inner
                .promoted
                .insert(deployment.clone(), hosts.iter().cloned().collect());
        }
        inner.recohort(deployment);
    }

    /// The newest decision to roll `deployment` back (an open rollback:
    /// the policy's, an operator's or a rollout's) issued at or after
    /// `since_unix_ms`.
    pub(crate) fn rollback_since(
        &self,
        deployment: &DeploymentName,
        since_unix_ms: u64,
    ) -> Option<CommandRecord> {
        let inner = self.lock();
        inner
            .commands
            .values()
            .filter(|c| {
                !c.record.closed
                    && c.record.kind.is_rollback()
                    && c.record.deployment == deployment.as_str()
                    && c.record.issued_at_unix_ms >= since_unix_ms
            })
            .max_by_key(|c| c.record.issued_at_unix_ms)
            .map(|c| c.record.clone())
    }

    /// The newest `n` commands of `deployment` (rollbacks, promotes and
    /// local runs), newest first, each with a result per target.
    pub(crate) fn recent_commands(
        &self,
        deployment: &DeploymentName,
        n: usize,
    ) -> Vec<CommandView> {
        let ids: Vec<String> = {
            let inner = self.lock();
            let mut states: Vec<&CommandState> = inner
                .commands
                .values()
                .filter(|c| c.record.deployment == deployment.as_str())
                .collect();
            states.sort_by_key(|c| std::cmp::Reverse(c.record.issued_at_unix_ms));
            states
                .into_iter()
                .take(n)
                .map(|c| c.record.command_id.clone())
                .collect()
        };
        ids.iter().filter_map(|id| self.command(id)).collect()
    }

    /// The retry of `command_id` on `host_id`, if one was made.
    pub(crate) fn retried_by(&self, command_id: &str, host_id: &str) -> Option<String> {
        self.lock().retried_by(command_id, host_id)
    }

    /// Every (command, host) whose run failed and has no retry yet, with
    /// retries left: after a restart, their retries are scheduled again.
    pub(crate) fn failed_unretried(&self, max_attempt: u32) -> Vec<(CommandRecord, String)> {
        let inner = self.lock();
        let mut failed = Vec::new();
        for state in inner.commands.values() {
            // A local run is the host's own; the coordinator never retries it.
            if state.record.attempt >= max_attempt
                || state.record.local
                || !state.record.kind.is_rollback()
            {
                continue;
            }
            for (host, result) in &state.results {
                if result.status == CommandStatus::Failed
                    && inner.retried_by(&state.record.command_id, host).is_none()
                {
                    failed.push((state.record.clone(), host.clone()));
                }
            }
        }
        failed
    }

    /// Hosts of `deployment` whose newest command failed with no retry
    /// left (its attempt is `max_attempt`): they need a person.
    pub(crate) fn needs_attention(&self, deployment: &str, max_attempt: u32) -> Vec<String> {
        let inner = self.lock();
        let mut hosts: Vec<String> = Vec::new();
        for state in inner.commands.values() {
            if state.record.deployment != deployment
                || state.record.attempt < max_attempt
                || state.record.local
                || !state.record.kind.is_rollback()
            {
                continue;
            }
            for (host, result) in &state.results {
                let newer = inner.commands.values().any(|other| {
                    other.record.deployment == deployment
                        && other.record.kind.is_rollback()
                        && other.record.issued_at_unix_ms > state.record.issued_at_unix_ms
                        && other.target_set.contains(host)
                });
                if result.status == CommandStatus::Failed && !newer {
                    hosts.push(host.clone());
                }
            }
        }
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Returns the command the manual rollback with idempotency key
    /// `request_id` made, while the command is kept.
    pub(crate) fn command_for_request(&self, request_id: &str) -> Option<CommandRecord> {
        let inner = self.lock();
        let command_id = inner.requests.get(request_id)?;
        inner.commands.get(command_id).map(|c| c.record.clone())
    }

    /// Returns a command with one result per target.
    pub(crate) fn command(&self, command_id: &str) -> Option<CommandView> {
        let inner = self.lock();
        let state = inner.commands.get(command_id)?;
        let results = state
            .record
            .targets
            .iter()
            .map(|host| {
                state
                    .results
                    .get(host)
                    .cloned()
                    .unwrap_or_else(|| ResultRecord {
                        command_id: state.record.command_id.clone(),
                        host_id: host.clone(),
                        status: CommandStatus::NoAnswer,
                        exit_code: None,
                        reason: String::new(),
                        output_tail: String::new(),
                        updated_at_unix_ms: 0,
                        started_at_unix_ms: None,
                        duration_ms: None,
                    })
            })
            .collect();
        Some(CommandView {
            record: state.record.clone(),
            results,
        })
    }

    /// Returns every host, sorted by deployment, cohort and host id.
    pub(crate) fn agents(&self, deployment: Option<&DeploymentName>) -> Vec<AgentView> {
        let now = Instant::now();
        let inner = self.lock();
        let mut agents: Vec<AgentView> = inner
            .hosts
            .values()
            .filter(|h| deployment.is_none_or(|d| &h.identity.deployment == d))
            .map(|h| AgentView {
                identity: h.identity.clone(),
                connected: h.conn.is_some(),
                stale: h.conn.is_some() && h.is_stale(now),
                last_seen: h.last_seen,
                latest: h.latest.clone(),
            })
            .collect();
        agents.sort_by(|a, b| {
            (
                &a.identity.deployment,
                a.identity.cohort,
                &a.identity.host_id,
            )
                .cmp(&(
                    &b.identity.deployment,
                    b.identity.cohort,
                    &b.identity.host_id,
                ))
        });
        agents
    }

    /// Forgets every host disconnected for longer than `retention`, calling
    /// `forget` for each under the fleet lock, so that a host connecting
    /// meanwhile is never the one forgotten. Returns how many went. Commands
    /// keep their targets: a forgotten target that returns still gets them.
    pub(crate) fn forget_gone(
        &self,
        now: SystemTime,
        retention: Duration,
        mut forget: impl FnMut(&HostId),
    ) -> usize {
        let mut inner = self.lock();
        let before = inner.hosts.len();
        inner.hosts.retain(|host_id, entry| {
            let gone = entry.conn.is_none()
                && now
                    .duration_since(entry.last_seen)
                    .is_ok_and(|away| away > retention);
            if gone {
                forget(host_id);
            }
            !gone
        });
        before - inner.hosts.len()
    }

    /// Forgets commands issued longer than `retention` ago, with their
    /// results; returns their ids. A deployment's newest decision stays
    /// whatever its age (it may still be in force), and so do the catch-ups
    /// issued since it: they are what tells that a host has caught up.
    pub(crate) fn forget_old_commands(
        &self,
        now: SystemTime,
        retention: Duration,
    ) -> Vec<CommandId> {
        let Some(cutoff) = now.checked_sub(retention).map(unix_ms) else {
            return Vec::new();
        };
        let mut inner = self.lock();
        // Per deployment, when its newest decision was issued.
        let mut newest: HashMap<&str, u64> = HashMap::new();
        for state in inner.commands.values().filter(|c| !c.record.closed) {
            let at = newest.entry(state.record.deployment.as_str()).or_default();
            *at = (*at).max(state.record.issued_at_unix_ms);
        }
        let old: Vec<CommandId> = inner
            .commands
            .iter()
            .filter(|(_, c)| {
                let issued = c.record.issued_at_unix_ms;
                let in_force_since = newest.get(c.record.deployment.as_str()).copied();
                issued < cutoff && in_force_since.is_none_or(|since| issued < since)
            })
            .map(|(id, _)| id.clone())
            .collect();
        let Inner {
            commands,
            requests,
            tally,
            ..
        } = &mut *inner;
        for id in &old {
            let Some(state) = commands.remove(id) else {
                continue;
            };
            if requests.get(&state.record.request_id) == Some(id) {
                requests.remove(&state.record.request_id);
            }
            for target in &state.target_set {
                let status = state
                    .results
                    .get(target)
                    .map_or(CommandStatus::NoAnswer, |r| r.status);
                if let Some(n) = tally.get_mut(&status) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        old
    }

    /// Marks every connected host seen at `now` and returns their records,
    /// so that the store's `last_seen` stays fresh for hosts whose stream
    /// outlives a crash (a disconnect is not always written).
    pub(crate) fn touch_connected(&self, now: SystemTime) -> Vec<AgentRecord> {
        let mut inner = self.lock();
        inner
            .hosts
            .values_mut()
            .filter(|h| h.conn.is_some())
            .map(|h| {
                h.last_seen = now;
                agent_record(&h.identity, now)
            })
            .collect()
    }

    /// Returns, per deployment any host announced, its hosts ever seen and connected now.
    pub(crate) fn host_counts(&self) -> BTreeMap<DeploymentName, (u32, u32)> {
        let inner = self.lock();
        let mut counts: BTreeMap<DeploymentName, (u32, u32)> = BTreeMap::new();
        for entry in inner.hosts.values() {
            let (seen, connected) = counts.entry(entry.identity.deployment.clone()).or_default();
            *seen += 1;
            *connected += u32::from(entry.conn.is_some());
        }
        counts
    }

    /// Returns per-deployment, per-cohort status; aggregates cover connected, fresh hosts.
    pub(crate) fn status(&self, deployment: Option<&DeploymentName>) -> Vec<DeploymentView> {
        let now = Instant::now();
        let inner = self.lock();
        let mut groups: BTreeMap<(&DeploymentName, Cohort), Vec<&HostEntry<Tx>>> = BTreeMap::new();
        for entry in inner.hosts.values() {
            if deployment.is_some_and(|d| &entry.identity.deployment != d) {
                continue;
            }
            groups
                .entry((&entry.identity.deployment, entry.identity.cohort))
                .or_default()
                .push(entry);
        }
        let mut views: Vec<DeploymentView> = Vec::new();
        for ((name, cohort), entries) in groups {
            let fresh: Vec<&HostEntry<Tx>> = entries
                .iter()
                .copied()
                .filter(|h| h.conn.is_some() && !h.is_stale(now))
                .collect();
            let cohort_view = CohortView {
                cohort,
                hosts_connected: count(fresh.len()),
                hosts_stale: count(
                    entries
                        .iter()
                        .filter(|h| h.conn.is_some() && h.is_stale(now))
                        .count(),
                ),
                hosts_disconnected: count(entries.iter().filter(|h| h.conn.is_none()).count()),
                aggregate: CohortAggregate::from_samples(
                    fresh.iter().filter_map(|h| h.latest.as_ref()),
                ),
                versions: version_counts(fresh.iter().map(|h| h.identity.app_version.as_str())),
            };
            match views.last_mut() {
                Some(view) if &view.deployment == name => view.cohorts.push(cohort_view),
                _ => views.push(DeploymentView {
                    deployment: name.clone(),
                    cohorts: vec![cohort_view],
                }),
            }
        }
        views
    }
}

/// Moves one target from `from` (its previous status) to `to` in the tally.
fn move_in_tally(
    tally: &mut HashMap<CommandStatus, u64>,
    from: Option<CommandStatus>,
    to: CommandStatus,
) {
    if let Some(from) = from {
        if let Some(n) = tally.get_mut(&from) {
            *n = n.saturating_sub(1);
        }
    }
    *tally.entry(to).or_default() += 1;
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn within_window(last_seen: SystemTime, now: SystemTime) -> bool {
    now.duration_since(last_seen)
        .map(|age| age <= TARGET_WINDOW)
        .unwrap_or(true)
}

fn agent_record(identity: &HostIdentity, now: SystemTime) -> AgentRecord {
    AgentRecord {
        host_id: identity.host_id.as_str().to_owned(),
        deployment: identity.deployment.as_str().to_owned(),
        cohort: identity.cohort,
        auto: identity.auto,
        app_version: identity.app_version.clone(),
        agent_version: identity.agent_version.clone(),
        action_names: identity.action_names.clone(),
        last_seen_unix_ms: unix_ms(now),
        labels: identity.labels.clone(),
    }
}

/// Commands the host must get on connect: live commands of its deployment,
/// if it is beta, that it has not finished. A beta host that was not a target
/// becomes one (it joined before `not_after`).
fn pending_for<Tx>(
    inner: &mut Inner<Tx>,
    host_id: &HostId,
    now: SystemTime,
) -> (Vec<CommandRecord>, Vec<CommandRecord>) {
    let Some(entry) = inner.hosts.get(host_id) else {
        return (Vec::new(), Vec::new());
    };
    // A host that is not beta now still gets what it is a target of (a
    // promoted host rolled back while it was away, then put back in the
    // baseline), but joins nothing new.
    let beta = entry.identity.cohort == Cohort::Beta;
    let deployment = entry.identity.deployment.as_str().to_owned();
    let now_ms = unix_ms(now);
    let mut pending = Vec::new();
    let mut updated = Vec::new();
    let Inner {
        commands, tally, ..
    } = inner;
    for state in commands.values_mut() {
        // A local run is never sent, to its host or any other.
        if state.record.deployment != deployment || state.record.local {
            continue;
        }
        if state
            .results
            .get(host_id.as_str())
            .is_some_and(|r| r.status.is_final())
        {
            continue;
        }
        let is_target = state.target_set.contains(host_id.as_str());
        // A target without a final result gets the command again even after
        // not_after: the agent answers from its journal or rejects it as
        // expired, so the result is never left open. Others join only live commands.
        if !is_target && (!beta || state.record.closed || state.record.not_after_unix_ms < now_ms) {
            continue;
        }
        if !is_target {
            state.add_target(host_id.as_str());
            move_in_tally(tally, None, CommandStatus::NoAnswer);
            updated.push(state.record.clone());
        }
        pending.push(state.record.clone());
    }
    pending.sort_by_key(|r| r.issued_at_unix_ms);
    (pending, updated)
}

#[cfg(test)]
mod tests;
