//! Link tests against a fake coordinator: the test plays the coordinator
//! over channels that stand in for the gRPC stream, and the link runs its
//! real loop, command policy, journal and actions. The one action appends
//! a line to `runs` in the state dir, so a test counts how often it ran.
//!
//! No network. Waiting is on channel receives under one deadline per test.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rollguard_common::ids::REASON_EXPIRED;
use rollguard_common::CommandStatus;
use rollguard_proto::time_to_pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::session::UPSTREAM_CAPACITY;
use super::*;
use crate::config::{RawAction, RawConfig};
use crate::journal::Entry;
use crate::tmpfs::Tmpfs;

/// The only action the test host defines.
const ACTION: &str = "rollback";
/// Deadline of one whole test: every wait in it shares this budget.
const TEST_DEADLINE: Duration = Duration::from_secs(30);

// === fake coordinator ===

/// One session as the coordinator sees it.
#[derive(Debug)]
struct FakeStream {
    up_rx: mpsc::Receiver<pb::AgentMessage>,
    down_tx: mpsc::Sender<pb::CoordinatorMessage>,
}

/// Hands the link sessions over channels; the test gets the other ends.
#[derive(Debug)]
struct FakeConnector {
    streams_tx: mpsc::UnboundedSender<FakeStream>,
}

impl Connector for FakeConnector {
    async fn open(&mut self, hello: pb::Hello) -> anyhow::Result<Session> {
        let (up_tx, up_rx) = mpsc::channel(UPSTREAM_CAPACITY);
        let (down_tx, down_rx) = mpsc::channel(16);
        up_tx
            .send(pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Hello(hello)),
            })
            .await?;
        self.streams_tx.send(FakeStream { up_rx, down_tx })?;
        Session::welcomed(up_tx, Box::pin(ReceiverStream::new(down_rx).map(Ok))).await
    }
}

/// The test's side: accepts sessions, sends commands, reads updates.
#[derive(Debug)]
struct FakeCoordinator {
    streams_rx: mpsc::UnboundedReceiver<FakeStream>,
    stream_opt: Option<FakeStream>,
}

impl FakeCoordinator {
    /// Accepts the agent's next session: reads Hello, answers Welcome.
    async fn accept(&mut self) -> pb::Hello {
        let mut stream = self.streams_rx.recv().await.expect("the link connects");
        let hello = match stream.up_rx.recv().await {
            Some(pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Hello(hello)),
            }) => hello,
            other => panic!("expected Hello first, got {other:?}"),
        };
        let welcome = pb::Welcome {
            host_id: hello.host_id.clone(),
            max_batch_samples: 10,
            ..Default::default()
        };
        send(&stream, pb::coordinator_message::Kind::Welcome(welcome)).await;
        self.stream_opt = Some(stream);
        hello
    }

    /// Sends a command for `action` with this `id`, valid until `not_after`
    /// (and no `sent_at`, as an older coordinator sends it).
    async fn command(&mut self, id: &str, action: &str, not_after: SystemTime) {
        self.command_sent(id, action, not_after, None).await;
    }

    /// Sends a command as [`Self::command`] does, stamped `sent_at`.
    async fn command_sent(
        &mut self,
        id: &str,
        action: &str,
        not_after: SystemTime,
        sent_at: Option<SystemTime>,
    ) {
        let command = pb::Command {
            command_id: id.to_owned(),
            deployment: "web".to_owned(),
            action: action.to_owned(),
            reason: "test".to_owned(),
            not_after: Some(time_to_pb(not_after)),
            sent_at: sent_at.map(time_to_pb),
            ..Default::default()
        };
        send(
            self.stream(),
            pb::coordinator_message::Kind::Command(command),
        )
        .await;
    }

    /// Reads updates until `id` has a final status; returns `id`'s updates,
    /// rendered. Updates for other ids in between fail the test.
    async fn until_final(&mut self, id: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let update = self.next_update().await;
            assert_eq!(update.command_id, id, "update for another command");
            let status = status(&update);
            seen.push(render(&update));
            if status.is_final() {
                return seen;
            }
        }
    }

    /// Returns the next command update, skipping samples and labels.
    async fn next_update(&mut self) -> pb::CommandUpdate {
        loop {
            let message = self.stream().up_rx.recv().await;
            match message {
                Some(pb::AgentMessage {
                    kind: Some(pb::agent_message::Kind::CommandUpdate(update)),
                }) => return update,
                Some(_) => {}
                None => panic!("the link closed the stream"),
            }
        }
    }

    fn stream(&mut self) -> &mut FakeStream {
        self.stream_opt.as_mut().expect("accept() first")
    }
}

async fn send(stream: &FakeStream, kind: pb::coordinator_message::Kind) {
    stream
        .down_tx
        .send(pb::CoordinatorMessage { kind: Some(kind) })
        .await
        .expect("the link reads its stream");
}

fn status(update: &pb::CommandUpdate) -> CommandStatus {
    pb::CommandStatus::try_from(update.status)
        .ok()
        .and_then(|status| CommandStatus::try_from(status).ok())
        .expect("a known command status")
}

/// `status`, then `exit=N` and `: reason` when present.
fn render(update: &pb::CommandUpdate) -> String {
    let mut text = status(update).as_str().to_owned();
    if let Some(code) = update.exit_code {
        text.push_str(&format!(" exit={code}"));
    }
    if !update.reason.is_empty() {
        text.push_str(&format!(": {}", update.reason));
    }
    text
}

// === harness ===

/// Returns a fresh, empty state dir for `test`.
fn state_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rollguard-agent-link-{}-{test}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the state dir");
    dir
}

/// Returns how many times the action ran in `dir`.
fn runs(dir: &Path) -> usize {
    match std::fs::read_to_string(dir.join("runs")) {
        Ok(text) => text.lines().count(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
        Err(err) => panic!("cannot read the runs file: {err}"),
    }
}

/// The test host's config: journal in `dir`, the action's `runs` file in
/// `runs_dir` (apart when `dir` is a tmpfs the test fills).
fn config(dir: &Path, runs_dir: &Path) -> Config {
    let runs = runs_dir.join("runs").display().to_string();
    let action = RawAction {
        command: ["/bin/sh", "-c", "echo ran >> \"$RUNS\""]
            .map(str::to_owned)
            .to_vec(),
        timeout: "10s".to_owned(),
        env: BTreeMap::from([("RUNS".to_owned(), runs)]),
        working_dir: None,
    };
    RawConfig {
        host_id: "host-1".to_owned(),
        deployment: "web".to_owned(),
        cohort: "beta".to_owned(),
        // No sample during a test: the stream carries only what the test does.
        interval: "1h".to_owned(),
        state_dir: dir.to_owned(),
        actions: BTreeMap::from([(ACTION.to_owned(), action)]),
        ..RawConfig::default()
    }
    .validate()
    .expect("valid test config")
}

/// Runs a link over the journal in `dir` while `script` plays the
/// coordinator, then stops the link the way shutdown does.
async fn with_agent<F: Future>(dir: &Path, script: impl FnOnce(FakeCoordinator) -> F) -> F::Output {
    with_agent_at(dir, dir, script).await
}

/// [`with_agent`], with the action's `runs` file in `runs_dir`.
async fn with_agent_at<F: Future>(
    dir: &Path,
    runs_dir: &Path,
    script: impl FnOnce(FakeCoordinator) -> F,
) -> F::Output {
    let journal = Journal::open(dir, unix_ms(SystemTime::now())).expect("open the journal");
    let (streams_tx, streams_rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let link = Link::new(config(dir, runs_dir), journal)
        .run(FakeConnector { streams_tx }, shutdown.clone());
    let coordinator = FakeCoordinator {
        streams_rx,
        stream_opt: None,
    };
    let script = async {
        let output = script(coordinator).await;
        shutdown.cancel();
        output
    };
    let ((), output) = tokio::time::timeout(TEST_DEADLINE, async { tokio::join!(link, script) })
        .await
        .expect("the test finishes within its deadline");
    output
}

fn in_a_minute() -> SystemTime {
    SystemTime::now() + Duration::from_secs(60)
}

// === tests ===

#[tokio::test]
async fn a_known_action_is_accepted_run_once_and_reported() {
    let dir = state_dir("known");
    let updates = with_agent(&dir, |mut coordinator| async move {
        let hello = coordinator.accept().await;
        assert_eq!(hello.action_names, [ACTION]);
        coordinator.command("c-1", ACTION, in_a_minute()).await;
        coordinator.until_final("c-1").await
    })
    .await;
    assert_eq!(updates, ["accepted", "running", "succeeded exit=0"]);
    assert_eq!(runs(&dir), 1);
    // Left behind when an assertion fails, for a look at the journal.
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unknown_action_is_rejected_and_nothing_runs() {
    let dir = state_dir("unknown");
    let (rejected, then) = with_agent(&dir, |mut coordinator| async move {
        coordinator.accept().await;
        coordinator.command("c-1", "reboot", in_a_minute()).await;
        let rejected = coordinator.until_final("c-1").await;
        // The rejection is decided before anything could start: a known
        // command after it is the first and only run.
        coordinator.command("c-2", ACTION, in_a_minute()).await;
        (rejected, coordinator.until_final("c-2").await)
    })
    .await;
    assert_eq!(
        rejected,
        ["rejected: unknown action `reboot`: this host does not define it"]
    );
    assert_eq!(then.last().map(String::as_str), Some("succeeded exit=0"));
    assert_eq!(runs(&dir), 1);
    // Left behind when an assertion fails, for a look at the journal.
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_expired_command_is_rejected_and_nothing_runs() {
    let dir = state_dir("expired");
    let updates = with_agent(&dir, |mut coordinator| async move {
        coordinator.accept().await;
        let a_second_ago = SystemTime::now() - Duration::from_secs(1);
        coordinator.command("c-1", ACTION, a_second_ago).await;
        let updates = coordinator.until_final("c-1").await;
        // Sent again, still valid this time: the journal answers, nothing runs.
        coordinator.command("c-1", ACTION, in_a_minute()).await;
        [updates, coordinator.until_final("c-1").await].concat()
    })
    .await;
    let expired = format!("rejected: {REASON_EXPIRED}");
    assert_eq!(updates, [expired.as_str(), expired.as_str()]);
    assert_eq!(runs(&dir), 0);
    // Left behind when an assertion fails, for a look at the journal.
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 11: this agent's clock is an hour ahead of the coordinator's, so
/// by its own clock every deadline has passed; the coordinator's `sent_at`
/// says the command went out in time, and it runs, once.
#[tokio::test]
async fn a_command_sent_in_time_runs_on_an_agent_an_hour_ahead() {
    let dir = state_dir("ahead");
    let (updates, late) = with_agent(&dir, |mut coordinator| async move {
        coordinator.accept().await;
        let coordinator_now = SystemTime::now() - Duration::from_secs(3600);
        let not_after = coordinator_now + Duration::from_secs(600);
        coordinator
            .command_sent("c-1", ACTION, not_after, Some(coordinator_now))
            .await;
        let updates = coordinator.until_final("c-1").await;
        // One sent after its deadline, on the same clock, never runs.
        let sent_late = not_after + Duration::from_secs(1);
        coordinator
            .command_sent("c-2", ACTION, not_after, Some(sent_late))
            .await;
        (updates, coordinator.until_final("c-2").await)
    })
    .await;
    assert_eq!(updates, ["accepted", "running", "succeeded exit=0"]);
    assert_eq!(late, [format!("rejected: {REASON_EXPIRED}")]);
    assert_eq!(runs(&dir), 1);
    // Left behind when an assertion fails, for a look at the journal.
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_duplicate_command_id_runs_once() {
    let dir = state_dir("duplicate");
    let (first, repeat) = with_agent(&dir, |mut coordinator| async move {
        coordinator.accept().await;
        coordinator.command("c-1", ACTION, in_a_minute()).await;
        let first = coordinator.until_final("c-1").await;
        coordinator.command("c-1", ACTION, in_a_minute()).await;
        (first, coordinator.until_final("c-1").await)
    })
    .await;
    assert_eq!(first, ["accepted", "running", "succeeded exit=0"]);
    // The repeat gets the journalled result, not a second run.
    assert_eq!(repeat, ["succeeded exit=0"]);
    assert_eq!(runs(&dir), 1);
    // Left behind when an assertion fails, for a look at the journal.
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn after_a_restart_the_journal_answers_and_nothing_reruns() {
    let dir = state_dir("restart");
    let first = with_agent(&dir, |mut coordinator| async move {
        coordinator.accept().await;
        coordinator.command("c-done", ACTION, in_a_minute()).await;
        coordinator.until_final("c-done").await
    })
    .await;
    assert_eq!(first.last().map(String::as_str), Some("succeeded exit=0"));
    // A previous process journalled this start and died before the end.
    Journal::open(&dir, unix_ms(SystemTime::now()))
        .and_then(|mut journal| journal.start("c-crashed"))
        .expect("journal a start");

    let (crashed, done) = with_agent(&dir, |mut coordinator| async move {
        coordinator.accept().await;
        coordinator
            .command("c-crashed", ACTION, in_a_minute())
            .await;
        let crashed = coordinator.until_final("c-crashed").await;
        coordinator.command("c-done", ACTION, in_a_minute()).await;
        (crashed, coordinator.until_final("c-done").await)
    })
    .await;
    assert_eq!(
        crashed,
        ["failed: interrupted: the agent stopped while the action ran; not rerun"]
    );
    assert_eq!(done, ["succeeded exit=0"]);
    assert_eq!(runs(&dir), 1);
    // Left behind when an assertion fails, for a look at the journal.
    let _ = std::fs::remove_dir_all(&dir);
}

// Issue 11: on a full disk a command is failed with the reason and never
// runs; it is not remembered, and a new id runs once space is back.
#[tokio::test]
async fn on_a_full_disk_a_command_fails_unrun_and_a_new_id_runs_once_space_is_back() {
    let dir = state_dir("full-disk");
    let journal_dir = dir.join("journal");
    let Some(fs) = Tmpfs::mount_or_skip(
        "on_a_full_disk_a_command_fails_unrun_and_a_new_id_runs_once_space_is_back",
        &journal_dir,
    ) else {
        return;
    };
    let (fs_ref, dir_ref) = (&fs, &dir);
    let (refused, runs_while_full, retried) =
        with_agent_at(&journal_dir, &dir, |mut coordinator| async move {
            coordinator.accept().await;
            fs_ref.fill();
            coordinator.command("c-full", ACTION, in_a_minute()).await;
            let refused = coordinator.until_final("c-full").await;
            let runs_while_full = runs(dir_ref);
            fs_ref.free();
            coordinator.command("c-retry", ACTION, in_a_minute()).await;
            (
                refused,
                runs_while_full,
                coordinator.until_final("c-retry").await,
            )
        })
        .await;
    assert_eq!(
        refused,
        ["failed: cannot record the command in the journal: No space left on device (os error 28)"]
    );
    assert_eq!(runs_while_full, 0);
    assert_eq!(retried, ["accepted", "running", "succeeded exit=0"]);
    assert_eq!(runs(&dir), 1);
    // Nothing of the refused command reached the journal.
    let journal = Journal::open(&journal_dir, 0).expect("reopen the journal");
    assert_eq!(journal.get("c-full"), None);
    assert!(matches!(journal.get("c-retry"), Some(Entry::Finished(_))));
    assert_eq!(journal.skipped_lines(), 0);
    drop(journal);
    drop(fs);
    // Left behind when an assertion fails, for a look at the journal.
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_coordinator_that_never_welcomes_does_not_hold_the_agent() {
    let (up_tx, _up_rx) = mpsc::channel(4);
    // The stream is open (its sender lives) but nothing ever arrives on it.
    let (_down_tx, down_rx) = mpsc::channel::<pb::CoordinatorMessage>(4);
    let opened = Session::welcomed(up_tx, Box::pin(ReceiverStream::new(down_rx).map(Ok))).await;
    let Err(err) = opened else {
        panic!("no Welcome, no session");
    };
    assert!(err.to_string().contains("no Welcome within"), "{err}");
}
