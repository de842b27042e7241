//! Control API tests against a real store in a temp dir: idempotent manual
//! rollbacks (issue 10), also across a restart of the coordinator's state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rollguard_common::policy::Policy;
use rollguard_common::{Cohort, DeploymentName, HostId};
use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_server::ControlService;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Code, Request};

use super::control::Control;
use crate::broadcast::Issuer;
use crate::config::Config;
use crate::counters::Counters;
use crate::decisions::Decisions;
use crate::fleet::{Fleet, HostIdentity};
use crate::notify::Notifier;
use crate::outbound::AgentTx;
use crate::store::Store;

/// The control service over one data dir, as `server.rs` wires it.
struct Rig {
    control: Control,
    writer: std::thread::JoinHandle<()>,
    /// Keeps the connected hosts' streams open.
    _streams: Vec<HostStream>,
}

/// What a connected host's stream would carry.
type HostStream = mpsc::Receiver<crate::outbound::Outbound>;

/// A data dir under the temp dir, removed on drop.
struct DataDir(PathBuf);

impl DataDir {
    fn new(name: &str) -> DataDir {
        let dir =
            std::env::temp_dir().join(format!("rollguard-control-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        DataDir(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Opens the store in `dir` and builds the state from it, as at start.
fn start(dir: &Path) -> Rig {
    let mut config = Config::for_test(dir.to_owned());
    for name in ["shop", "cart"] {
        config
            .deployments
            .insert(DeploymentName::new(name.to_owned()), Policy::default());
    }
    let config = Arc::new(config);
    let (store, writer) = Store::open(dir, Arc::new(Counters::default())).expect("store opens");
    let snapshot = store.load().expect("store loads");
    let judge_states = snapshot.judge_states.clone();
    let fleet = Arc::new(Fleet::from_snapshot(snapshot));
    let tracker = TaskTracker::new();
    let issuer = Issuer {
        config: Arc::clone(&config),
        fleet: Arc::clone(&fleet),
        store: store.clone(),
        notifier: Notifier::default(),
        tracker: tracker.clone(),
    };
    let decisions = Arc::new(Decisions::restore(judge_states, Vec::new(), issuer));
    let rollouts = Arc::new(crate::rollout::Rollouts::restore(
        Vec::new(),
        Arc::clone(&config),
        Arc::clone(&fleet),
        store.clone(),
        Arc::clone(&decisions),
        Notifier::default(),
    ));
    let control = Control {
        config,
        fleet,
        store,
        decisions,
        rollouts,
        streams_shutdown: CancellationToken::new(),
        tracker,
    };
    Rig {
        control,
        writer,
        _streams: Vec::new(),
    }
}

impl Rig {
    /// Connects a beta host of "shop", so that rollbacks have a target.
    fn connect(&mut self, host: &str) {
        let identity = HostIdentity {
            host_id: HostId::new(host.to_owned()),
            deployment: DeploymentName::new("shop".to_owned()),
            cohort: Cohort::Beta,
            auto: false,
            app_version: "2".to_owned(),
            agent_version: "1".to_owned(),
            action_names: vec!["rollback".to_owned()],
            interval: Duration::from_secs(1),
            session_id: 1,
            labels: BTreeMap::new(),
        };
        let (wire, wire_rx) = mpsc::channel(16);
        self.control
            .fleet
            .connect(identity, AgentTx::new(wire), SystemTime::now());
        self._streams.push(wire_rx);
    }

    async fn rollback(
        &self,
        deployment: &str,
        request_id: &str,
    ) -> Result<pb::RollbackResponse, tonic::Status> {
        let request = Request::new(pb::RollbackRequest {
            deployment: deployment.to_owned(),
            reason: "by hand".to_owned(),
            actor: "ops".to_owned(),
            request_id: request_id.to_owned(),
        });
        self.control
            .rollback(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// The stored commands' ids, sorted.
    fn stored_commands(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .control
            .store
            .load()
            .expect("store loads")
            .commands
            .into_iter()
            .map(|c| c.command_id)
            .collect();
        ids.sort();
        ids
    }

    /// Drops every handle on the store and waits for its writer to stop.
    fn stop(self) {
        let Rig {
            control, writer, ..
        } = self;
        drop(control);
        writer.join().expect("the writer stops");
    }
}

#[tokio::test]
async fn the_same_request_id_returns_the_first_command() {
    let dir = DataDir::new("same-key");
    let mut rig = start(&dir.0);
    rig.connect("h1");
    let first = rig.rollback("shop", "key-1").await.expect("first call");
    assert_eq!(first.target_host_ids, vec!["h1".to_owned()]);
    let again = rig.rollback("shop", "key-1").await.expect("repeated call");
    assert_eq!(again, first);
    assert_eq!(rig.stored_commands(), vec![first.command_id.clone()]);

    // A repeat returns the command as it stands: a beta host that joined
    // it late (before its deadline) is among its targets, as in GetCommand.
    rig.connect("h2");
    let late = rig
        .rollback("shop", "key-1")
        .await
        .expect("after a late join");
    assert_eq!(late.command_id, first.command_id);
    assert_eq!(late.target_host_ids, vec!["h1".to_owned(), "h2".to_owned()]);
    assert_eq!(rig.stored_commands(), vec![first.command_id.clone()]);

    let err = rig
        .rollback("cart", "key-1")
        .await
        .expect_err("other deployment");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(rig.stored_commands().len(), 1);
}

#[tokio::test]
async fn different_or_empty_request_ids_make_new_commands() {
    let dir = DataDir::new("other-keys");
    let rig = start(&dir.0);
    let a = rig.rollback("shop", "key-a").await.expect("a");
    let b = rig.rollback("shop", "key-b").await.expect("b");
    assert_ne!(a.command_id, b.command_id);
    let c = rig.rollback("shop", "").await.expect("no key");
    let d = rig.rollback("shop", "").await.expect("no key again");
    assert_ne!(c.command_id, d.command_id);
    assert_eq!(rig.stored_commands().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_with_one_request_id_make_one_command() {
    let dir = DataDir::new("concurrent");
    let rig = Arc::new(start(&dir.0));
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let rig = Arc::clone(&rig);
            tokio::spawn(async move { rig.rollback("shop", "key-c").await })
        })
        .collect();
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.expect("joined").expect("call").command_id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(rig.stored_commands(), ids);
}

#[tokio::test]
async fn a_request_id_survives_a_restart() {
    let dir = DataDir::new("restart");
    let mut rig = start(&dir.0);
    rig.connect("h1");
    let first = rig.rollback("shop", "key-r").await.expect("first call");
    rig.stop();

    let rig = start(&dir.0);
    let again = rig.rollback("shop", "key-r").await.expect("after restart");
    assert_eq!(again.command_id, first.command_id);
    assert_eq!(again.target_host_ids, vec!["h1".to_owned()]);
    assert_eq!(rig.stored_commands(), vec![first.command_id]);
}

#[tokio::test]
async fn a_request_id_is_forgotten_with_its_command() {
    let dir = DataDir::new("retention");
    let rig = start(&dir.0);
    let first = rig.rollback("shop", "key-f").await.expect("first call");
    let issued = SystemTime::now();
    // A newer decision, so the first one is not the deployment's newest
    // (which is kept whatever its age). Decisions are ordered by their
    // millisecond: the newer one must come in a later one.
    while SystemTime::now() < issued + Duration::from_millis(2) {
        tokio::task::yield_now().await;
    }
    rig.rollback("shop", "").await.expect("newer");
    let later = SystemTime::now() + Duration::from_secs(3600);
    let forgotten = rig
        .control
        .fleet
        .forget_old_commands(later, Duration::from_secs(60));
    assert_eq!(forgotten.len(), 1);
    let again = rig
        .rollback("shop", "key-f")
        .await
        .expect("after forgetting");
    assert_ne!(again.command_id, first.command_id);
}

#[tokio::test]
async fn bad_request_ids_are_invalid_arguments() {
    let dir = DataDir::new("bad-keys");
    let rig = start(&dir.0);
    rig.rollback("shop", &"k".repeat(128))
        .await
        .expect("128 bytes is the most");
    for bad in [
        "k".repeat(129),
        "with space".to_owned(),
        "tab\t".to_owned(),
        "é".to_owned(),
    ] {
        let err = rig.rollback("shop", &bad).await.expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err:?}");
    }
    assert_eq!(rig.stored_commands().len(), 1);
}
