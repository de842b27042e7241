use super::*;
use crate::store::CommandKind;

/// The fleet with a stand-in for a host's stream: these tests never send.
type Fleet = super::Fleet<&'static str>;

fn result(command_id: &str, host: &str, status: CommandStatus) -> ResultRecord {
    ResultRecord {
        command_id: command_id.to_owned(),
        host_id: host.to_owned(),
        status,
        exit_code: None,
        reason: String::new(),
        output_tail: String::new(),
        updated_at_unix_ms: 1,
        started_at_unix_ms: None,
        duration_ms: None,
    }
}

/// A beta host of `deployment` as its Hello names it.
fn beta_host(host: &str, deployment: &str) -> HostIdentity {
    HostIdentity {
        host_id: HostId::new(host.to_owned()),
        deployment: DeploymentName::new(deployment.to_owned()),
        cohort: Cohort::Beta,
        auto: false,
        app_version: "2".to_owned(),
        agent_version: "1".to_owned(),
        action_names: Vec::new(),
        interval: Duration::from_secs(1),
        session_id: 1,
        labels: BTreeMap::new(),
    }
}

fn counts(fleet: &Fleet) -> Vec<(&'static str, u64)> {
    fleet
        .command_results_by_status()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The kept tally agrees with a walk over every target of every command.
fn recount(fleet: &Fleet) -> Vec<(&'static str, u64)> {
    let inner = fleet.lock();
    let mut tally: BTreeMap<&'static str, u64> = BTreeMap::new();
    for state in inner.commands.values() {
        for target in &state.record.targets {
            let status = state
                .results
                .get(target)
                .map_or(CommandStatus::NoAnswer, |r| r.status);
            *tally.entry(status.as_str()).or_default() += 1;
        }
    }
    let order = [
        "accepted",
        "running",
        "succeeded",
        "failed",
        "rejected",
        "no_answer",
    ];
    order
        .into_iter()
        .filter_map(|s| tally.get(s).map(|n| (s, *n)))
        .collect()
}

#[test]
fn result_counts_follow_targets_and_results() {
    let command = CommandRecord {
        command_id: "cmd-1".to_owned(),
        deployment: "shop".to_owned(),
        action: "rollback".to_owned(),
        reason: "test".to_owned(),
        actor: "test".to_owned(),
        issued_at_unix_ms: 1,
        not_after_unix_ms: u64::MAX,
        targets: vec!["h1".to_owned(), "h2".to_owned(), "h3".to_owned()],
        trace_context: Vec::new(),
        closed: false,
        request_id: String::new(),
        retry_of: String::new(),
        attempt: 0,
        local: false,
        kind: CommandKind::Rollback,
        version: String::new(),
    };
    let fleet = Fleet::from_snapshot(Snapshot {
        commands: vec![command],
        results: vec![
            result("cmd-1", "h1", CommandStatus::Succeeded),
            result("cmd-1", "h2", CommandStatus::Running),
            // Not a target: stored once, never counted.
            result("cmd-1", "stranger", CommandStatus::Failed),
        ],
        ..Snapshot::default()
    });
    assert_eq!(
        counts(&fleet),
        [("running", 1), ("succeeded", 1), ("no_answer", 1)]
    );
    assert_eq!(counts(&fleet), recount(&fleet));

    let update = |host: &str, status| {
        fleet.command_update(&HostId::new(host.to_owned()), result("cmd-1", host, status))
    };
    assert!(update("h2", CommandStatus::Succeeded)
        .expect("known")
        .is_some());
    assert!(update("h3", CommandStatus::Accepted)
        .expect("known")
        .is_some());
    // A repeat and a step back from a final state change nothing.
    assert!(update("h1", CommandStatus::Succeeded)
        .expect("known")
        .is_none());
    assert!(update("h2", CommandStatus::Running)
        .expect("known")
        .is_none());
    assert_eq!(counts(&fleet), [("accepted", 1), ("succeeded", 2)]);
    assert_eq!(counts(&fleet), recount(&fleet));
}

fn agent_record(host: &str, cohort: Cohort) -> AgentRecord {
    AgentRecord {
        host_id: host.to_owned(),
        deployment: "shop".to_owned(),
        cohort,
        auto: false,
        app_version: "1".to_owned(),
        agent_version: "1".to_owned(),
        action_names: vec!["rollback".to_owned()],
        last_seen_unix_ms: 1,
        labels: BTreeMap::new(),
    }
}

fn decision(
    id: &str,
    issued: u64,
    not_after: u64,
    targets: &[&str],
    closed: bool,
) -> CommandRecord {
    CommandRecord {
        command_id: id.to_owned(),
        deployment: "shop".to_owned(),
        action: "rollback".to_owned(),
        reason: "test".to_owned(),
        actor: "test".to_owned(),
        issued_at_unix_ms: issued,
        not_after_unix_ms: not_after,
        targets: targets.iter().map(|t| (*t).to_owned()).collect(),
        trace_context: Vec::new(),
        closed,
        request_id: String::new(),
        retry_of: String::new(),
        attempt: 0,
        local: false,
        kind: CommandKind::Rollback,
        version: String::new(),
    }
}

#[test]
fn only_a_beta_host_that_was_never_sent_the_newest_decision_missed_it() {
    let fleet_with = |commands: Vec<CommandRecord>| {
        Fleet::from_snapshot(Snapshot {
            agents: vec![
                agent_record("beta-1", Cohort::Beta),
                agent_record("beta-2", Cohort::Beta),
                agent_record("base-1", Cohort::Baseline),
            ],
            commands,
            ..Snapshot::default()
        })
    };
    let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    let missed = |fleet: &Fleet, host: &str, ms: u64| {
        fleet
            .missed_decision(&HostId::new(host.to_owned()), at(ms))
            .map(|c| c.command_id)
    };
    let original = decision("cmd-1", 1_000, 2_000, &["beta-1"], false);

    let fleet = fleet_with(vec![original.clone()]);
    assert_eq!(missed(&fleet, "beta-2", 3_000).as_deref(), Some("cmd-1"));
    // Before the deadline it joins the command itself as a late target.
    assert_eq!(missed(&fleet, "beta-2", 1_500), None);
    // A target gets the command on connect and answers it.
    assert_eq!(missed(&fleet, "beta-1", 3_000), None);
    assert_eq!(missed(&fleet, "base-1", 3_000), None);
    assert_eq!(missed(&fleet, "stranger", 3_000), None);

    // Once caught up, never twice.
    let caught_up = decision("cmd-2", 3_000, 4_000, &["beta-2"], true);
    let fleet = fleet_with(vec![original.clone(), caught_up]);
    assert_eq!(missed(&fleet, "beta-2", 5_000), None);

    // Only the newest decision counts: beta-2 was a target of a later one.
    let later = decision("cmd-3", 2_500, 2_800, &["beta-1", "beta-2"], false);
    let fleet = fleet_with(vec![original, later]);
    assert_eq!(missed(&fleet, "beta-2", 5_000), None);
    assert_eq!(missed(&fleet, "beta-1", 5_000), None);
}

#[test]
fn a_resent_backlog_is_applied_but_only_its_last_round_window_is_judged() {
    let fleet = Fleet::from_snapshot(Snapshot::default());
    let host = HostId::new("beta-1".to_owned());
    let identity = HostIdentity {
        session_id: 7,
        ..beta_host(host.as_str(), "shop")
    };
    let now = SystemTime::now();
    let conn = fleet.connect(identity, "tx", now).conn_id;
    // A minute cut off: 60 samples a second apart, the newest just taken
    // (by the agent's clock, which here runs an hour behind).
    let agent_now = now - Duration::from_secs(3600);
    let backlog: Vec<HostSample> = (0..60u64)
        .rev()
        .map(|age| HostSample::empty(agent_now - Duration::from_secs(age), Duration::from_secs(1)))
        .collect();
    let window = Duration::from_secs(5);
    let applied = fleet
        .record_samples(&host, conn, 1, backlog, window, now)
        .expect("connected");
    assert_eq!(
        applied,
        Applied {
            applied: 60,
            late: 55,
            duplicates: 0
        }
    );
    // The next live sample counts as usual, whatever the clock.
    let live = vec![HostSample::empty(
        agent_now + Duration::from_secs(1),
        Duration::from_secs(1),
    )];
    let applied = fleet
        .record_samples(&host, conn, 61, live, window, now)
        .expect("connected");
    assert_eq!((applied.applied, applied.late), (1, 0));
    let (rounds, ..) = fleet.take_round(&DeploymentName::new("shop".to_owned()), now);
    assert_eq!(rounds.len(), 1);
    assert_eq!(
        rounds[0].samples, 6,
        "the backlog's last 5 s, and the live one"
    );
}

#[test]
fn hosts_gone_past_the_retention_are_forgotten_and_connected_ones_never() {
    let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    let mut old = agent_record("old", Cohort::Beta);
    old.last_seen_unix_ms = 1_000;
    let mut recent = agent_record("recent", Cohort::Baseline);
    recent.last_seen_unix_ms = 9_000;
    let mut back = agent_record("back", Cohort::Beta);
    back.last_seen_unix_ms = 1_000;
    let fleet = Fleet::from_snapshot(Snapshot {
        agents: vec![old, recent, back.clone()],
        ..Snapshot::default()
    });
    // "back" was away as long as "old", but is connected again.
    let identity = HostIdentity {
        app_version: "1".to_owned(),
        ..beta_host("back", &back.deployment)
    };
    fleet.connect(identity, "tx", at(1_000));
    // The store learns that connected hosts are still there.
    let seen: Vec<(String, u64)> = fleet
        .touch_connected(at(9_500))
        .into_iter()
        .map(|r| (r.host_id, r.last_seen_unix_ms))
        .collect();
    assert_eq!(seen, [("back".to_owned(), 9_500)]);

    let mut forgotten = Vec::new();
    let n = fleet.forget_gone(at(10_000), Duration::from_secs(5), |h| {
        forgotten.push(h.to_string())
    });
    assert_eq!((n, forgotten), (1, vec!["old".to_owned()]));
    let left: Vec<String> = fleet
        .agents(None)
        .into_iter()
        .map(|a| a.identity.host_id.to_string())
        .collect();
    assert_eq!(left, ["back", "recent"]);
}

#[test]
fn old_commands_are_forgotten_but_a_deployments_newest_decision_is_kept() {
    let day = 24 * 3600 * 1000;
    let fleet = Fleet::from_snapshot(Snapshot {
        agents: vec![agent_record("h4", Cohort::Beta)],
        commands: vec![
            decision("cmd-old", 1, 2, &["h1", "h2"], false),
            decision("cmd-old-catch-up", 3, 4, &["h3"], true),
            decision("cmd-newest", 5, 6, &["h1"], false),
            // Old too, but it repeats the newest decision for h4: it is what
            // tells that h4 has caught up.
            decision("cmd-newest-catch-up", 7, 8, &["h4"], true),
            decision("cmd-recent-catch-up", 40 * day, 40 * day + 1, &["h2"], true),
        ],
        results: vec![result("cmd-old", "h1", CommandStatus::Succeeded)],
        ..Snapshot::default()
    });
    let now = SystemTime::UNIX_EPOCH + Duration::from_millis(41 * day);
    let mut forgotten: Vec<String> = fleet
        .forget_old_commands(now, Duration::from_secs(30 * 24 * 3600))
        .into_iter()
        .map(|id| id.to_string())
        .collect();
    forgotten.sort();
    assert_eq!(forgotten, ["cmd-old", "cmd-old-catch-up"]);
    assert!(fleet.command("cmd-old").is_none());
    assert!(
        fleet.command("cmd-newest").is_some(),
        "may still be in force"
    );
    assert!(fleet.command("cmd-newest-catch-up").is_some());
    assert!(fleet.command("cmd-recent-catch-up").is_some());
    // h4 caught up with the newest decision long ago: it is not sent it again.
    assert_eq!(
        fleet.missed_decision(&HostId::new("h4".to_owned()), now),
        None
    );
    // The kept tally lost exactly the forgotten targets.
    assert_eq!(counts(&fleet), recount(&fleet));
    assert_eq!(counts(&fleet), [("no_answer", 3)]);
}

#[test]
fn a_local_run_is_recorded_once_counted_and_never_sent_retried_or_a_catch_up() {
    let original = decision("cmd-1", 1_000, 2_000, &["beta-1"], false);
    let fleet = Fleet::from_snapshot(Snapshot {
        agents: vec![agent_record("beta-1", Cohort::Beta)],
        commands: vec![original],
        ..Snapshot::default()
    });
    let local = CommandRecord {
        local: true,
        kind: CommandKind::Rollback,
        version: String::new(),
        ..decision("local-beta-1-3000", 3_000, 3_000, &["beta-1"], true)
    };
    let failed = result("local-beta-1-3000", "beta-1", CommandStatus::Failed);
    assert!(fleet.record_local(local.clone(), failed.clone()));
    assert!(
        !fleet.record_local(local.clone(), failed.clone()),
        "a repeated report is a repeat"
    );
    assert_eq!(counts(&fleet), vec![("failed", 1), ("no_answer", 1)]);
    assert_eq!(counts(&fleet), recount(&fleet));
    // Not a catch-up of cmd-1: beta-1 still missed it.
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(5_000);
    let host = HostId::new("beta-1".to_owned());
    assert_eq!(
        fleet
            .missed_decision(&host, at)
            .map(|c| c.command_id)
            .as_deref(),
        None,
        "beta-1 was a target of cmd-1"
    );
    assert!(!fleet
        .lock()
        .caught_up(&host, &decision("cmd-1", 1_000, 2_000, &[], false)));
    // Never retried, never needing a person through the coordinator's retries.
    assert!(fleet.failed_unretried(5).is_empty());
    assert!(fleet.needs_attention("shop", 0).is_empty());
    // Never sent: a reconnect of its host gets only cmd-1.
    let connected = fleet.connect(beta_host(host.as_str(), "shop"), "tx", at);
    let pending: Vec<String> = connected
        .pending
        .into_iter()
        .map(|c| c.command_id)
        .collect();
    assert_eq!(pending, vec!["cmd-1".to_owned()]);
    // A record the store refused is forgotten, and taken in again later.
    fleet.forget_local("local-beta-1-3000");
    assert_eq!(counts(&fleet), vec![("no_answer", 1)]);
    fleet.forget_local("cmd-1");
    assert!(
        fleet.command("cmd-1").is_some(),
        "only local runs are forgotten so"
    );
    assert!(fleet.record_local(local, failed));
}

/// The deployments the judge takes rounds of follow connects, replaced
/// connections (to the same deployment or another) and disconnects, with no
/// pass over the hosts (issue 15).
#[test]
fn connected_deployments_follow_streams_as_they_come_and_go() {
    let fleet = Fleet::from_snapshot(Snapshot::default());
    let names = |fleet: &Fleet| -> Vec<String> {
        fleet
            .connected_deployments()
            .iter()
            .map(|d| d.to_string())
            .collect()
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    let a1 = fleet.connect(beta_host("a1", "shop"), "tx", now).conn_id;
    let b1 = fleet.connect(beta_host("b1", "cart"), "tx", now).conn_id;
    assert_eq!(names(&fleet), ["cart", "shop"]);
    // b1 comes back as a host of shop: cart has no stream left.
    let connected = fleet.connect(beta_host("b1", "shop"), "tx", now);
    assert_eq!(connected.replaced, Some("tx"));
    assert_eq!(names(&fleet), ["shop"]);
    // The replaced stream's own end changes nothing.
    assert!(fleet
        .disconnect(&HostId::new("b1".to_owned()), b1, now)
        .is_none());
    assert_eq!(names(&fleet), ["shop"]);
    fleet.disconnect(&HostId::new("a1".to_owned()), a1, now);
    assert_eq!(names(&fleet), ["shop"], "b1 is still connected");
    fleet.disconnect(&HostId::new("b1".to_owned()), connected.conn_id, now);
    assert!(names(&fleet).is_empty());
    // A second disconnect of the same stream counts nothing twice.
    fleet.disconnect(&HostId::new("b1".to_owned()), connected.conn_id, now);
    fleet.connect(beta_host("a1", "shop"), "tx", now);
    assert_eq!(names(&fleet), ["shop"]);
}
