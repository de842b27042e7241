//! Decisions against a real store in a temp dir, a fleet with one stream
//! per host (the channels a real stream's task reads), and a fixed clock
//! for the rounds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rollguard_common::policy::{CohortFigures, Decision, Evaluation, Policy, Verdict};
use rollguard_common::{Cohort, DeploymentName, HostId};
use rollguard_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::*;
use crate::config::Config;
use crate::counters::Counters;
use crate::fleet::Fleet;
use crate::notify::Notifier;
use crate::outbound::AgentTx;
use crate::store::Store;

const FAILURES: u32 = 3;

struct Rig {
    decisions: Decisions,
    fleet: Arc<Fleet<AgentTx>>,
    store: Store,
    policy: Policy,
    deployment: DeploymentName,
    config: Arc<Config>,
    dir: PathBuf,
}

/// One connected host: what its stream would carry to the agent.
struct Host {
    identity: HostIdentity,
    wire_rx: mpsc::Receiver<crate::outbound::Outbound>,
}

impl Host {
    /// The command ids sent to this host so far. Every copy, a decision's,
    /// a catch-up's or a retry's, carries the coordinator's `sent_at` (the
    /// agent judges expiry by it, issue 11).
    fn commands(&mut self) -> Vec<String> {
        let mut ids = Vec::new();
        while let Ok(message) = self.wire_rx.try_recv() {
            if let Some(pb::coordinator_message::Kind::Command(command)) =
                message.decoded().expect("no status").kind
            {
                assert!(command.sent_at.is_some(), "no sent_at: {command:?}");
                ids.push(command.command_id);
            }
        }
        ids
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rig(name: &str, dry_run: bool) -> Rig {
    let dir =
        std::env::temp_dir().join(format!("rollguard-decisions-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let deployment = DeploymentName::new("shop".to_owned());
    let policy = Policy {
        consecutive_failures: FAILURES,
        dry_run,
        ..Policy::default()
    };
    let mut config = Config::for_test(dir.clone());
    config
        .deployments
        .insert(deployment.clone(), policy.clone());
    let config = Arc::new(config);
    let (store, _writer) = Store::open(&dir, Arc::new(Counters::default())).expect("store opens");
    let fleet = Arc::new(Fleet::from_snapshot(Default::default()));
    let issuer = Issuer {
        config: Arc::clone(&config),
        fleet: Arc::clone(&fleet),
        store: store.clone(),
        notifier: Notifier::default(),
        tracker: TaskTracker::new(),
    };
    Rig {
        decisions: Decisions::restore(Vec::new(), Vec::new(), issuer),
        fleet,
        store,
        policy,
        deployment,
        config,
        dir,
    }
}

impl Rig {
    fn connect(&self, host: &str, at: SystemTime) -> Host {
        let identity = HostIdentity {
            host_id: HostId::new(host.to_owned()),
            deployment: self.deployment.clone(),
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
        self.fleet.connect(identity.clone(), AgentTx::new(wire), at);
        Host { identity, wire_rx }
    }

    async fn round(&self, verdict: Verdict, at: SystemTime) -> Recorded {
        let evaluation = Evaluation {
            verdict,
            reason: format!("{verdict:?} in the test"),
            rules: Vec::new(),
            beta: CohortFigures::default(),
            baseline: CohortFigures::default(),
            blind: false,
            blast_radius_exceeded: false,
        };
        self.decisions
            .record_round(
                &self.deployment,
                &self.policy,
                evaluation,
                at,
                &tracing::Span::none(),
            )
            .await
    }

    /// Audit actions of the deployment, oldest first.
    fn audit(&self) -> Vec<String> {
        self.store
            .audit(Some(self.deployment.as_str()), 100)
            .expect("audit reads")
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    /// Rounds stored, oldest first, once the queued writes are in: the
    /// writer commits in queue order, so an empty commit after them waits
    /// for them.
    async fn stored_rounds(&self) -> Vec<RoundRecord> {
        self.store
            .commit(Vec::new())
            .await
            .expect("the store commits");
        let mut rounds = self
            .store
            .rounds(self.deployment.as_str(), 0, 1000)
            .expect("rounds read");
        rounds.sort_by_key(|r| r.seq);
        rounds
    }
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

#[tokio::test]
async fn a_rollback_is_decided_once_after_the_configured_failing_rounds() {
    let rig = rig("decide", false);
    let mut host = rig.connect("beta-1", SystemTime::now());
    for n in 1..FAILURES {
        let recorded = rig.round(Verdict::Fail, at(u64::from(n))).await;
        assert_eq!(recorded.record.decision, Decision::None, "round {n}");
        assert_eq!(recorded.record.state.consecutive, n);
    }
    assert!(host.commands().is_empty(), "nothing sent before the streak");

    let deciding = rig.round(Verdict::Fail, at(10)).await.record;
    assert_eq!(deciding.decision, Decision::RollBack);
    assert!(!deciding.state.armed);
    assert!(!deciding.command_id.is_empty());
    assert_eq!(host.commands(), std::slice::from_ref(&deciding.command_id));
    assert!(!rig.decisions.state(&rig.deployment).armed);
    assert_eq!(
        rig.decisions.latest(&rig.deployment).map(|r| r.seq),
        Some(deciding.seq)
    );

    // Disarmed: more failing rounds decide nothing more.
    let after = rig.round(Verdict::Fail, at(11)).await;
    assert_eq!(after.record.decision, Decision::None);
    assert_eq!(after.previous, Some(Verdict::Fail));
    assert!(host.commands().is_empty());

    // The deciding round is stored with its command, beside the others.
    let rounds = rig.stored_rounds().await;
    let seqs: Vec<u64> = rounds.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    assert_eq!(rounds[2].command_id, deciding.command_id);
    assert_eq!(rig.audit(), ["rollback"]);
    let command = rig
        .fleet
        .command(&deciding.command_id)
        .expect("in the fleet");
    assert_eq!(command.record.targets, ["beta-1"]);
}

#[tokio::test]
async fn a_dry_run_audits_its_decision_and_sends_nothing() {
    let rig = rig("dry-run", true);
    let mut host = rig.connect("beta-1", SystemTime::now());
    let mut decisions = Vec::new();
    for n in 0..FAILURES * 2 {
        decisions.push(rig.round(Verdict::Fail, at(u64::from(n))).await.record);
    }
    let would: Vec<u64> = decisions
        .iter()
        .filter(|r| r.decision == Decision::WouldRollBack)
        .map(|r| r.seq)
        .collect();
    // The streak is used up each time: rounds 3 and 6 would roll back.
    assert_eq!(would, [2, 5]);
    assert_eq!(
        decisions[2].state.consecutive, FAILURES,
        "the round shows its streak"
    );
    assert!(rig.decisions.state(&rig.deployment).armed);
    assert!(host.commands().is_empty());
    assert_eq!(rig.audit(), ["would_roll_back", "would_roll_back"]);
}

#[tokio::test]
async fn rearm_is_stored_and_lets_the_policy_decide_again() {
    let rig = rig("rearm", false);
    let mut host = rig.connect("beta-1", SystemTime::now());
    for n in 0..FAILURES {
        rig.round(Verdict::Fail, at(u64::from(n))).await;
    }
    assert_eq!(host.commands().len(), 1);

    let was_armed = rig
        .decisions
        .rearm(&rig.deployment, "fixed".to_owned(), "ops".to_owned())
        .await
        .expect("rearm stored");
    assert!(!was_armed);
    let state = rig.decisions.state(&rig.deployment);
    assert!(state.armed);
    assert_eq!(state.consecutive, 0);
    let stored = rig.store.load().expect("loads");
    assert!(stored
        .judge_states
        .iter()
        .any(|(d, s)| d == "shop" && s.armed));

    for n in 0..FAILURES {
        rig.round(Verdict::Fail, at(100 + u64::from(n))).await;
    }
    assert_eq!(
        host.commands().len(),
        1,
        "a second decision after the rearm"
    );
    assert_eq!(rig.audit(), ["rollback", "rearm", "rollback"]);
    // The policy disarmed it again; a rearm after a rearm finds it armed.
    assert!(!rig
        .decisions
        .rearm(&rig.deployment, "again".to_owned(), "ops".to_owned())
        .await
        .expect("stored"));
    assert!(rig
        .decisions
        .rearm(&rig.deployment, "twice".to_owned(), "ops".to_owned())
        .await
        .expect("stored"));
}

#[tokio::test]
async fn a_manual_rollback_leaves_the_arming_alone() {
    let rig = rig("manual", false);
    let mut host = rig.connect("beta-1", SystemTime::now());
    let command = rig
        .decisions
        .rollback(&rig.deployment, "by hand", "ops", "")
        .await
        .expect("decided");
    assert_eq!(command.targets, ["beta-1"]);
    assert_eq!(host.commands(), [command.command_id]);
    assert!(rig.decisions.state(&rig.deployment).armed);

    let unknown = DeploymentName::new("nowhere".to_owned());
    let err = rig
        .decisions
        .rollback(&unknown, "by hand", "ops", "")
        .await
        .expect_err("never configured, never seen");
    assert!(matches!(err, crate::Error::NotFound(_)), "{err}");
}

#[tokio::test]
async fn a_host_that_rejected_the_decision_as_expired_catches_up_once_while_disarmed() {
    let rig = rig("expired", false);
    let mut host = rig.connect("beta-1", SystemTime::now());
    for n in 0..FAILURES {
        rig.round(Verdict::Fail, at(u64::from(n))).await;
    }
    let [decided] = <[String; 1]>::try_from(host.commands()).expect("one command");

    rig.decisions
        .catch_up_expired(&host.identity, &decided)
        .await;
    let catch_ups = host.commands();
    assert_eq!(catch_ups.len(), 1, "one catch-up");
    let catch_up = rig.fleet.command(&catch_ups[0]).expect("in the fleet");
    assert!(catch_up.record.closed);
    assert_eq!(catch_up.record.targets, ["beta-1"]);
    assert!(catch_up.record.reason.contains(&decided));

    // Re-armed: the decision is no longer in force.
    rig.decisions
        .rearm(&rig.deployment, "fixed".to_owned(), "ops".to_owned())
        .await
        .expect("stored");
    rig.decisions
        .catch_up_expired(&host.identity, &decided)
        .await;
    assert!(host.commands().is_empty());
}

#[tokio::test]
async fn a_beta_host_that_was_never_a_target_catches_up_once_after_the_deadline() {
    let rig = rig("missed", false);
    let mut early = rig.connect("beta-1", SystemTime::now());
    for n in 0..FAILURES {
        rig.round(Verdict::Fail, at(u64::from(n))).await;
    }
    assert_eq!(early.commands().len(), 1);

    // A host that comes after the deadline is not made a target...
    let late_at = SystemTime::now() + rig.config.command_ttl * 2;
    let mut late = rig.connect("beta-2", late_at);
    assert!(late.commands().is_empty());
    // ...but the decision is in force, so it gets one of its own, once.
    rig.decisions.catch_up_missed(&late.identity, late_at).await;
    assert_eq!(late.commands().len(), 1);
    rig.decisions.catch_up_missed(&late.identity, late_at).await;
    assert!(
        late.commands().is_empty(),
        "at most one per host and decision"
    );
    assert!(early.commands().is_empty());
}

// Issue 10: a host whose clock runs more than `command_ttl` ahead rejected
// every catch-up as expired and got another, whose reason quoted the last
// one's, without end.
#[tokio::test]
async fn a_catch_up_rejected_as_expired_gets_none_of_its_own() {
    let rig = rig("expired-catch-up", false);
    let mut host = rig.connect("beta-1", SystemTime::now());
    for n in 0..FAILURES {
        rig.round(Verdict::Fail, at(u64::from(n))).await;
    }
    let [decided] = <[String; 1]>::try_from(host.commands()).expect("one command");
    rig.decisions
        .catch_up_expired(&host.identity, &decided)
        .await;
    let [catch_up] = <[String; 1]>::try_from(host.commands()).expect("one catch-up");

    rig.decisions
        .catch_up_expired(&host.identity, &catch_up)
        .await;
    assert!(host.commands().is_empty(), "a catch-up is not repeated");
    // Nor is the decision, on any path, once the host had its catch-up.
    rig.decisions
        .catch_up_expired(&host.identity, &decided)
        .await;
    rig.decisions
        .catch_up_missed(
            &host.identity,
            SystemTime::now() + rig.config.command_ttl * 2,
        )
        .await;
    assert!(
        host.commands().is_empty(),
        "at most one per host and decision"
    );
}

#[tokio::test]
async fn a_long_reason_is_cut_on_a_char_boundary() {
    let rig = rig("long-reason", false);
    let mut host = rig.connect("beta-1", SystemTime::now());
    // Disarmed by the policy, so the operator's decision is caught up with.
    for n in 0..FAILURES {
        rig.round(Verdict::Fail, at(u64::from(n))).await;
    }
    assert_eq!(host.commands().len(), 1);
    // 3-byte chars: 512 is not a boundary.
    let reason = "€".repeat(1000);
    let decided = rig
        .decisions
        .rollback(&rig.deployment, &reason, "ops", "")
        .await
        .expect("decided");
    assert_eq!(decided.reason, "€".repeat(170));
    let [sent] = <[String; 1]>::try_from(host.commands()).expect("one command");
    assert_eq!(sent, decided.command_id);

    // A catch-up quotes the reason and stays within the bound too.
    rig.decisions
        .catch_up_expired(&host.identity, &decided.command_id)
        .await;
    let [catch_up] = <[String; 1]>::try_from(host.commands()).expect("one catch-up");
    let catch_up = rig.fleet.command(&catch_up).expect("in the fleet");
    assert!(
        catch_up.record.reason.len() <= 512,
        "{}",
        catch_up.record.reason.len()
    );
    assert!(catch_up.record.reason.contains(&decided.command_id));
}
