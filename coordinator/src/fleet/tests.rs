use super::*;

fn result(command_id: &str, host: &str, status: CommandStatus) -> ResultRecord {
    ResultRecord {
        command_id: command_id.to_owned(),
        host_id: host.to_owned(),
        status,
        exit_code: None,
        reason: String::new(),
        output_tail: String::new(),
        updated_at_unix_ms: 1,
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
