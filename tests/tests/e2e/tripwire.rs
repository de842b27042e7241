//! The local tripwire (issue 11), with real processes: a beta agent whose
//! coordinator is SIGKILLed runs its rollback once on its own when its app
//! keeps failing, never again in that outage (also across an agent
//! restart), and reports it when the coordinator is back; and it never
//! fires while the coordinator is reachable.
//!
//! The agent's `version_command` appends a line to `ticks` on every
//! interval: the witness that rounds went by, so "it did not run again"
//! is checked after a counted number of intervals, not after a sleep.

use std::path::Path;
use std::time::Duration;

use rollguard_tests::{test_dir, wait_until, Agent, AgentSpec, Coordinator, DemoApp, BETA_VERSION};
use serde_json::Value;

const HOST: &str = "trip-1";
const DEPLOYMENT: &str = "guarded";
/// Intervals (250 ms each) after which a second run would have shown:
/// more than `after` (2 s) plus three rounds, with room to spare.
const MORE_TICKS: usize = 20;

/// An agent of `app` with a tripwire: `after` away, 3 rounds over
/// `error_rate` max 0.2, action `rollback` (evidence, then the stable version).
fn spec(root: &Path, app: &DemoApp, after: &str) -> AgentSpec {
    let state_dir = root.join(HOST);
    let version = app.version_file.display();
    AgentSpec {
        host_id: HOST.to_owned(),
        deployment: DEPLOYMENT.to_owned(),
        cohort: "beta".to_owned(),
        extra_toml: format!(
            "version_command = [\"/bin/sh\", \"-c\", \"echo tick >> '{ticks}'; cat '{version}'\"]\n\
             [app]\nscrape_url = \"{url}/metrics\"\nprobe_url = \"{url}/healthz\"\n\
             [actions.rollback]\n\
             command = [\"/bin/sh\", \"-c\", \"echo ran >> evidence; echo 1.9.4 > '{version}'; echo rolled back\"]\n\
             timeout = \"30s\"\n\
             [tripwire]\nafter = \"{after}\"\naction = \"rollback\"\nconsecutive_failures = 3\n\
             [[tripwire.rules]]\nmetric = \"error_rate\"\nmax = 0.2\n",
            ticks = state_dir.join("ticks").display(),
            url = app.url,
        ),
    }
}

/// Intervals the agent has gone through (all its processes).
fn ticks(root: &Path) -> usize {
    std::fs::read_to_string(root.join(HOST).join("ticks"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Waits until `n` more intervals went by.
fn wait_ticks(root: &Path, n: usize) {
    let target = ticks(root) + n;
    wait_until(
        &format!("{n} more agent intervals"),
        Duration::from_secs(60),
        Duration::from_millis(50),
        || (ticks(root) >= target).then_some(()),
    )
    .expect("the agent keeps ticking");
}

fn wait_connected(coordinator: &Coordinator) {
    coordinator
        .wait_for_agents("the agent to connect", |agents| {
            rollguard_tests::agent(agents, HOST).is_some_and(|a| a["connected"] == true)
        })
        .expect("connected");
}

/// Makes the app fail on every version (a rollback does not cure it, so a
/// second run would have every chance to happen), or heals it.
fn set_failing(app: &DemoApp, failing: bool) {
    let text = if failing { "error_rate=0.5\n" } else { "" };
    std::fs::write(&app.control_file, text).expect("control file");
}

#[test]
fn a_beta_host_rolls_back_once_on_its_own_while_the_coordinator_is_away_and_reports_it() {
    let root = test_dir("tripwire-away");
    let mut coordinator = Coordinator::start(&root.join("data"), None).expect("coordinator");
    let app = DemoApp::start(&root.join("app"), BETA_VERSION, "1h").expect("app");
    let spec = spec(&root, &app, "2s");
    let mut agent = Agent::start(&root, &coordinator.url, &spec).expect("agent");
    wait_connected(&coordinator);

    coordinator.proc.kill9().expect("coordinator killed");
    set_failing(&app, true);
    wait_until(
        "the tripwire to run the action",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || (agent.evidence_lines() >= 1).then_some(()),
    )
    .expect("the action ran");
    wait_ticks(&root, MORE_TICKS);
    assert_eq!(agent.evidence_lines(), 1, "once per outage");

    // An agent restarted in the same outage knows from its journal that it fired.
    agent.proc.kill9().expect("agent killed");
    let agent = Agent::start(&root, &coordinator.url, &spec).expect("agent restarts");
    wait_ticks(&root, MORE_TICKS);
    assert_eq!(
        agent.evidence_lines(),
        1,
        "not again after an agent restart"
    );

    // The link returns: the report is recorded, once, with the figures.
    set_failing(&app, false);
    let coordinator = coordinator
        .restart_same_address()
        .expect("coordinator back");
    wait_connected(&coordinator);
    let entry = wait_until(
        "the local rollback in the history",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let out = coordinator.ctl(&["history", "--deployment", DEPLOYMENT, "-o", "json"]);
            let entries = out.json().ok()?;
            entries
                .as_array()?
                .iter()
                .find(|e| e["action"] == "local_rollback")
                .cloned()
        },
    )
    .expect("recorded");
    assert_eq!(entry["actor"], format!("host {HOST}"), "{entry}");
    let reason = entry["reason"].as_str().expect("reason");
    assert!(
        reason.contains(&format!("local tripwire on {HOST}"))
            && reason.contains("error_rate")
            && reason.contains("> max 0.2")
            && reason.contains("3 local round(s)"),
        "{reason}"
    );
    let detail = entry["detail"].as_str().expect("detail");
    assert!(
        detail.contains("succeeded") && detail.contains("(max 0.2)"),
        "{detail}"
    );
    let command_id = entry["command_id"].as_str().expect("command id").to_owned();
    assert!(
        command_id.starts_with(&format!("local-{HOST}-")),
        "{command_id}"
    );

    let out = coordinator.ctl(&["results", &command_id, "-o", "json"]);
    assert!(out.status.success(), "{out:?}");
    let results = out.json().expect("json");
    assert_eq!(results["local"], true, "{results}");
    assert_eq!(results["action"], "rollback");
    let hosts = results["results"].as_array().expect("results");
    assert_eq!(hosts.len(), 1, "{results}");
    assert_eq!(hosts[0]["host_id"], HOST);
    assert_eq!(hosts[0]["status"], "succeeded");
    let table = coordinator.ctl(&["results", &command_id]);
    assert!(
        table
            .stdout
            .contains(&format!("local rollback {command_id}"))
            && table.stdout.contains(&format!("by host {HOST}")),
        "{}",
        table.stdout
    );

    // The agent hears the acknowledgement and stops reporting it.
    let journal = agent.state_dir.join("commands.journal");
    wait_until(
        "the acknowledgement in the agent's journal",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            std::fs::read_to_string(&journal)
                .ok()?
                .contains("\"state\":\"reported\"")
                .then_some(())
        },
    )
    .expect("acknowledged");
    let history = coordinator.ctl(&["history", "--deployment", DEPLOYMENT, "-o", "json"]);
    let recorded = history.json().expect("json");
    let n_local = recorded
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "local_rollback")
        .count();
    assert_eq!(n_local, 1, "recorded once: {recorded}");
    assert_eq!(
        agent.evidence_lines(),
        1,
        "the coordinator sent it to nobody"
    );
}

#[test]
fn the_tripwire_never_fires_while_the_coordinator_is_reachable() {
    let root = test_dir("tripwire-reachable");
    // No rules for the deployment: the coordinator itself never rolls back.
    let coordinator = Coordinator::start(&root.join("data"), None).expect("coordinator");
    let app = DemoApp::start(&root.join("app"), BETA_VERSION, "1h").expect("app");
    set_failing(&app, true);
    let agent = Agent::start(&root, &coordinator.url, &spec(&root, &app, "1s")).expect("agent");
    wait_connected(&coordinator);
    wait_ticks(&root, MORE_TICKS);
    // Connected, and the app failing as the coordinator sees it (a
    // scrape with errors over the tripwire's max).
    coordinator
        .wait_for_agents("the agent, connected, seeing its app fail", |agents| {
            rollguard_tests::agent(agents, HOST).is_some_and(|a: &Value| {
                a["connected"] == true
                    && a["app"]["error_rate"]
                        .as_f64()
                        .is_some_and(|rate| rate > 0.2)
            })
        })
        .expect("agents");
    assert_eq!(agent.evidence_lines(), 0, "never while reachable");
    assert!(
        !agent.proc.log_text().contains("local tripwire fired"),
        "{}",
        agent.proc.log_text()
    );
}
