//! The preflight's checks and the gate, on plain values.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rollguard_common::policy::{JudgeState, Policy, RawPolicy, RawRule};
use rollguard_common::rollout::{BlastRadius, RawRollout};
use rollguard_common::{Cohort, DeploymentName, HostId};

use super::preflight::{self, Input};
use super::view;
use crate::fleet::{AgentView, HostIdentity};
use crate::store::{PhaseRecord, RolloutRecord, RolloutState};

fn policy() -> Policy {
    RawPolicy {
        rules: vec![
            RawRule {
                metric: "error_rate".to_owned(),
                max: Some(0.05),
                ..RawRule::default()
            },
            RawRule {
                metric: "latency_p99_ms".to_owned(),
                max: Some(500.0),
                ..RawRule::default()
            },
        ],
        blast_radius: BlastRadius {
            impact_level: Some("non-critical".to_owned()),
            affected_users: Some("internal-team-only".to_owned()),
            fallback_strategy: Some("automatic-rollback".to_owned()),
            data_at_risk: Some("none".to_owned()),
            financial_impact: Some("minimal".to_owned()),
            reputation_risk: Some("low".to_owned()),
        },
        rollout: RawRollout {
            promote_action: "promote".to_owned(),
            min_phase_duration: "10s".to_owned(),
            min_passing_rounds: 3,
            ..RawRollout::default()
        },
        ..RawPolicy::default()
    }
    .validate("deployments.cache")
    .expect("valid")
}

fn host(id: &str, actions: &[&str], app: bool) -> AgentView {
    let mut sample = rollguard_common::HostSample::empty(SystemTime::now(), Duration::from_secs(1));
    if app {
        sample.app = Some(Default::default());
    }
    AgentView {
        identity: HostIdentity {
            host_id: HostId::new(id.to_owned()),
            deployment: DeploymentName::new("cache".to_owned()),
            cohort: Cohort::Baseline,
            auto: true,
            app_version: "1".to_owned(),
            agent_version: "1".to_owned(),
            action_names: actions.iter().map(|a| (*a).to_owned()).collect(),
            interval: Duration::from_secs(1),
            session_id: 1,
            labels: BTreeMap::new(),
        },
        connected: true,
        stale: false,
        last_seen: SystemTime::now(),
        latest: Some(sample),
    }
}

fn failing(checks: &[preflight::Check]) -> Vec<&'static str> {
    checks.iter().filter(|c| !c.ok).map(|c| c.name).collect()
}

#[test]
fn a_ready_deployment_passes_every_check() {
    let policy = policy();
    let hosts: Vec<AgentView> = (0..20)
        .map(|i| host(&format!("h{i}"), &["promote", "rollback"], true))
        .collect();
    let input = Input {
        version: "2.0.0",
        phases: &[5, 25, 90, 100],
        accept_risk: "",
        policy: &policy,
        state: JudgeState::default(),
        hosts: &hosts,
        notify_configured: true,
        active: None,
    };
    let checks = preflight::run(&input);
    assert_eq!(failing(&checks), Vec::<&str>::new(), "{checks:#?}");
}

#[test]
fn each_gap_fails_its_own_check_and_names_the_hosts() {
    let mut policy = policy();
    policy.blast_radius.reputation_risk = None;
    policy.blast_radius.impact_level = Some("critical".to_owned());
    policy.dry_run = true;
    policy.max_beta_share = 0.01;
    policy.rules.truncate(1);
    let hosts = vec![
        host("web-1", &["promote", "rollback"], true),
        host("web-2", &["rollback"], true),
        host("web-3", &["promote", "rollback"], false),
    ];
    let input = Input {
        version: "../etc",
        phases: &[5, 25, 90, 100],
        accept_risk: "",
        policy: &policy,
        state: JudgeState::default(),
        hosts: &hosts,
        notify_configured: false,
        active: Some((3, "running")),
    };
    let checks = preflight::run(&input);
    assert_eq!(
        failing(&checks),
        vec![
            "version",
            "blast_radius",
            "risk",
            "actions",
            "policy_rules",
            "policy_armed",
            "app_health",
            "first_phase_share",
            "notification",
            "no_other_rollout",
        ]
    );
    let detail = |name| {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .detail
            .clone()
    };
    assert_eq!(detail("actions"), "web-2 (no promote)");
    assert!(
        detail("app_health").contains("web-3"),
        "{}",
        detail("app_health")
    );
    assert!(detail("blast_radius").contains("reputation_risk"));
    assert!(detail("no_other_rollout").contains("#3"));
    // The risk is accepted with a reason.
    let accepted = preflight::run(&Input {
        accept_risk: "the on-call watches it",
        ..input
    });
    assert!(accepted.iter().find(|c| c.name == "risk").unwrap().ok);
}

fn record(phase_started: SystemTime, passing: u32) -> RolloutRecord {
    RolloutRecord {
        deployment: "cache".to_owned(),
        number: 1,
        version: "2.0.0".to_owned(),
        phases: vec![5, 25, 90, 100],
        state: RolloutState::Running,
        created_by: "operator/alice".to_owned(),
        created_at_unix_ms: 0,
        start_at_unix_ms: 0,
        accept_risk: String::new(),
        briefed: false,
        phase_log: vec![PhaseRecord {
            percent: 5,
            started_at_unix_ms: crate::store::unix_ms(phase_started),
            settled_at_unix_ms: Some(crate::store::unix_ms(phase_started)),
            ended_at_unix_ms: None,
            hosts_total: 20,
            hosts: vec!["h1".to_owned()],
            promote_command: String::new(),
            approved_by: String::new(),
        }],
        promoted: vec!["h1".to_owned()],
        paused_from: None,
        incident_sent: false,
        ended_at_unix_ms: None,
        end_reason: String::new(),
        ended_by: String::new(),
        rollback_command: String::new(),
        retrospective: None,
        passing_rounds: passing,
        last_status_unix_ms: 0,
    }
}

#[test]
fn the_gate_waits_for_time_rounds_and_approval() {
    let mut config = policy().rollout;
    let now = SystemTime::now();
    let gate = view::gate(&record(now - Duration::from_secs(4), 1), &config, None, now).unwrap();
    assert_eq!(gate.waiting_for.len(), 2, "{gate:?}");
    assert!(gate.waiting_for[0].starts_with("time: 6s left"), "{gate:?}");
    assert_eq!(gate.waiting_for[1], "rounds: 1 of 3 passing in a row");
    let open = view::gate(
        &record(now - Duration::from_secs(11), 3),
        &config,
        None,
        now,
    )
    .unwrap();
    assert!(open.waiting_for.is_empty(), "{open:?}");
    config.approval = rollguard_common::rollout::Approval::Manual;
    let manual = view::gate(
        &record(now - Duration::from_secs(11), 3),
        &config,
        None,
        now,
    )
    .unwrap();
    assert_eq!(
        manual.waiting_for,
        vec!["approval: `rollguardctl rollout approve`"]
    );
    // The last phase has no gate but its promotes.
    let mut last = record(now, 0);
    last.phase_log[0].percent = 100;
    last.phases = vec![100];
    let gate = view::gate(&last, &config, None, now).unwrap();
    assert!(gate.waiting_for.is_empty(), "{gate:?}");
}
