//! Clock skew injected for real (issue 11): beta agents under `faketime`,
//! one an hour ahead and one an hour behind, against a coordinator on the
//! true time. Their samples count, and the policy's rollback runs exactly
//! once on each of them, with no catch-up.

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use rollguard_tests::{agent, test_dir, wait_until, Agent, AgentSpec, Coordinator};
use serde_json::Value;

/// The skews injected, as `faketime -f` offsets, with the sign they must show.
const AHEAD: &str = "+1h";
const BEHIND: &str = "-1h";

/// The TTL of commands here: well below the skew, so that an agent judging
/// deadlines by its own clock would see every command expired (an hour
/// ahead) or valid for 70 minutes (an hour behind).
const COORDINATOR_TOML: &str = "command_ttl = \"10m\"\n\
    [deployments.clock]\ncheck_interval = \"1s\"\nconsecutive_failures = 2\nmin_hosts = 2\n\
    [[deployments.clock.rules]]\nmetric = \"memory_percent\"\nmax = 0\n";

/// Says why `faketime` cannot be used here, if it cannot.
fn faketime_missing() -> Option<String> {
    let status = Command::new("faketime")
        .args(["-f", "+0", "/bin/true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => None,
        Ok(status) => Some(format!("faketime -f +0 /bin/true failed ({status})")),
        Err(err) => Some(format!(
            "faketime not installed (apt-get install faketime): {err}"
        )),
    }
}

/// Starts a beta agent whose wall clock is off by `offset`. Monotonic time
/// is left alone, so the agent's timers (tokio's `Instant`) run true.
fn skewed_beta(root: &std::path::Path, url: &str, host_id: &str, offset: &str) -> Agent {
    Agent::start_via(
        root,
        url,
        &AgentSpec::with_evidence_action(host_id, "clock", "beta"),
        &["faketime", "-f", offset],
        &[("FAKETIME_DONT_FAKE_MONOTONIC", "1")],
    )
    .expect("agent under faketime")
}

/// The agent's wall clock minus the test's, from the timestamp of its
/// first log line (written by the agent's own clock), in seconds.
fn log_clock_offset_secs(agent: &Agent) -> i64 {
    let first = wait_until(
        "the agent's first log line",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let log = agent.proc.log_text();
            let line = log.lines().next()?;
            let stamp = line.split_whitespace().next()?;
            humantime::parse_rfc3339_weak(stamp).ok()
        },
    )
    .expect("a timestamped log line");
    let now = SystemTime::now();
    match first.duration_since(now) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).expect("small"),
        Err(err) => -i64::try_from(err.duration().as_secs()).expect("small"),
    }
}

fn history(coordinator: &Coordinator) -> Vec<Value> {
    let out = coordinator.ctl(&["history", "-o", "json"]);
    out.json()
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_else(|| panic!("history failed: {out:?}"))
}

fn rounds(coordinator: &Coordinator) -> Vec<Value> {
    let out = coordinator.ctl(&["why", "clock", "--rounds", "1000", "-o", "json"]);
    out.json()
        .ok()
        .and_then(|v| v["rounds"].as_array().cloned())
        .unwrap_or_else(|| panic!("why failed: {out:?}"))
}

/// Each host's status in `results CMD -o json`, once every beta host has a
/// final one.
fn final_results(coordinator: &Coordinator, command_id: &str) -> Vec<(String, String)> {
    wait_until(
        "a final result from every beta host",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let out = coordinator.ctl(&["results", command_id, "-o", "json"]);
            let results = out.json().ok()?;
            let mut hosts: Vec<(String, String)> = results["results"]
                .as_array()?
                .iter()
                .map(|r| {
                    let field = |k: &str| r[k].as_str().unwrap_or("").to_owned();
                    (field("host_id"), field("status"))
                })
                .collect();
            hosts.sort();
            let done = |s: &str| matches!(s, "succeeded" | "failed" | "rejected");
            (hosts.len() == 2 && hosts.iter().all(|(_, s)| done(s))).then_some(hosts)
        },
    )
    .expect("results")
}

#[test]
fn agents_an_hour_ahead_or_behind_run_the_policy_rollback_once_with_no_catch_up() {
    if let Some(reason) = faketime_missing() {
        rollguard_tests::skip(
            "agents_an_hour_ahead_or_behind_run_the_policy_rollback_once_with_no_catch_up",
            &reason,
        );
        return;
    }
    let root = test_dir("clock-skew");
    let coordinator =
        Coordinator::start(&root.join("data"), Some(COORDINATOR_TOML)).expect("coordinator");
    let ahead = skewed_beta(&root, &coordinator.url, "beta-ahead", AHEAD);
    let behind = skewed_beta(&root, &coordinator.url, "beta-behind", BEHIND);
    let baseline = Agent::start(
        &root,
        &coordinator.url,
        &AgentSpec::with_evidence_action("base-1", "clock", "baseline"),
    )
    .expect("baseline agent");

    // The fault is real: each skewed agent's own clock is off by about an hour.
    let ahead_secs = log_clock_offset_secs(&ahead);
    let behind_secs = log_clock_offset_secs(&behind);
    assert!(
        ahead_secs > 50 * 60,
        "beta-ahead's clock is ahead: {ahead_secs}s"
    );
    assert!(
        behind_secs < -50 * 60,
        "beta-behind's clock is behind: {behind_secs}s"
    );

    // Skewed hosts count as connected and fresh.
    coordinator
        .wait_for_agents("every host connected and fresh", |agents| {
            ["beta-ahead", "beta-behind", "base-1"].iter().all(|h| {
                agent(agents, h).is_some_and(|a| a["connected"] == true && a["stale"] == false)
            })
        })
        .expect("connected");

    // The rule fails on every host; with `min_hosts = 2` a round judges only
    // when the samples of both skewed betas count in it.
    let decision = wait_until(
        "the policy's rollback in the history",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || {
            history(&coordinator)
                .into_iter()
                .find(|e| e["action"] == "rollback" && e["actor"] == "rollguard policy")
        },
    )
    .expect("the policy rolls back");
    let command_id = decision["command_id"]
        .as_str()
        .expect("command id")
        .to_owned();
    let all = rounds(&coordinator);
    let deciding = all
        .iter()
        .find(|r| r["command_id"] == command_id.as_str())
        .unwrap_or_else(|| panic!("no round decided {command_id}: {all:#?}"));
    assert_eq!(deciding["beta_hosts"], 2, "{deciding:#}");

    let hosts = final_results(&coordinator, &command_id);
    // A catch-up would follow a rejection within the coordinator's handling
    // of it; two more judged rounds leave it the time.
    let seen = rounds(&coordinator).len();
    wait_until(
        "two more judged rounds",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || (rounds(&coordinator).len() >= seen + 2).then_some(()),
    )
    .expect("rounds go on");
    let rollbacks: Vec<Value> = history(&coordinator)
        .into_iter()
        .filter(|e| e["action"] == "rollback")
        .collect();
    let evidence = [
        ("beta-ahead", ahead.evidence_lines()),
        ("beta-behind", behind.evidence_lines()),
        ("base-1", baseline.evidence_lines()),
    ];
    assert_eq!(
        hosts,
        [
            ("beta-ahead".to_owned(), "succeeded".to_owned()),
            ("beta-behind".to_owned(), "succeeded".to_owned()),
        ],
        "evidence {evidence:?}, history {rollbacks:#?}"
    );
    assert_eq!(
        evidence,
        [("beta-ahead", 1), ("beta-behind", 1), ("base-1", 0)],
        "each beta host ran the rollback exactly once, the baseline never"
    );
    assert_eq!(
        rollbacks.len(),
        1,
        "one decision and no catch-up: {rollbacks:#?}"
    );
}
