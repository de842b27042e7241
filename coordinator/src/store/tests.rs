use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rollguard-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn audit(n: u64, deployment: &str) -> Write {
    Write::Audit(AuditRecord {
        time_unix_ms: n,
        deployment: deployment.to_owned(),
        action: "rollback".to_owned(),
        reason: format!("reason {n}"),
        command_id: format!("cmd-{n}"),
        actor: "test".to_owned(),
        detail: String::new(),
    })
}

/// A command of deployment `a` to host `h1`.
fn command(id: &str) -> Write {
    Write::Command(CommandRecord {
        command_id: id.to_owned(),
        deployment: "a".to_owned(),
        action: "rollback".to_owned(),
        reason: "r".to_owned(),
        actor: "t".to_owned(),
        issued_at_unix_ms: 1,
        not_after_unix_ms: 2,
        targets: vec!["h1".to_owned()],
        trace_context: Vec::new(),
        closed: false,
        request_id: String::new(),
        retry_of: String::new(),
        attempt: 0,
        local: false,
        kind: CommandKind::Rollback,
        version: String::new(),
    })
}

#[tokio::test]
async fn writes_survive_a_reopen_and_audit_keeps_order() {
    let dir = temp_dir("reopen");
    {
        let (store, writer) = Store::open(&dir, Arc::default()).expect("open");
        store
            .commit(vec![audit(1, "a"), audit(2, "b")])
            .await
            .expect("commit");
        store.queue(audit(3, "a")).await.expect("queue");
        store.commit(vec![command("cmd-x")]).await.expect("commit");
        drop(store);
        writer
            .join()
            .expect("writer exits when every handle is gone");
    }
    let (store, _writer) = Store::open(&dir, Arc::default()).expect("reopen");
    let all = store.audit(None, 100).expect("audit");
    let reasons: Vec<&str> = all.iter().map(|a| a.reason.as_str()).collect();
    assert_eq!(reasons, ["reason 1", "reason 2", "reason 3"]);
    let only_a = store.audit(Some("a"), 1).expect("audit");
    assert_eq!(only_a.len(), 1);
    assert_eq!(only_a[0].reason, "reason 3");
    store.commit(vec![audit(4, "a")]).await.expect("commit");
    let last = store.audit(None, 1).expect("audit");
    assert_eq!(
        last[0].reason, "reason 4",
        "sequence continues after reopen"
    );
    let snapshot = store.load().expect("load");
    assert_eq!(snapshot.commands.len(), 1);
    assert_eq!(snapshot.commands[0].targets, ["h1"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_forgotten_host_is_gone_after_a_reopen() {
    let dir = temp_dir("forget");
    let agent = |host: &str| {
        Write::Agent(AgentRecord {
            host_id: host.to_owned(),
            deployment: "a".to_owned(),
            cohort: rollguard_common::Cohort::Beta,
            auto: false,
            app_version: "1".to_owned(),
            agent_version: "1".to_owned(),
            action_names: Vec::new(),
            last_seen_unix_ms: 1,
            labels: Default::default(),
        })
    };
    {
        let (store, writer) = Store::open(&dir, Arc::default()).expect("open");
        store
            .commit(vec![agent("h1"), agent("h2")])
            .await
            .expect("commit");
        store
            .commit(vec![Write::ForgetAgent("h1".to_owned())])
            .await
            .expect("commit");
        drop(store);
        writer.join().expect("writer exits");
    }
    let (store, _writer) = Store::open(&dir, Arc::default()).expect("reopen");
    let hosts: Vec<String> = store
        .load()
        .expect("load")
        .agents
        .into_iter()
        .map(|a| a.host_id)
        .collect();
    assert_eq!(hosts, ["h2"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_forgotten_command_takes_its_results_and_no_others() {
    let dir = temp_dir("forget-command");
    let result = |id: &str| {
        Write::Result(ResultRecord {
            command_id: id.to_owned(),
            host_id: "h1".to_owned(),
            status: rollguard_common::CommandStatus::Succeeded,
            exit_code: Some(0),
            reason: String::new(),
            output_tail: String::new(),
            updated_at_unix_ms: 1,
            started_at_unix_ms: None,
            duration_ms: None,
        })
    };
    let (store, _writer) = Store::open(&dir, Arc::default()).expect("open");
    store
        .commit(vec![
            command("cmd-1"),
            result("cmd-1"),
            // Shares the prefix `cmd-1`: must survive.
            command("cmd-10"),
            result("cmd-10"),
        ])
        .await
        .expect("commit");
    store
        .commit(vec![Write::ForgetCommand("cmd-1".to_owned())])
        .await
        .expect("commit");
    // A result that raced the forget is dropped, not left as an orphan.
    store.commit(vec![result("cmd-1")]).await.expect("commit");
    let snapshot = store.load().expect("load");
    let commands: Vec<&str> = snapshot
        .commands
        .iter()
        .map(|c| c.command_id.as_str())
        .collect();
    let results: Vec<&str> = snapshot
        .results
        .iter()
        .map(|r| r.command_id.as_str())
        .collect();
    assert_eq!((commands, results), (vec!["cmd-10"], vec!["cmd-10"]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 15: the results of one batch are one row per command. Each reads
/// back as its own result, beside a single result stored as a row of its
/// own, and forgetting the command deletes both forms.
#[tokio::test]
async fn a_batch_of_results_is_one_row_that_reads_back_as_every_result() {
    let dir = temp_dir("grouped-results");
    let result = |command_id: &str, host: &str, status| {
        Write::Result(ResultRecord {
            command_id: command_id.to_owned(),
            host_id: host.to_owned(),
            status,
            exit_code: Some(0),
            reason: format!("{host} done"),
            output_tail: String::new(),
            updated_at_unix_ms: 7,
            started_at_unix_ms: Some(5),
            duration_ms: Some(2),
        })
    };
    use rollguard_common::CommandStatus::{Failed, Succeeded};
    let (store, writer) = Store::open(&dir, Arc::default()).expect("open");
    store
        .commit(vec![command("cmd-1"), command("cmd-2")])
        .await
        .expect("commit");
    let mut writes: Vec<Write> = (0..500)
        .map(|n| result("cmd-1", &format!("h{n:03}"), Succeeded))
        .collect();
    writes.push(result("cmd-2", "h1", Failed));
    store.commit(writes).await.expect("commit");
    // A later batch of the same command is a row of its own.
    store
        .commit(vec![
            result("cmd-1", "h500", Succeeded),
            result("cmd-1", "h501", Failed),
        ])
        .await
        .expect("commit");
    {
        let txn = store.db.get().expect("db").begin_read().expect("read");
        let rows = txn.open_table(RESULTS).expect("table").len().expect("len");
        assert_eq!(rows, 3, "one row per command and batch");
    }
    let mut results = store.load().expect("load").results;
    results.sort_by(|a, b| (&a.command_id, &a.host_id).cmp(&(&b.command_id, &b.host_id)));
    assert_eq!(results.len(), 503);
    let expected_hosts: Vec<String> = (0..502).map(|n| format!("h{n:03}")).collect();
    let cmd1: Vec<&ResultRecord> = results.iter().filter(|r| r.command_id == "cmd-1").collect();
    let mut hosts: Vec<String> = cmd1.iter().map(|r| r.host_id.clone()).collect();
    hosts.sort();
    assert_eq!(hosts, expected_hosts);
    let h501 = cmd1.iter().find(|r| r.host_id == "h501").expect("h501");
    assert_eq!((h501.status, h501.reason.as_str()), (Failed, "h501 done"));
    assert_eq!(
        (h501.started_at_unix_ms, h501.duration_ms),
        (Some(5), Some(2))
    );
    let cmd2: Vec<&ResultRecord> = results.iter().filter(|r| r.command_id == "cmd-2").collect();
    assert_eq!(cmd2.len(), 1);
    assert_eq!((cmd2[0].host_id.as_str(), cmd2[0].status), ("h1", Failed));

    store
        .commit(vec![Write::ForgetCommand("cmd-1".to_owned())])
        .await
        .expect("commit");
    drop(store);
    writer.join().expect("writer exits");
    let (store, _writer) = Store::open(&dir, Arc::default()).expect("reopen");
    let results = store.load().expect("load").results;
    let left: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r.command_id.as_str(), r.host_id.as_str()))
        .collect();
    assert_eq!(left, [("cmd-2", "h1")]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes nobody waits for share one paced commit, and a commit someone
/// waits for is made at once: with a pace no run outlasts, only the waited
/// commit can end the wait, and it carries every write queued before it.
#[tokio::test]
async fn queued_writes_share_a_paced_commit_that_a_waited_commit_does_not_wait_for() {
    let dir = temp_dir("paced");
    let counters = Arc::new(crate::counters::Counters::default());
    let pace = Duration::from_secs(3600);
    let (store, _writer) = Store::open_paced(&dir, Arc::clone(&counters), pace).expect("open");

    // Nothing was committed before it: the first commit is not paced.
    store.queue(audit(0, "a")).await.expect("queued");
    let deadline = Instant::now() + Duration::from_secs(30);
    while counters.commits().count < 1 {
        assert!(
            Instant::now() < deadline,
            "the first queued write was never committed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in 1..=200 {
        store.queue(audit(n, "a")).await.expect("queued");
    }
    tokio::time::timeout(Duration::from_secs(30), store.commit(vec![audit(201, "a")]))
        .await
        .expect("a waited commit is not held back by the pace")
        .expect("committed");

    assert_eq!(
        counters.commits().count,
        2,
        "200 queued writes and the waited one: one commit"
    );
    let entries = store.audit(Some("a"), 1000).expect("audit reads");
    assert_eq!(entries.len(), 202);
    assert_eq!(entries.last().map(|e| e.time_unix_ms), Some(201));
}
