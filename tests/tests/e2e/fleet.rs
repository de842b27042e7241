//! A real fleet: agents stream figures, a manual rollback runs on beta hosts
//! only and exactly once, and the store keeps it across a restart.

use std::time::Duration;

use rollguard_tests::{agent, test_dir, wait_until, Agent, AgentSpec, Coordinator};
use serde_json::Value;

fn connected_with_figures(agents: &[Value], hosts: &[&str]) -> bool {
    hosts.iter().all(|host| {
        agent(agents, host).is_some_and(|a| {
            a["connected"] == true
                && a["cpu_percent"]
                    .as_f64()
                    .is_some_and(|c| (0.0..=100.0).contains(&c))
                && a["memory_total_bytes"].as_u64().is_some_and(|t| t > 0)
                && a["memory_used_bytes"].as_u64() <= a["memory_total_bytes"].as_u64()
                && a["load1"].as_f64().is_some_and(|l| l >= 0.0)
                && a["disk_read_bytes_per_sec"].as_f64().is_some()
                && a["net_rx_bytes_per_sec"].as_f64().is_some()
        })
    })
}

#[test]
fn manual_rollback_runs_once_on_beta_hosts_only_and_survives_a_restart() {
    let root = test_dir("fleet");
    let mut coordinator = Coordinator::start(&root.join("data"), None).expect("coordinator");
    let beta = Agent::start(
        &root,
        &coordinator.url,
        &AgentSpec::with_evidence_action("beta-1", "cache", "beta"),
    )
    .expect("beta agent");
    let baseline = Agent::start(
        &root,
        &coordinator.url,
        &AgentSpec::with_evidence_action("base-1", "cache", "baseline"),
    )
    .expect("baseline agent");
    let no_action = Agent::start(
        &root,
        &coordinator.url,
        &AgentSpec {
            host_id: "beta-noaction".to_owned(),
            deployment: "cache".to_owned(),
            cohort: "beta".to_owned(),
            extra_toml: "[labels]\nrack = \"r7\"\nzone = \"eu-1b\"\n".to_owned(),
        },
    )
    .expect("agent without the action");

    coordinator
        .wait_for_agents("three agents with plausible figures", |agents| {
            connected_with_figures(agents, &["beta-1", "base-1", "beta-noaction"])
        })
        .expect("agents appear");
    // No policy names `cache`: it is listed as such, not judged by rules.
    let status = coordinator
        .ctl(&["status", "-o", "json"])
        .json()
        .expect("status");
    assert_eq!(status["deployments"][0]["deployment"], "cache", "{status}");
    assert_eq!(status["deployments"][0]["configured"], false, "{status}");
    // The agent's labels reach the operator.
    let agents = coordinator
        .ctl(&["agents", "-o", "json"])
        .json()
        .expect("agents");
    let labelled = agent(agents.as_array().expect("array"), "beta-noaction").expect("listed");
    assert_eq!(
        labelled["labels"],
        serde_json::json!({"rack": "r7", "zone": "eu-1b"}),
        "{labelled}"
    );

    let out = coordinator.ctl(&[
        "rollback",
        "cache",
        "--reason",
        "e2e test",
        "--wait",
        "--timeout",
        "60s",
        "-o",
        "json",
    ]);
    // beta-noaction rejects, so the command as a whole is not a success.
    assert!(!out.status.success(), "{out:?}");
    let json = out.json().expect("one JSON document");
    let command_id = json["command_id"].as_str().expect("command_id").to_owned();
    let results = json["results"].as_array().expect("results");
    assert_eq!(
        results.len(),
        2,
        "one entry per beta host, none for baseline: {json}"
    );
    let by_host = |host: &str| {
        results
            .iter()
            .find(|r| r["host_id"] == host)
            .unwrap_or_else(|| panic!("no result for {host}: {json}"))
    };
    assert_eq!(by_host("beta-1")["status"], "succeeded", "{json}");
    assert_eq!(by_host("beta-1")["exit_code"], 0, "{json}");
    // The agent's timings come through: when it started, how long it ran.
    assert!(by_host("beta-1")["started_at"].is_string(), "{json}");
    assert!(by_host("beta-1")["duration_ms"].is_u64(), "{json}");
    assert!(by_host("beta-noaction")["duration_ms"].is_null(), "{json}");
    assert_eq!(by_host("beta-noaction")["status"], "rejected", "{json}");
    assert!(
        by_host("beta-noaction")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unknown action")),
        "{json}"
    );
    assert_eq!(beta.evidence_lines(), 1, "the beta action ran exactly once");
    assert_eq!(
        baseline.evidence_lines(),
        0,
        "the baseline action never ran"
    );

    // Restart the coordinator on the same data dir: it must stop promptly
    // with agents connected, and still know the rollback afterwards.
    let status = coordinator
        .proc
        .terminate(Duration::from_secs(10))
        .expect("coordinator exits within 10s of SIGTERM");
    assert!(status.success(), "clean exit: {status}");
    // The agents would keep dialling the old port, which another test's
    // server may be given: stop them before anything else binds.
    drop((beta, baseline, no_action));
    let coordinator = Coordinator::start(&root.join("data"), None).expect("restart");
    let history = coordinator
        .ctl(&["history", "-o", "json"])
        .json()
        .expect("history json");
    let entry = history
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["command_id"] == command_id.as_str())
        .unwrap_or_else(|| panic!("the rollback is missing from history: {history}"));
    assert_eq!(entry["deployment"], "cache");
    assert_eq!(entry["action"], "rollback");
    assert_eq!(entry["reason"], "e2e test");
    assert!(
        entry["time"].is_string() && entry["actor"].is_string(),
        "{entry}"
    );

    // The agents come back to the new coordinator (it listens on a new port,
    // so start fresh agents on the same state dirs) and nothing runs twice.
    let beta = Agent::start(
        &root,
        &coordinator.url,
        &AgentSpec::with_evidence_action("beta-1", "cache", "beta"),
    )
    .expect("beta agent again");
    coordinator
        .wait_for_agents("beta-1 back", |agents| {
            connected_with_figures(agents, &["beta-1"])
        })
        .expect("beta back");
    let agents = coordinator
        .ctl(&["agents", "-o", "json"])
        .json()
        .expect("json");
    assert!(
        agent(agents.as_array().expect("array"), "base-1").is_some(),
        "hosts seen before the restart are still listed: {agents}"
    );
    assert_eq!(beta.evidence_lines(), 1, "no second run after restarts");
}

#[test]
fn an_offline_beta_host_runs_the_rollback_once_when_it_returns() {
    let root = test_dir("offline");
    let coordinator = Coordinator::start(&root.join("data"), None).expect("coordinator");
    let spec = AgentSpec::with_evidence_action("beta-off", "web", "beta");
    let mut beta = Agent::start(&root, &coordinator.url, &spec).expect("agent");
    coordinator
        .wait_for_agents("beta-off connected", |agents| {
            connected_with_figures(agents, &["beta-off"])
        })
        .expect("connected");
    beta.proc
        .terminate(Duration::from_secs(10))
        .expect("agent stops");
    coordinator
        .wait_for_agents("beta-off disconnected", |agents| {
            agent(agents, "beta-off").is_some_and(|a| a["connected"] == false)
        })
        .expect("disconnected");

    let out = coordinator.ctl(&["rollback", "web", "--reason", "while offline", "-o", "json"]);
    assert!(out.status.success(), "{out:?}");
    let json = out.json().expect("json");
    assert_eq!(json["targets"], serde_json::json!(["beta-off"]), "{json}");
    assert_eq!(beta.evidence_lines(), 0);

    let beta = Agent::start(&root, &coordinator.url, &spec).expect("agent returns");
    wait_until(
        "the action to run after reconnect",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || (beta.evidence_lines() > 0).then_some(()),
    )
    .expect("ran");
    // A further reconnect (restart) must not run it again.
    drop(beta);
    let beta = Agent::start(&root, &coordinator.url, &spec).expect("agent again");
    coordinator
        .wait_for_agents("beta-off back", |agents| {
            connected_with_figures(agents, &["beta-off"])
        })
        .expect("back");
    assert_eq!(beta.evidence_lines(), 1, "ran exactly once");
}

/// Issue 12: an agent given no cohort (`auto`) is admitted, and with no
/// rollout having promoted it the coordinator counts it in the baseline.
#[test]
fn an_agent_without_a_cohort_is_in_the_baseline_until_a_rollout_promotes_it() {
    let root = rollguard_tests::test_dir("auto-cohort");
    let coordinator =
        rollguard_tests::Coordinator::start(&root.join("data"), None).expect("coordinator");
    let _agent = rollguard_tests::Agent::start(
        &root,
        &coordinator.url,
        &rollguard_tests::AgentSpec::with_evidence_action("auto-1", "cache", "auto"),
    )
    .expect("agent");
    let agents = coordinator
        .wait_for_agents("auto-1 to connect", |agents| {
            rollguard_tests::agent(agents, "auto-1").is_some_and(|a| a["connected"] == true)
        })
        .expect("connected");
    let host = rollguard_tests::agent(&agents, "auto-1").expect("listed");
    assert_eq!(host["cohort"], "baseline", "{host}");
}
