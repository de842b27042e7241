//! The embedded store (redb) under the data dir: agents seen, commands and
//! their per-host results, and the audit history.
//!
//! redb is pure Rust (no C toolchain, no SQL layer we would not use), gives
//! ACID transactions with an fsync per commit, and lets readers run beside the
//! single writer. All writes go through one writer thread that group-commits:
//! it takes every write queued while the previous commit was syncing and
//! applies them in one transaction, so 10,000 agents connecting cost a handful
//! of fsyncs, not 10,000. A caller that needs durability (a rollback decision)
//! waits for the commit of its batch, which is made at once; others only
//! queue, and their commits are paced (at most one every
//! [`QUEUED_COMMIT_EVERY`]) so that a storm of results is a few dozen
//! commits, not thousands.
//!
//! Values are JSON: the records are small and readable with generic tools.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use rollguard_common::policy::{Decision, Evaluation, JudgeState};
pub(crate) use rollguard_common::time::{from_unix_ms, unix_ms};
use rollguard_common::{Cohort, CommandStatus};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::error::{chain, Error, Result};

mod rollout;
pub(crate) use rollout::{PhaseRecord, RolloutRecord, RolloutState};

const AGENTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("agents");
const COMMANDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("commands");
/// Key: `command_id/host_id`.
const RESULTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("results");
/// Key: sequence number, in commit order.
const AUDIT: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("audit");
/// Key: (deployment, round sequence number).
const ROUNDS: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("rounds");
/// Key: deployment.
const JUDGE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("judge_state");
/// Key: (deployment, rollout number).
const ROLLOUTS: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("rollouts");

/// Queued writes before producers wait; results and decisions wait, agent
/// records are dropped when full (the next connect rewrites them).
const WRITE_QUEUE: usize = 8192;
/// Most writes in one transaction.
const MAX_BATCH: usize = 4096;
/// Least time between the starts of two commits that nobody waits for:
/// writes queued meanwhile wait and go into one transaction. Without it, a
/// fan-out's 100,000 results were 1,500 commits a second, each with its
/// fsync and its rewritten tree pages: 18 % of the coordinator's CPU during
/// the fan-out (issue 15). A commit someone waits for is never held back.
const QUEUED_COMMIT_EVERY: Duration = Duration::from_millis(50);
/// While the store cannot commit, the writer reopens it this often.
const REOPEN_EVERY: Duration = Duration::from_secs(2);
/// Queued writes (not waited for) kept for after a reopen; past this the
/// oldest are dropped, counted as store errors.
const MAX_HELD_WRITES: usize = 65_536;

/// A host as last seen, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AgentRecord {
    pub(crate) host_id: String,
    pub(crate) deployment: String,
    pub(crate) cohort: Cohort,
    /// The coordinator decides the cohort (`--cohort auto`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) auto: bool,
    pub(crate) app_version: String,
    pub(crate) agent_version: String,
    pub(crate) action_names: Vec<String>,
    pub(crate) last_seen_unix_ms: u64,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
}

/// A command decision, as stored before it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CommandRecord {
    pub(crate) command_id: String,
    pub(crate) deployment: String,
    pub(crate) action: String,
    pub(crate) reason: String,
    pub(crate) actor: String,
    pub(crate) issued_at_unix_ms: u64,
    pub(crate) not_after_unix_ms: u64,
    /// Beta hosts addressed, at decision time and those that joined before `not_after`.
    pub(crate) targets: Vec<String>,
    /// W3C trace context of the decision.
    pub(crate) trace_context: Vec<(String, String)>,
    /// Only `targets` get it; no host joins late (a catch-up for one host).
    #[serde(default)]
    pub(crate) closed: bool,
    /// The idempotency key of the manual rollback that made it; empty for
    /// none. Kept with the command, so a retry finds it also after a
    /// restart, and forgotten with it (`command_retention`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) request_id: String,
    /// The first command of the chain this one retries on its one target
    /// (a failed or interrupted run); empty for none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) retry_of: String,
    /// Which retry this is: 0 for an original (or a catch-up).
    #[serde(default)]
    pub(crate) attempt: u32,
    /// Run by its one target on its own (its local tripwire, issue 11)
    /// while the coordinator was unreachable, and reported afterwards: a
    /// record of what happened, never sent, retried or caught up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) local: bool,
    /// A rollback (the default) or a rollout's promote.
    #[serde(default, skip_serializing_if = "CommandKind::is_rollback")]
    pub(crate) kind: CommandKind,
    /// The version a promote installs (checked by
    /// `ids::validate_version` before it is stored); empty for a rollback.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) version: String,
}

/// What a command does on its targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CommandKind {
    /// Puts the host back on the baseline: decided by the policy, an
    /// operator or a rollout, caught up and retried.
    #[default]
    Rollback,
    /// Installs a rollout's version: run once, never retried or caught
    /// up (a failed promote rolls the rollout back instead).
    Promote,
}

impl CommandKind {
    pub(crate) fn is_rollback(&self) -> bool {
        *self == CommandKind::Rollback
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CommandKind::Rollback => "rollback",
            CommandKind::Promote => "promote",
        }
    }
}

/// The latest state of one command on one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ResultRecord {
    pub(crate) command_id: String,
    pub(crate) host_id: String,
    pub(crate) status: CommandStatus,
    pub(crate) exit_code: Option<i32>,
    pub(crate) reason: String,
    pub(crate) output_tail: String,
    pub(crate) updated_at_unix_ms: u64,
    /// When the agent started the action, and how long it ran (agent clock).
    #[serde(default)]
    pub(crate) started_at_unix_ms: Option<u64>,
    #[serde(default)]
    pub(crate) duration_ms: Option<u64>,
}

/// One audit entry: a call that changed something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AuditRecord {
    pub(crate) time_unix_ms: u64,
    pub(crate) deployment: String,
    pub(crate) action: String,
    pub(crate) reason: String,
    pub(crate) command_id: String,
    pub(crate) actor: String,
    pub(crate) detail: String,
}

/// One evaluation round of one deployment, as stored: the verdict with every
/// figure and baseline value it used, and what it decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RoundRecord {
    pub(crate) deployment: String,
    pub(crate) seq: u64,
    pub(crate) at_unix_ms: u64,
    pub(crate) evaluation: Evaluation,
    /// The count and arming after this round.
    pub(crate) state: JudgeState,
    pub(crate) consecutive_failures: u32,
    pub(crate) dry_run: bool,
    pub(crate) decision: Decision,
    /// The rollback command the decision created, if any.
    pub(crate) command_id: String,
}

/// Everything read back at start.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) agents: Vec<AgentRecord>,
    pub(crate) commands: Vec<CommandRecord>,
    pub(crate) results: Vec<ResultRecord>,
    pub(crate) judge_states: Vec<(String, JudgeState)>,
    /// The newest round of each deployment.
    pub(crate) latest_rounds: Vec<RoundRecord>,
    /// The newest rollout of each deployment.
    pub(crate) rollouts: Vec<RolloutRecord>,
}

/// One write.
#[derive(Debug)]
pub(crate) enum Write {
    Agent(AgentRecord),
    /// Deletes a host's record (gone past the retention).
    ForgetAgent(String),
    /// Deletes a command and its per-host results (past the retention).
    ForgetCommand(String),
    Command(CommandRecord),
    Result(ResultRecord),
    Audit(AuditRecord),
    Round(Box<RoundRecord>),
    Judge(String, JudgeState),
    /// Deletes a deployment's rounds with a sequence number below this one.
    PruneRounds(String, u64),
    Rollout(Box<RolloutRecord>),
}

#[derive(Debug)]
struct Batch {
    writes: Vec<Write>,
    done_tx: Option<oneshot::Sender<Result<()>>>,
}

/// Handle to the store; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    db: Slot,
    write_tx: mpsc::Sender<Batch>,
    path: PathBuf,
    /// The writer thread, woken (unparked) when a batch it must not pace arrives.
    writer: std::thread::Thread,
}

/// The open database, shared by readers and the writer. Empty while the
/// writer reopens it after an I/O error (redb refuses every transaction
/// after one until it is reopened).
#[derive(Debug, Clone)]
struct Slot(Arc<RwLock<Option<Arc<Database>>>>);

impl Slot {
    fn get(&self) -> Result<Arc<Database>> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| Error::Store {
                context: "the store is being reopened after an I/O error".to_owned(),
                source: None,
            })
    }

    fn set(&self, db: Option<Arc<Database>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = db;
    }
}

/// Opens the database file and makes sure every table exists.
fn open_db(path: &Path) -> Result<Database> {
    let db = Database::create(path)?;
    // Create the tables up front so readers never see them missing.
    let txn = db.begin_write()?;
    {
        txn.open_table(AGENTS)?;
        txn.open_table(COMMANDS)?;
        txn.open_table(RESULTS)?;
        txn.open_table(AUDIT)?;
        txn.open_table(ROUNDS)?;
        txn.open_table(JUDGE)?;
        txn.open_table(ROLLOUTS)?;
    }
    txn.commit()?;
    Ok(db)
}

impl Store {
    /// Opens (or creates) the store in `data_dir` and starts its writer thread.
    ///
    /// Blocking: call before serving, or from `spawn_blocking`.
    pub(crate) fn open(
        data_dir: &Path,
        counters: Arc<crate::counters::Counters>,
    ) -> Result<(Store, std::thread::JoinHandle<()>)> {
        Store::open_paced(data_dir, counters, QUEUED_COMMIT_EVERY)
    }

    /// [`Store::open`], with commits nobody waits for at most every `pace`.
    pub(crate) fn open_paced(
        data_dir: &Path,
        counters: Arc<crate::counters::Counters>,
        pace: Duration,
    ) -> Result<(Store, std::thread::JoinHandle<()>)> {
        std::fs::create_dir_all(data_dir).map_err(|err| {
            Error::store(
                format!("failed to create data dir {}", data_dir.display()),
                err,
            )
        })?;
        let path = data_dir.join("rollguard.redb");
        let db = Slot(Arc::new(RwLock::new(Some(Arc::new(open_db(&path)?)))));
        let (write_tx, write_rx) = mpsc::channel(WRITE_QUEUE);
        let writer = Writer {
            db: db.clone(),
            path: path.clone(),
            counters,
            held: Vec::new(),
            failing_since: None,
            last_reopen: None,
            pace,
        };
        let writer = std::thread::Builder::new()
            .name("store-writer".to_owned())
            .spawn(move || writer.run(write_rx))
            .map_err(|err| Error::store("starting the writer thread", err))?;
        let store = Store {
            db,
            write_tx,
            path,
            writer: writer.thread().clone(),
        };
        Ok((store, writer))
    }

    /// Returns the file the store lives in.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes and waits until the batch is durably committed.
    pub(crate) async fn commit(&self, writes: Vec<Write>) -> Result<()> {
        let (done_tx, done_rx) = oneshot::channel();
        self.write_tx
            .send(Batch {
                writes,
                done_tx: Some(done_tx),
            })
            .await
            .map_err(|_| Error::StoreClosed)?;
        // The writer may be pacing queued writes: this batch goes now.
        self.writer.unpark();
        done_rx.await.map_err(|_| Error::StoreClosed)?
    }

    /// Queues a write that must not be lost, waiting for room but not for the commit.
    pub(crate) async fn queue(&self, write: Write) -> Result<()> {
        self.write_tx
            .send(Batch {
                writes: vec![write],
                done_tx: None,
            })
            .await
            .map_err(|_| Error::StoreClosed)
    }

    /// Queues a write that a later one supersedes; dropped when the queue is full.
    pub(crate) fn queue_lossy(&self, write: Write) -> bool {
        self.write_tx
            .try_send(Batch {
                writes: vec![write],
                done_tx: None,
            })
            .is_ok()
    }

    /// Reads every agent, command and result (at start). Blocking.
    pub(crate) fn load(&self) -> Result<Snapshot> {
        let txn = self.db.get()?.begin_read()?;
        let mut snapshot = Snapshot::default();
        for entry in txn.open_table(AGENTS)?.iter()? {
            let (_, value) = entry?;
            snapshot.agents.push(serde_json::from_slice(value.value())?);
        }
        for entry in txn.open_table(COMMANDS)?.iter()? {
            let (_, value) = entry?;
            snapshot
                .commands
                .push(serde_json::from_slice(value.value())?);
        }
        for entry in txn.open_table(RESULTS)?.iter()? {
            let (_, value) = entry?;
            snapshot.results.extend(results_of(value.value())?);
        }
        let rounds = txn.open_table(ROUNDS)?;
        for entry in txn.open_table(JUDGE)?.iter()? {
            let (key, value) = entry?;
            let deployment = key.value().to_owned();
            snapshot
                .judge_states
                .push((deployment.clone(), serde_json::from_slice(value.value())?));
            if let Some(last) = rounds
                .range((deployment.as_str(), 0)..=(deployment.as_str(), u64::MAX))?
                .next_back()
            {
                let (_, value) = last?;
                // A round that does not read back must not keep the coordinator from starting.
                match serde_json::from_slice(value.value()) {
                    Ok(round) => snapshot.latest_rounds.push(round),
                    Err(err) => {
                        tracing::warn!(%deployment, error = %chain(&err), "skipping an unreadable stored round")
                    }
                }
            }
        }
        snapshot.rollouts = latest_rollouts(&txn.open_table(ROLLOUTS)?)?;
        Ok(snapshot)
    }

    /// Returns a deployment's rollouts, oldest first. Blocking.
    pub(crate) fn rollouts(&self, deployment: &str) -> Result<Vec<RolloutRecord>> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(ROLLOUTS)?;
        let mut rollouts = Vec::new();
        for entry in table.range((deployment, 0)..=(deployment, u64::MAX))? {
            let (_, value) = entry?;
            rollouts.push(serde_json::from_slice(value.value())?);
        }
        Ok(rollouts)
    }

    /// Returns a deployment's rounds at or after `since_unix_ms`, at most the
    /// newest `limit`, oldest first. Blocking.
    pub(crate) fn rounds(
        &self,
        deployment: &str,
        since_unix_ms: u64,
        limit: usize,
    ) -> Result<Vec<RoundRecord>> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(ROUNDS)?;
        let mut rounds = Vec::new();
        for entry in table.range((deployment, 0)..=(deployment, u64::MAX))?.rev() {
            let (_, value) = entry?;
            let record: RoundRecord = match serde_json::from_slice(value.value()) {
                Ok(record) => record,
                Err(err) => {
                    tracing::warn!(deployment, error = %chain(&err), "skipping an unreadable stored round");
                    continue;
                }
            };
            if record.at_unix_ms < since_unix_ms || rounds.len() >= limit {
                break;
            }
            rounds.push(record);
        }
        rounds.reverse();
        Ok(rounds)
    }

    /// Returns the newest `limit` audit entries, oldest first, optionally of one deployment. Blocking.
    pub(crate) fn audit(&self, deployment: Option<&str>, limit: usize) -> Result<Vec<AuditRecord>> {
        let txn = self.db.get()?.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let mut entries = Vec::new();
        for entry in table.iter()?.rev() {
            let (_, value) = entry?;
            let record: AuditRecord = serde_json::from_slice(value.value())?;
            if deployment.is_none_or(|d| d == record.deployment) {
                entries.push(record);
                if entries.len() >= limit {
                    break;
                }
            }
        }
        entries.reverse();
        Ok(entries)
    }
}

/// The writer thread's state.
struct Writer {
    db: Slot,
    path: PathBuf,
    counters: Arc<crate::counters::Counters>,
    /// Queued writes (nobody waits for them) that failed to commit: applied
    /// again, first, once the store commits again.
    held: Vec<Write>,
    /// Since when no commit has succeeded, if one failed.
    failing_since: Option<Instant>,
    last_reopen: Option<Instant>,
    /// See [`QUEUED_COMMIT_EVERY`].
    pace: Duration,
}

impl Writer {
    fn run(mut self, mut write_rx: mpsc::Receiver<Batch>) {
        let mut audit_seq = match self.db.get().and_then(|db| next_audit_seq(&db)) {
            Ok(seq) => seq,
            Err(err) => {
                tracing::error!(error = %chain(&err), "store writer cannot read the audit table");
                return;
            }
        };
        let mut batches = Vec::new();
        let mut last_commit: Option<Instant> = None;
        loop {
            let Some(first) = self.next_batch(&mut write_rx, &mut audit_seq) else {
                break;
            };
            batches.push(first);
            let mut n_writes = batches[0].writes.len();
            let due = last_commit.map(|at| at + self.pace);
            loop {
                let open = take_queued(&mut write_rx, &mut batches, &mut n_writes);
                let now = Instant::now();
                let waited_for = batches.iter().any(|b| b.done_tx.is_some());
                match due {
                    Some(due) if open && !waited_for && n_writes < MAX_BATCH && now < due => {
                        // Woken early by `Store::commit`, or at `due`.
                        std::thread::park_timeout(due - now);
                    }
                    _ => break,
                }
            }
            last_commit = Some(Instant::now());
            let result = self.commit(&batches, &mut audit_seq);
            for batch in batches.drain(..) {
                match batch.done_tx {
                    Some(done_tx) => {
                        let _ = done_tx.send(match &result {
                            Ok(()) => Ok(()),
                            Err(err) => Err(Error::store("committing a batch", chain(err))),
                        });
                    }
                    // Its producer was told it is on its way: keep it for
                    // after the reopen.
                    None if result.is_err() => self.hold(batch.writes),
                    None => {}
                }
            }
        }
        tracing::debug!("store writer stopped");
    }

    /// The next batch; while the store is failing, wakes at least every
    /// 100 ms to reopen it on time.
    fn next_batch(
        &mut self,
        write_rx: &mut mpsc::Receiver<Batch>,
        audit_seq: &mut u64,
    ) -> Option<Batch> {
        loop {
            if self.failing_since.is_none() {
                return write_rx.blocking_recv();
            }
            self.recover(audit_seq);
            match write_rx.try_recv() {
                Ok(batch) => return Some(batch),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Applies `batches` (after any held writes); a failure marks the store
    /// failing, and a success healthy again.
    fn commit(&mut self, batches: &[Batch], audit_seq: &mut u64) -> Result<()> {
        if self.failing_since.is_some() {
            self.recover(audit_seq);
            if self.failing_since.is_some() {
                self.counters.store_error();
                return Err(Error::Store {
                    context: "the store cannot commit (reopening it)".to_owned(),
                    source: None,
                });
            }
        }
        let started = Instant::now();
        let n_writes: usize = batches.iter().map(|b| b.writes.len()).sum();
        let mut result = self.apply(batches, audit_seq);
        if let Err(err) = &result {
            tracing::warn!(error = %chain(err), n_writes, "store commit failed; retrying once");
            result = self.apply(batches, audit_seq);
        }
        self.counters.observe_commit(started.elapsed());
        match &result {
            Ok(()) => tracing::debug!(
                n_writes,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "store batch committed"
            ),
            Err(err) => {
                tracing::error!(error = %chain(err), n_writes, "store commit failed: /readyz is 503 until the store commits again");
                self.counters.store_error();
                self.counters.set_store_failing(true);
                self.failing_since = Some(Instant::now());
            }
        }
        result
    }

    fn apply(&self, batches: &[Batch], audit_seq: &mut u64) -> Result<()> {
        let db = self.db.get()?;
        apply(&db, batches, audit_seq)
    }

    /// Reopens the store (at most every [`REOPEN_EVERY`]) and commits the
    /// held writes; on success the store is healthy again.
    fn recover(&mut self, audit_seq: &mut u64) {
        if self
            .last_reopen
            .is_some_and(|at| at.elapsed() < REOPEN_EVERY)
        {
            return;
        }
        self.last_reopen = Some(Instant::now());
        // redb refuses the file while another handle has it open: readers
        // hold theirs only for one read.
        self.db.set(None);
        let reopened = open_db(&self.path).and_then(|db| {
            let db = Arc::new(db);
            self.db.set(Some(Arc::clone(&db)));
            *audit_seq = next_audit_seq(&db)?;
            let held = Batch {
                writes: std::mem::take(&mut self.held),
                done_tx: None,
            };
            let result = apply(&db, std::slice::from_ref(&held), audit_seq);
            if result.is_err() {
                self.held = held.writes;
            }
            result
        });
        match reopened {
            Ok(()) => {
                let failing_for = self.failing_since.take().map(|since| since.elapsed());
                self.counters.set_store_failing(false);
                tracing::info!(?failing_for, "store reopened and committing again");
            }
            Err(err) => {
                self.counters.store_error();
                tracing::warn!(error = %chain(&err), "store still cannot commit; reopening again in {REOPEN_EVERY:?}");
            }
        }
    }

    fn hold(&mut self, writes: Vec<Write>) {
        self.held.extend(writes);
        if self.held.len() > MAX_HELD_WRITES {
            let dropped = self.held.len() - MAX_HELD_WRITES;
            self.held.drain(..dropped);
            for _ in 0..dropped {
                self.counters.store_error();
            }
            tracing::error!(
                dropped,
                "store writes dropped: too many held while the store cannot commit"
            );
        }
    }
}

fn next_audit_seq(db: &Database) -> Result<u64> {
    let txn = db.begin_read()?;
    let table = txn.open_table(AUDIT)?;
    if table.len()? == 0 {
        return Ok(0);
    }
    let next = table.last()?.map(|(key, _)| key.value() + 1).unwrap_or(0);
    Ok(next)
}

/// Moves the batches queued now into `batches`, up to [`MAX_BATCH`] writes;
/// false once every sender is gone.
fn take_queued(
    write_rx: &mut mpsc::Receiver<Batch>,
    batches: &mut Vec<Batch>,
    n_writes: &mut usize,
) -> bool {
    while *n_writes < MAX_BATCH {
        match write_rx.try_recv() {
            Ok(batch) => {
                *n_writes += batch.writes.len();
                batches.push(batch);
            }
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
    true
}

/// Applies every write of `batches` in one transaction; on any failure the
/// audit sequence is left as it was.
fn apply(db: &Database, batches: &[Batch], audit_seq: &mut u64) -> Result<()> {
    let seq_before = *audit_seq;
    let result = apply_in(db, batches, audit_seq);
    if result.is_err() {
        *audit_seq = seq_before;
    }
    result
}

fn apply_in(db: &Database, batches: &[Batch], audit_seq: &mut u64) -> Result<()> {
    let txn = db.begin_write()?;
    {
        let mut agents = txn.open_table(AGENTS)?;
        let mut commands = txn.open_table(COMMANDS)?;
        let mut results = txn.open_table(RESULTS)?;
        let mut audit = txn.open_table(AUDIT)?;
        let mut rounds = txn.open_table(ROUNDS)?;
        let mut judge = txn.open_table(JUDGE)?;
        let mut rollouts = txn.open_table(ROLLOUTS)?;
        // Results are written after the other writes, one row per command
        // (see `put_results`).
        let mut grouped: BTreeMap<&str, Vec<&ResultRecord>> = BTreeMap::new();
        for write in batches.iter().flat_map(|b| &b.writes) {
            match write {
                Write::Agent(record) => {
                    agents.insert(
                        record.host_id.as_str(),
                        serde_json::to_vec(record)?.as_slice(),
                    )?;
                }
                Write::ForgetAgent(host_id) => {
                    agents.remove(host_id.as_str())?;
                }
                Write::ForgetCommand(command_id) => {
                    commands.remove(command_id.as_str())?;
                    // Result keys are `<command id>/<host id>`; '0' follows '/'.
                    let (from, to) = (format!("{command_id}/"), format!("{command_id}0"));
                    results.retain_in(from.as_str()..to.as_str(), |_, _| false)?;
                }
                Write::Command(record) => {
                    commands.insert(
                        record.command_id.as_str(),
                        serde_json::to_vec(record)?.as_slice(),
                    )?;
                }
                Write::Result(record) => {
                    grouped
                        .entry(record.command_id.as_str())
                        .or_default()
                        .push(record);
                }
                Write::Audit(record) => {
                    audit.insert(*audit_seq, serde_json::to_vec(record)?.as_slice())?;
                    *audit_seq += 1;
                }
                Write::Round(record) => {
                    rounds.insert(
                        (record.deployment.as_str(), record.seq),
                        serde_json::to_vec(record)?.as_slice(),
                    )?;
                }
                Write::Judge(deployment, state) => {
                    judge.insert(deployment.as_str(), serde_json::to_vec(state)?.as_slice())?;
                }
                Write::Rollout(record) => {
                    rollouts.insert(
                        (record.deployment.as_str(), record.number),
                        serde_json::to_vec(record)?.as_slice(),
                    )?;
                }
                Write::PruneRounds(deployment, before) => {
                    rounds.retain_in(
                        (deployment.as_str(), 0)..(deployment.as_str(), *before),
                        |_, _| false,
                    )?;
                }
            }
        }
        for (command_id, records) in grouped {
            // A result that arrives for a command already forgotten (in
            // this batch too) would be a row nothing ever reads or deletes.
            if commands.get(command_id)?.is_none() {
                continue;
            }
            put_results(&mut results, command_id, &records)?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Stores the final results of one command from one batch. One result is a
/// row `<command id>/<host id>` holding it; several are one row
/// `<command id>/~<first host id>` holding them all as a JSON array. A
/// fan-out's results come in host order the map gives, so a row per
/// result would rewrite pages all over the table in every transaction
/// (at 100,000 hosts the writer's CPU, issue 15); one row per batch is
/// appended. Either key is unique: a host's final result for a command is
/// stored once, and `ForgetCommand` deletes both forms by prefix.
fn put_results(
    table: &mut redb::Table<'_, &str, &[u8]>,
    command_id: &str,
    records: &[&ResultRecord],
) -> Result<()> {
    match records {
        [] => {}
        [record] => {
            let key = format!("{command_id}/{}", record.host_id);
            table.insert(key.as_str(), serde_json::to_vec(record)?.as_slice())?;
        }
        [first, ..] => {
            let key = format!("{command_id}/~{}", first.host_id);
            table.insert(key.as_str(), serde_json::to_vec(records)?.as_slice())?;
        }
    }
    Ok(())
}

/// The results of one `RESULTS` row: one record, or a JSON array of them.
fn results_of(value: &[u8]) -> Result<Vec<ResultRecord>> {
    if value.trim_ascii_start().first() == Some(&b'[') {
        Ok(serde_json::from_slice(value)?)
    } else {
        Ok(vec![serde_json::from_slice(value)?])
    }
}

/// The newest rollout of each deployment (keys sort by deployment, then number).
fn latest_rollouts(table: &redb::ReadOnlyTable<(&str, u64), &[u8]>) -> Result<Vec<RolloutRecord>> {
    let mut latest: BTreeMap<String, RolloutRecord> = BTreeMap::new();
    for entry in table.iter()? {
        let (_, value) = entry?;
        let record: RolloutRecord = serde_json::from_slice(value.value())?;
        latest.insert(record.deployment.clone(), record);
    }
    Ok(latest.into_values().collect())
}

#[cfg(test)]
mod tests;
