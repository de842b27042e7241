//! Rollouts (issue 12) with real processes: agents left to the coordinator
//! (`--cohort auto`), each watching its own demo app, whose `promote`
//! action writes the version into the app's version file (and a line into
//! `promotions`) and whose `rollback` action writes the stable version back
//! (and a line into `evidence`). Webhooks go to a real HTTP receiver.
//!
//! Counts are exact: each promoted host ran its promote once, each rolled
//! back host its rollback once, and no other host ran either.

use std::path::Path;
use std::time::Duration;

use rollguard_tests::{
    test_dir, wait_until, Agent, AgentSpec, Coordinator, DemoApp, WebhookReceiver, BETA_VERSION,
    STABLE_VERSION,
};
use serde_json::Value;

const DEPLOYMENT: &str = "cache";

/// One host: its app and its agent.
struct Host {
    app: DemoApp,
    agent: Agent,
}

impl Host {
    fn id(&self) -> &str {
        &self.agent.spec.host_id
    }

    fn lines(&self, file: &str) -> usize {
        std::fs::read_to_string(self.agent.state_dir.join(file))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn version(&self) -> String {
        std::fs::read_to_string(&self.app.version_file)
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

/// The coordinator's config: a policy with an error-rate and a latency
/// rule, the whole blast radius, `rollout` as given, and two webhooks
/// (JSON and Slack) for the rollout's events.
fn config(receiver: &WebhookReceiver, rollout: &str) -> String {
    format!(
        r#"
[[notify.webhooks]]
url = "{url}/json"
events = ["rollout.*"]
[[notify.webhooks]]
url = "{url}/slack"
events = ["rollout.*"]
format = "slack"

[deployments.{DEPLOYMENT}]
check_interval = "1s"
consecutive_failures = 2
min_requests = 10
[[deployments.{DEPLOYMENT}.rules]]
metric = "error_rate"
max = 0.2
[[deployments.{DEPLOYMENT}.rules]]
metric = "latency_p99_ms"
max = 5000
[deployments.{DEPLOYMENT}.blast_radius]
impact_level = "non-critical"
affected_users = "internal-team-only"
fallback_strategy = "automatic-rollback"
data_at_risk = "none"
financial_impact = "minimal"
reputation_risk = "low"
[deployments.{DEPLOYMENT}.rollout]
promote_action = "promote"
status_every = "1s"
status_for = "2s"
retrospective_after = "1s"
{rollout}
"#,
        url = receiver.url
    )
}

/// A coordinator configured with `rollout`, its webhook receiver, and `n`
/// hosts (the first `without_promote` without a promote action).
struct Rig {
    root: std::path::PathBuf,
    receiver: WebhookReceiver,
    coordinator: Coordinator,
    url: String,
    hosts: Vec<Host>,
}

fn rig(name: &str, rollout: &str, n: usize, without_promote: usize) -> Rig {
    let root = test_dir(name);
    let receiver = WebhookReceiver::start().expect("receiver");
    let toml = config(&receiver, rollout);
    let coordinator = Coordinator::start(&root.join("data"), Some(&toml)).expect("coordinator");
    let url = coordinator.url.clone();
    let hosts = start_hosts(&root, &url, n, without_promote);
    Rig {
        root,
        receiver,
        coordinator,
        url,
        hosts,
    }
}

/// Starts `n` hosts `r-00`.. with their apps on the stable version; the
/// first `without_promote` hosts define no promote action.
fn start_hosts(root: &Path, url: &str, n: usize, without_promote: usize) -> Vec<Host> {
    (0..n)
        .map(|i| {
            let host_id = format!("r-{i:02}");
            let app = DemoApp::start(&root.join(format!("app-{host_id}")), STABLE_VERSION, "1h")
                .expect("app");
            let version = app.version_file.display().to_string();
            let promote = if i < without_promote {
                String::new()
            } else {
                format!(
                    "[actions.promote]\n\
                     command = [\"/bin/sh\", \"-c\", \"echo \\\"$1\\\" >> promotions; echo \\\"$1\\\" > '{version}'\", \"promote\", \"{{version}}\"]\n\
                     timeout = \"30s\"\n"
                )
            };
            let spec = AgentSpec {
                host_id,
                deployment: DEPLOYMENT.to_owned(),
                cohort: "auto".to_owned(),
                extra_toml: format!("{}{promote}", app.agent_toml()),
            };
            let agent = Agent::start(root, url, &spec).expect("agent");
            Host { app, agent }
        })
        .collect()
}

fn rollout_status(url: &str) -> Option<Value> {
    let out = rollguard_tests::ctl(url, &["-o", "json", "rollout", "status", DEPLOYMENT]);
    out.status.success().then(|| out.json().ok()).flatten()
}

/// Polls the rollout's status until `done` holds; returns that status.
fn wait_status(url: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_until(
        what,
        Duration::from_secs(120),
        Duration::from_millis(100),
        || {
            let status = rollout_status(url)?;
            last = status.clone();
            done(&status).then_some(status)
        },
    )
    .unwrap_or_else(|err| panic!("{err}; last status: {last}"))
}

/// Waits until the preflight passes (every host connected and reporting
/// its app's health).
fn wait_preflight(url: &str) {
    wait_until(
        "a passing preflight",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let out = rollguard_tests::ctl(
                url,
                &[
                    "-o",
                    "json",
                    "rollout",
                    "preflight",
                    DEPLOYMENT,
                    "--version",
                    BETA_VERSION,
                ],
            );
            out.status.success().then_some(())
        },
    )
    .expect("the preflight passes");
}

/// Starts the rollout once the preflight passes.
fn start_rollout(url: &str) -> Value {
    wait_preflight(url);
    let out = rollguard_tests::ctl(
        url,
        &[
            "-o",
            "json",
            "rollout",
            "start",
            DEPLOYMENT,
            "--version",
            BETA_VERSION,
        ],
    );
    assert!(out.status.success(), "start: {out:?}");
    out.json().expect("json")
}

fn hosts_promoted(status: &Value) -> Vec<String> {
    status["hosts_promoted"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `event` was posted to the JSON webhook.
fn wait_event(receiver: &WebhookReceiver, event: &str) {
    wait_until(
        event,
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            steps(receiver, "/json")
                .iter()
                .any(|e| e == event)
                .then_some(())
        },
    )
    .unwrap_or_else(|err| panic!("{err}"));
}

/// The events posted to `path`, status updates left out (their number
/// depends on timing).
fn steps(receiver: &WebhookReceiver, path: &str) -> Vec<String> {
    receiver
        .events(path)
        .into_iter()
        .filter(|e| e != "rollout.status")
        .collect()
}

#[test]
fn phases_promote_nested_sets_wait_for_approval_and_a_failure_rolls_back_exactly_the_promoted_hosts(
) {
    let Rig {
        root: _root,
        receiver,
        coordinator: _coordinator,
        url,
        hosts,
    } = rig("rollout-phases", "phases = [25, 50, 75, 100]\nmin_phase_duration = \"2s\"\nmin_passing_rounds = 2\napproval = \"manual\"", 8, 0);
    let started = start_rollout(&url);
    assert_eq!(started["state"], "running", "{started}");
    assert_eq!(started["phase"], 1);

    // Each phase waits for its approval once its time and rounds are in,
    // with exactly ⌈8 × p / 100⌉ hosts promoted, each set inside the next.
    let mut previous: Vec<String> = Vec::new();
    for (phase, want) in [(1, 2), (2, 4)] {
        let status = wait_status(&url, &format!("phase {phase} waiting for approval"), |s| {
            s["phase"] == phase && s["state"] == "waiting_approval"
        });
        let promoted = hosts_promoted(&status);
        assert_eq!(promoted.len(), want, "{status}");
        assert!(
            previous.iter().all(|h| promoted.contains(h)),
            "{previous:?} ⊄ {promoted:?}"
        );
        assert_eq!(
            status["gate"]["waiting_for"][0],
            "approval: `rollguardctl rollout approve`"
        );
        previous = promoted;
        let out = rollguard_tests::ctl(&url, &["-o", "json", "rollout", "approve", DEPLOYMENT]);
        assert!(out.status.success(), "approve: {out:?}");
    }
    let status = wait_status(&url, "phase 3's promotes to succeed", |s| {
        s["phase"] == 3 && s["gate"]["promotes_succeeded"] == 2 && s["gate"]["promotes_total"] == 2
    });
    let promoted = hosts_promoted(&status);
    assert_eq!(promoted.len(), 6, "{status}");
    assert!(previous.iter().all(|h| promoted.contains(h)));

    // The new version turns bad on the promoted hosts: the policy rolls
    // back every promoted host, and only those.
    for host in hosts
        .iter()
        .filter(|h| promoted.iter().any(|p| p == h.id()))
    {
        std::fs::write(&host.app.control_file, "error_rate=0.5\n").expect("control");
    }
    let ended = wait_status(&url, "the rollout to be rolled back", |s| {
        s["state"] == "rolled_back"
    });
    assert_eq!(ended["phase"], 3, "{ended}");
    let command = ended["rollback_command"]
        .as_str()
        .expect("a rollback")
        .to_owned();
    let results = rollguard_tests::ctl(
        &url,
        &[
            "-o",
            "json",
            "results",
            &command,
            "--wait",
            "--timeout",
            "60s",
        ],
    );
    assert!(results.status.success(), "{results:?}");
    let results = results.json().expect("json");
    let mut targets: Vec<String> = results["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["host_id"].as_str().expect("host").to_owned())
        .collect();
    targets.sort();
    let mut want = promoted.clone();
    want.sort();
    assert_eq!(
        targets, want,
        "the one rollback targets exactly the promoted hosts"
    );
    for host in &hosts {
        let was_promoted = promoted.iter().any(|p| p == host.id());
        let runs = usize::from(was_promoted);
        assert_eq!(host.lines("promotions"), runs, "{} promotes", host.id());
        assert_eq!(host.lines("evidence"), runs, "{} rollbacks", host.id());
        assert_eq!(host.version(), STABLE_VERSION, "{}", host.id());
    }
    // One decision in the history: the policy's, no second one from the rollout.
    let history =
        rollguard_tests::ctl(&url, &["-o", "json", "history", "--deployment", DEPLOYMENT]);
    let history = history.json().expect("json");
    let rollbacks = history
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "rollback")
        .count();
    assert_eq!(rollbacks, 1, "{history}");

    // The team heard every step, in order, on both webhooks.
    let want_steps = [
        "rollout.started",
        "rollout.phase_started",
        "rollout.phase_started",
        "rollout.phase_started",
        "rollout.incident",
        "rollout.rolled_back",
        "rollout.retrospective",
    ];
    wait_until(
        "the retrospective",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            (steps(&receiver, "/json").len() >= want_steps.len()
                && steps(&receiver, "/slack").len() >= want_steps.len())
            .then_some(())
        },
    )
    .expect("all events");
    assert_eq!(steps(&receiver, "/json"), want_steps);
    assert!(receiver
        .events("/json")
        .iter()
        .any(|e| e == "rollout.status"));
    let slack = receiver.bodies("/slack");
    assert!(
        slack
            .iter()
            .all(|b| b["text"].as_str().is_some_and(|t| !t.is_empty())),
        "{slack:?}"
    );
    let retro = rollguard_tests::ctl(&url, &["-o", "json", "rollout", "retro", DEPLOYMENT]);
    let retro = retro.json().expect("json");
    assert_eq!(retro["sent"], true);
    assert_eq!(
        retro["rollout"]["phase_log"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(retro["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .any(|d| d["action"] == "rollout_approve"));
}

#[test]
fn a_rollout_resumes_after_a_coordinator_restart_and_completes_with_every_promote_run_once() {
    let Rig {
        root: _root,
        receiver,
        coordinator,
        url,
        hosts,
    } = rig(
        "rollout-restart",
        "phases = [50, 100]\nmin_phase_duration = \"4s\"\nmin_passing_rounds = 2",
        4,
        0,
    );
    start_rollout(&url);
    let status = wait_status(&url, "phase 1's promotes", |s| {
        s["phase"] == 1 && s["gate"]["promotes_succeeded"] == 2
    });
    assert_eq!(hosts_promoted(&status).len(), 2);

    // SIGKILL mid-phase; the new process resumes from the store.
    let mut coordinator = coordinator;
    coordinator.proc.kill9().expect("kill");
    let coordinator = coordinator.restart_same_address().expect("restart");
    let done = wait_status(&coordinator.url, "the rollout to complete", |s| {
        s["state"] == "completed"
    });
    assert_eq!(done["phase"], 2, "{done}");
    assert_eq!(done["percent"], 100);
    assert_eq!(hosts_promoted(&done).len(), 4);
    for host in &hosts {
        assert_eq!(host.lines("promotions"), 1, "{} promotes", host.id());
        assert_eq!(host.lines("evidence"), 0, "{} rollbacks", host.id());
        assert_eq!(host.version(), BETA_VERSION, "{}", host.id());
    }
    // Completed: every auto host is back in the baseline cohort.
    let agents = coordinator
        .wait_for_agents("every host back in the baseline", |agents| {
            agents.len() == 4 && agents.iter().all(|a| a["cohort"] == "baseline")
        })
        .expect("baseline");
    assert_eq!(agents.len(), 4);
    wait_event(&receiver, "rollout.completed");
    let steps = steps(&receiver, "/json");
    let phase_started = steps
        .iter()
        .filter(|e| *e == "rollout.phase_started")
        .count();
    assert_eq!(phase_started, 2, "{steps:?}");
}

#[test]
fn the_preflight_names_a_host_without_the_promote_action_and_abort_rolls_back_the_promoted() {
    let Rig {
        root: _root,
        receiver,
        coordinator: _coordinator,
        url,
        mut hosts,
    } = rig(
        "rollout-preflight",
        "phases = [50, 100]\nmin_phase_duration = \"1h\"",
        3,
        1,
    );
    let lacking = hosts[0].id().to_owned();
    let refused = wait_until(
        "a refusal naming the host",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let out = rollguard_tests::ctl(
                &url,
                &["rollout", "start", DEPLOYMENT, "--version", BETA_VERSION],
            );
            (out.stdout.contains(&lacking) && !out.status.success()).then_some(out)
        },
    )
    .expect("refused");
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let line = refused
        .stdout
        .lines()
        .find(|l| l.contains("actions"))
        .expect("an actions line");
    assert!(line.starts_with("FAIL"), "{line}");
    assert!(line.contains(&format!("{lacking} (no promote)")), "{line}");
    let json = rollguard_tests::ctl(
        &url,
        &[
            "-o",
            "json",
            "rollout",
            "preflight",
            DEPLOYMENT,
            "--version",
            BETA_VERSION,
        ],
    );
    let json = json.json().expect("json");
    assert_eq!(json["ok"], false);
    assert!(
        steps(&receiver, "/json").is_empty(),
        "a refused start tells nobody"
    );

    // Without that host the rollout starts; an abort rolls its promoted host back.
    hosts[0]
        .agent
        .proc
        .terminate(Duration::from_secs(10))
        .expect("stop");
    start_rollout(&url);
    let status = wait_status(&url, "phase 1's promote", |s| {
        s["gate"]["promotes_succeeded"] == 1
    });
    let promoted = hosts_promoted(&status);
    assert_eq!(promoted.len(), 1, "{status}");
    let out = rollguard_tests::ctl(
        &url,
        &[
            "-o",
            "json",
            "rollout",
            "abort",
            DEPLOYMENT,
            "--reason",
            "the on-call wants it off",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let aborted = out.json().expect("json");
    assert_eq!(aborted["state"], "aborted", "{aborted}");
    let command = aborted["rollback_command"]
        .as_str()
        .expect("a rollback")
        .to_owned();
    let results = rollguard_tests::ctl(&url, &["-o", "json", "results", &command]);
    let targets: Vec<String> = results.json().expect("json")["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["host_id"].as_str().expect("host").to_owned())
        .collect();
    assert_eq!(
        targets, promoted,
        "the abort's rollback is closed to the promoted hosts"
    );
    let host = hosts
        .iter()
        .find(|h| h.id() == promoted[0])
        .expect("promoted host");
    wait_until(
        "the promoted host's rollback",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || (host.lines("evidence") == 1).then_some(()),
    )
    .expect("rolled back");
    for other in hosts.iter().filter(|h| h.id() != promoted[0]) {
        assert_eq!(other.lines("evidence"), 0, "{}", other.id());
        assert_eq!(other.lines("promotions"), 0, "{}", other.id());
    }
    let history =
        rollguard_tests::ctl(&url, &["-o", "json", "history", "--deployment", DEPLOYMENT]);
    let history = history.json().expect("json");
    let abort = history
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["action"] == "rollout_aborted")
        .expect("audited");
    assert!(
        abort["reason"]
            .as_str()
            .is_some_and(|r| r.contains("the on-call wants it off")),
        "{abort}"
    );
}

#[test]
fn the_rollout_demo_is_caught_at_ninety_percent_and_rolls_every_promoted_host_back() {
    let out = rollguard_tests::ctl_args(&["demo", "rollout", "--hosts", "10"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    for needle in [
        "phase 1/4 (5 %) started: 1 new host(s)",
        "phase 2/4 (25 %) started: 2 new host(s), 3 of 10",
        "phase 3/4 (90 %) started: 6 new host(s), 9 of 10",
        "INCIDENT demo",
        "rolled back at phase 3/4",
        "retrospective of rollout #1",
    ] {
        assert!(
            out.stdout.contains(needle),
            "no `{needle}` in:\n{}",
            out.stdout
        );
    }
    let succeeded = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("host-") && l.contains(" succeeded "))
        .count();
    assert_eq!(
        succeeded, 9,
        "one rollback result per promoted host:\n{}",
        out.stdout
    );
}

#[test]
fn a_scheduled_rollout_is_announced_starts_at_its_time_and_holds_its_gate_while_paused() {
    let Rig {
        root: _root,
        receiver,
        coordinator: _coordinator,
        url,
        hosts,
    } = rig(
        "rollout-scheduled",
        "phases = [50, 100]\nmin_phase_duration = \"2s\"\nmin_passing_rounds = 2",
        2,
        0,
    );
    wait_preflight(&url);
    let at =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(4))
            .to_string();
    let out = rollguard_tests::ctl(
        &url,
        &[
            "-o",
            "json",
            "rollout",
            "start",
            DEPLOYMENT,
            "--version",
            BETA_VERSION,
            "--at",
            &at,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let scheduled = out.json().expect("json");
    assert_eq!(scheduled["state"], "scheduled", "{scheduled}");
    assert!(hosts_promoted(&scheduled).is_empty());
    // The briefing (30 min by default) is due at once for a start 4 s away.
    wait_until(
        "the briefing",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            steps(&receiver, "/json")
                .first()
                .map(|e| e == "rollout.scheduled")
                .filter(|b| *b)
        },
    )
    .expect("rollout.scheduled");
    assert!(
        hosts.iter().all(|h| h.lines("promotions") == 0),
        "nothing promoted before the start"
    );

    let running = wait_status(&url, "the scheduled start", |s| {
        s["state"] == "running" && s["gate"]["promotes_succeeded"] == 1
    });
    assert_eq!(running["phase"], 1, "{running}");
    let out = rollguard_tests::ctl(&url, &["-o", "json", "rollout", "pause", DEPLOYMENT]);
    assert_eq!(out.json().expect("json")["state"], "paused", "{out:?}");
    // Paused with its gate open: it stays at phase 1.
    let held = wait_status(&url, "an open gate while paused", |s| {
        s["gate"]["waiting_for"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    assert_eq!(held["state"], "paused", "{held}");
    assert_eq!(held["phase"], 1, "{held}");
    let out = rollguard_tests::ctl(&url, &["-o", "json", "rollout", "resume", DEPLOYMENT]);
    assert!(out.status.success(), "{out:?}");
    let done = wait_status(&url, "completion after the resume", |s| {
        s["state"] == "completed"
    });
    assert_eq!(hosts_promoted(&done).len(), 2);
    for host in &hosts {
        assert_eq!(host.lines("promotions"), 1, "{}", host.id());
    }
    wait_event(&receiver, "rollout.completed");
    assert_eq!(
        steps(&receiver, "/json")[..5],
        [
            "rollout.scheduled",
            "rollout.started",
            "rollout.phase_started",
            "rollout.phase_started",
            "rollout.completed"
        ]
    );
}
