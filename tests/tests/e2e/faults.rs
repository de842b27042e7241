//! Faults injected for real: a full disk under the coordinator's store.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rollguard_tests::{http_get, test_dir, wait_until, Agent, AgentSpec, Coordinator};

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts it, or says why it cannot (not root, no mount permission).
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// Writes zeros into `name` until the file system is full.
    fn fill(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        let mut file = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(err) = file.write_all(&chunk) {
                assert_eq!(err.raw_os_error(), Some(28), "ENOSPC: {err}");
                break;
            }
        }
        // Whatever is left in the page cache is flushed or refused now.
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Waits until `host` is connected.
fn wait_connected(coordinator: &Coordinator, host: &str) {
    coordinator
        .wait_for_agents(&format!("{host} to connect"), |agents| {
            rollguard_tests::agent(agents, host).is_some_and(|a| a["connected"] == true)
        })
        .expect("connected");
}

/// `rollback cache --reason REASON`; the command id it made.
fn roll_back(coordinator: &Coordinator, reason: &str) -> String {
    let out = coordinator.ctl(&["rollback", "cache", "--reason", reason, "-o", "json"]);
    assert!(out.status.success(), "{out:?}");
    out.json().expect("json")["command_id"]
        .as_str()
        .expect("command id")
        .to_owned()
}

fn ready(http: &str) -> Option<u16> {
    http_get(&format!("{http}/readyz"))
        .ok()
        .map(|(code, _)| code)
}

fn store_errors(http: &str) -> f64 {
    let (_, text) = http_get(&format!("{http}/metrics")).expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("rollguard_store_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rollguard_store_errors_total is exported")
}

#[test]
fn a_full_store_disk_is_reported_and_the_store_recovers_without_a_restart() {
    let root = test_dir("fault-store-full");
    let tmpfs = match Tmpfs::mount(&root.join("data"), "8m") {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            rollguard_tests::skip(
                "a_full_store_disk_is_reported_and_the_store_recovers_without_a_restart",
                &reason,
            );
            return;
        }
    };
    let coordinator = Coordinator::start(&tmpfs.dir, None).expect("coordinator");
    let http = coordinator.http_url().expect("http url");
    let beta = Agent::start(
        &root,
        &coordinator.url,
        &AgentSpec::with_evidence_action("beta-1", "cache", "beta"),
    )
    .expect("agent");
    wait_connected(&coordinator, "beta-1");
    assert_eq!(ready(&http), Some(200));
    assert_eq!(store_errors(&http), 0.0);

    let filler = tmpfs.fill("filler");
    // A decision that cannot be committed is refused and never sent.
    let out = coordinator.ctl(&["rollback", "cache", "--reason", "disk full"]);
    assert!(
        !out.status.success(),
        "the rollback cannot be stored: {out:?}"
    );
    assert!(out.stderr.contains("store"), "{}", out.stderr);
    wait_until(
        "/readyz to answer 503",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || (ready(&http) == Some(503)).then_some(()),
    )
    .expect("not ready while the store cannot commit");
    assert!(store_errors(&http) >= 1.0);
    assert_eq!(
        beta.evidence_lines(),
        0,
        "nothing ran for an unstored decision"
    );

    // Space comes back: the coordinator reopens the store by itself.
    std::fs::remove_file(&filler).expect("free the space");
    wait_until(
        "/readyz to answer 200 again",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || (ready(&http) == Some(200)).then_some(()),
    )
    .expect("ready again without a restart");
    let out = coordinator.ctl(&[
        "rollback",
        "cache",
        "--reason",
        "space back",
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        beta.evidence_lines(),
        1,
        "the beta host ran the rollback exactly once"
    );
    let history = coordinator.ctl(&["history", "-o", "json"]).stdout;
    assert!(
        history.contains("space back") && !history.contains("disk full"),
        "{history}"
    );
    let log = coordinator.proc.log_text();
    assert!(log.contains("store reopened and committing again"), "{log}");
    drop(coordinator);
}

#[test]
fn a_coordinator_killed_right_after_a_decision_delivers_it_once_to_every_target() {
    use rustix::process::Signal;
    const HOSTS: usize = 12;
    let root = test_dir("fault-coordinator-kill");
    let mut coordinator = Coordinator::start(&root.join("data"), None).expect("coordinator");
    let agents: Vec<Agent> = (0..HOSTS)
        .map(|i| {
            Agent::start(
                &root,
                &coordinator.url,
                &AgentSpec::with_evidence_action(&format!("beta-{i}"), "cache", "beta"),
            )
            .expect("agent")
        })
        .collect();
    coordinator
        .wait_for_agents("every agent to connect", |listed| {
            listed.iter().filter(|a| a["connected"] == true).count() == HOSTS
        })
        .expect("connected");
    // Half the hosts cannot read: the command is committed and its fan-out
    // begun, but they have not taken it when the coordinator dies.
    let stopped = &agents[..HOSTS / 2];
    for agent in stopped {
        agent.proc.signal(Signal::STOP).expect("SIGSTOP");
    }
    let command_id = roll_back(&coordinator, "kill drill");
    coordinator.proc.kill9().expect("SIGKILL the coordinator");
    for agent in stopped {
        agent.proc.signal(Signal::CONT).expect("SIGCONT");
    }
    let coordinator = coordinator.restart_same_address().expect("restart");
    wait_until(
        "every target's result after the restart",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || {
            let out = coordinator.ctl(&["results", &command_id, "-o", "json"]);
            let results = out.json().ok()?;
            let all = results["results"].as_array()?;
            (all.len() == HOSTS && all.iter().all(|r| r["status"] == "succeeded")).then_some(())
        },
    )
    .expect("every host reported success");
    for agent in &agents {
        assert_eq!(
            agent.evidence_lines(),
            1,
            "{} ran the rollback exactly once",
            agent.spec.host_id
        );
    }
}

/// `results CMD -o json`, once it parses.
fn results(coordinator: &Coordinator, command_id: &str) -> Option<serde_json::Value> {
    coordinator
        .ctl(&["results", command_id, "-o", "json"])
        .json()
        .ok()
}

#[test]
fn an_agent_killed_while_its_rollback_runs_gets_a_retry_that_runs_once() {
    use rustix::process::Signal;
    let root = test_dir("fault-agent-kill");
    let coordinator =
        Coordinator::start(&root.join("data"), Some("action_retries = 2\n")).expect("coordinator");
    // The first run records its pid and hangs; a later one completes. Either
    // way a completed run leaves one evidence line (safe to run twice).
    let mut spec = AgentSpec::with_evidence_action("beta-1", "cache", "beta");
    spec.extra_toml = "[actions.rollback]\n\
        command = [\"/bin/sh\", \"-c\", \"if [ ! -e hung ]; then touch hung; echo $$ > action.pid; exec sleep 300; fi; echo ran >> evidence\"]\n\
        timeout = \"600s\"\n"
        .to_owned();
    let mut agent = Agent::start(&root, &coordinator.url, &spec).expect("agent");
    wait_connected(&coordinator, "beta-1");
    let first = roll_back(&coordinator, "kill the agent");
    let pid_file = agent.state_dir.join("action.pid");
    let action_pid: i32 = wait_until(
        "the action to start",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok(),
    )
    .expect("running");
    agent.proc.kill9().expect("SIGKILL the agent");
    let action = rustix::process::Pid::from_raw(action_pid).expect("pid");
    rustix::process::kill_process(action, Signal::KILL).expect("SIGKILL the action");
    let agent = Agent::start(&root, &coordinator.url, &spec).expect("agent again");

    // The interrupted run is reported failed, and a retry closed to the host follows.
    let retry = wait_until(
        "the interrupted run to be retried",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let results = results(&coordinator, &first)?;
            let host = &results["results"][0];
            (host["status"] == "failed").then_some(())?;
            host["retried_by"].as_str().map(str::to_owned)
        },
    )
    .expect("retried");
    wait_until(
        "the retry to succeed",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let results = results(&coordinator, &retry)?;
            (results["results"][0]["status"] == "succeeded" && results["attempt"] == 1)
                .then_some(())
        },
    )
    .expect("retry succeeded");
    assert_eq!(agent.evidence_lines(), 1, "one completed run in all");
    let history = coordinator.ctl(&["history", "-o", "json"]).stdout;
    assert!(history.contains("retry 1 of"), "{history}");
}

#[test]
fn a_rollback_that_fails_on_every_retry_is_reported_as_needing_attention() {
    let root = test_dir("fault-needs-attention");
    let coordinator =
        Coordinator::start(&root.join("data"), Some("action_retries = 1\n")).expect("coordinator");
    let mut spec = AgentSpec::with_evidence_action("beta-1", "cache", "beta");
    spec.extra_toml = "[actions.rollback]\n\
        command = [\"/bin/sh\", \"-c\", \"echo tried >> evidence; exit 3\"]\n\
        timeout = \"30s\"\n"
        .to_owned();
    let agent = Agent::start(&root, &coordinator.url, &spec).expect("agent");
    wait_connected(&coordinator, "beta-1");
    let first = roll_back(&coordinator, "broken action");
    let status = wait_until(
        "the host to need attention",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let status = coordinator.ctl(&["status", "-o", "json"]).json().ok()?;
            let cache = status["deployments"]
                .as_array()?
                .iter()
                .find(|d| d["deployment"] == "cache")?
                .clone();
            (cache["needs_attention"] == serde_json::json!(["beta-1"])).then_some(status)
        },
    )
    .expect("needs attention");
    let retry = results(&coordinator, &first).expect("results")["results"][0]["retried_by"]
        .as_str()
        .expect("the first run was retried")
        .to_owned();
    let last = results(&coordinator, &retry).expect("results");
    assert_eq!(last["results"][0]["needs_attention"], true, "{last}");
    let table = coordinator.ctl(&["results", &retry]).stdout;
    assert!(table.contains("failed (needs attention)"), "{table}");
    assert_eq!(
        agent.evidence_lines(),
        2,
        "the original and one retry, no more: {status}"
    );
}

/// Connected agents of deployment `loadgen`.
fn connected_count(coordinator: &Coordinator) -> Option<usize> {
    let out = coordinator.ctl(&["agents", "-o", "json"]);
    let agents = out.json().ok()?;
    Some(
        agents
            .as_array()?
            .iter()
            .filter(|a| a["connected"] == true)
            .count(),
    )
}

#[test]
fn a_coordinator_killed_in_a_fan_out_to_a_thousand_agents_reaches_each_target_once() {
    use rustix::process::Signal;
    const AGENTS: usize = 1000;
    const BETA: usize = AGENTS / 2;
    let root = test_dir("fault-kill-fanout");
    let mut coordinator = Coordinator::start(&root.join("data"), None).expect("coordinator");
    let mut fleet = rollguard_tests::HeldFleet::start(
        &root,
        &coordinator.url,
        AGENTS,
        &["--beta-share", "0.5", "--interval", "2s"],
    )
    .expect("loadgen");
    wait_until(
        "every simulated agent to connect",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || (connected_count(&coordinator)? == AGENTS).then_some(()),
    )
    .expect("connected");

    // The agents cannot read or answer while the decision is committed and
    // its fan-out begun; the coordinator dies before any result is in.
    fleet
        .proc
        .signal(Signal::STOP)
        .expect("SIGSTOP the loadgen");
    let out = coordinator.ctl(&[
        "rollback",
        "loadgen",
        "--reason",
        "fan-out kill drill",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let command_id = out.json().expect("json")["command_id"]
        .as_str()
        .expect("command id")
        .to_owned();
    coordinator.proc.kill9().expect("SIGKILL the coordinator");
    fleet
        .proc
        .signal(Signal::CONT)
        .expect("SIGCONT the loadgen");
    let coordinator = coordinator.restart_same_address().expect("restart");

    wait_until(
        "every target's result after the restart",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || {
            let results = results(&coordinator, &command_id)?;
            let all = results["results"].as_array()?;
            (all.len() == BETA && all.iter().all(|r| r["status"] == "succeeded")).then_some(())
        },
    )
    .expect("every target reported success");
    let report = fleet.report().expect("the loadgen's report");
    eprintln!(
        "fan-out kill: {} of {BETA} targets had the command before the kill (answered again from memory)",
        report["repeats_answered"]
    );
    assert_eq!(
        report["agents_by_runs"],
        serde_json::json!([AGENTS - BETA, BETA]),
        "every beta agent ran the rollback once, no agent twice: {report}"
    );
    assert_eq!(report["beta_agents_without_run"], 0, "{report}");
    assert_eq!(
        report["ran_more_than_once"],
        serde_json::json!([]),
        "{report}"
    );
    // The fleet was whole again after the restart.
    let outages = report["outages"].as_array().expect("outages");
    assert!(
        outages.iter().all(|o| o["all_back_after_secs"].is_number()),
        "{report}"
    );
}

#[test]
fn an_agent_whose_disk_is_full_reports_the_rollback_failed_unrun_and_the_retry_runs_once() {
    let root = test_dir("fault-agent-disk-full");
    let coordinator =
        Coordinator::start(&root.join("data"), Some("action_retries = 2\n")).expect("coordinator");
    let tmpfs = match Tmpfs::mount(&root.join("beta-1-state"), "1m") {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            rollguard_tests::skip(
                "an_agent_whose_disk_is_full_reports_the_rollback_failed_unrun_and_the_retry_runs_once",
                &reason,
            );
            return;
        }
    };
    // The evidence is kept off the full disk: only the journal is on it.
    let evidence = root.join("beta-1-evidence");
    let mut spec = AgentSpec::with_evidence_action("beta-1", "cache", "beta");
    spec.extra_toml = format!(
        "[actions.rollback]\ncommand = [\"/bin/sh\", \"-c\", \"echo ran >> {}\"]\ntimeout = \"30s\"\n",
        evidence.display()
    );
    let _agent = Agent::start_in(&root, &coordinator.url, &spec, &tmpfs.dir).expect("agent");
    wait_connected(&coordinator, "beta-1");
    let filler = tmpfs.fill("filler");

    let first = roll_back(&coordinator, "agent disk full");
    let reason = wait_until(
        "the unrecordable rollback to be reported failed",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let results = results(&coordinator, &first)?;
            let host = &results["results"][0];
            (host["status"] == "failed").then(|| host["reason"].to_string())
        },
    )
    .expect("failed");
    assert!(reason.contains("cannot record"), "{reason}");
    let runs = || {
        std::fs::read_to_string(&evidence)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    assert_eq!(
        runs(),
        0,
        "a command the journal could not record never runs"
    );

    // Space comes back; a retry closed to the host runs it, once.
    std::fs::remove_file(&filler).expect("free the space");
    wait_until(
        "a retry to succeed",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || {
            let mut id = first.clone();
            loop {
                let results = results(&coordinator, &id)?;
                let host = &results["results"][0];
                if host["status"] == "succeeded" {
                    return Some(());
                }
                id = host["retried_by"].as_str()?.to_owned();
            }
        },
    )
    .expect("a retry succeeded");
    assert_eq!(runs(), 1, "the rollback ran exactly once");
    let history = coordinator.ctl(&["history", "-o", "json"]).stdout;
    assert!(history.contains("retry 1 of"), "{history}");
}
