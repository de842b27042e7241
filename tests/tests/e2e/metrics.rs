//! The coordinator's /metrics: parsed with a real exposition parser, it
//! carries the series the fleet state holds; /healthz and /readyz answer.

use std::time::Duration;

use rollguard_common::exposition::{self, Selector};
use rollguard_tests::{
    agent, http_get, target_dir, test_dir, wait_until, Agent, AgentSpec, Coordinator,
};

fn value(text: &str, selector: &str) -> Option<f64> {
    let exposition = exposition::parse(text).expect("the exposition parses");
    let selector = Selector::parse(selector).expect("selector");
    exposition::gauge(&exposition, &selector)
}

fn deployment<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["deployments"]
        .as_array()?
        .iter()
        .find(|d| d["deployment"] == name)
}

/// Where the exposition's connected-host gauges differ from the status's
/// cohorts (or a connected cohort has no CPU series), if anywhere.
fn disagreement(text: &str, status: &serde_json::Value) -> Option<String> {
    let cohorts = deployment(status, "metered")?["cohorts"].as_array()?;
    if cohorts.len() != 2 {
        return Some(format!("{} cohorts in the status", cohorts.len()));
    }
    for cohort in cohorts {
        let name = cohort["cohort"].as_str()?;
        let connected = value(
            text,
            &format!(r#"rollguard_agents_connected{{deployment="metered",cohort="{name}"}}"#),
        );
        if connected != cohort["hosts_connected"].as_f64() {
            return Some(format!("{name}: /metrics {connected:?}, status {cohort}"));
        }
        let cpu = format!(
            r#"rollguard_cohort_cpu_usage_ratio{{deployment="metered",cohort="{name}",stat="mean"}}"#
        );
        if value(text, &cpu).is_none() {
            return Some(format!("{name}: no CPU series"));
        }
    }
    None
}

#[test]
fn metrics_carry_the_fleet_state_and_pass_the_linter() {
    let root = test_dir("metrics");
    let coordinator = Coordinator::start(
        &root.join("data"),
        Some(
            "[metrics]\nper_host = true\n[deployments.metered]\ncheck_interval = \"1s\"\n\
             [[deployments.metered.rules]]\nmetric = \"cpu_percent\"\nmax = 100\n\
             [deployments.idle]\nbeta_hosts = [\"canary-*\"]\n[[deployments.idle.rules]]\nmetric = \"error_rate\"\nmax = 0.05\n",
        ),
    )
    .expect("coordinator");
    let _beta = Agent::start(
        &root,
        &coordinator.url,
        &AgentSpec::with_evidence_action("beta-m", "metered", "beta"),
    )
    .expect("beta");
    let _baseline = Agent::start(
        &root,
        &coordinator.url,
        &AgentSpec::with_evidence_action("base-m", "metered", "baseline"),
    )
    .expect("baseline");
    coordinator
        .wait_for_agents("both agents reporting", |agents| {
            ["beta-m", "base-m"].iter().all(|h| {
                agent(agents, h)
                    .is_some_and(|a| a["connected"] == true && a["cpu_percent"].is_number())
            })
        })
        .expect("agents");
    let out = coordinator.ctl(&["rollback", "metered", "--reason", "metrics", "--wait"]);
    assert!(out.status.success(), "{out:?}");

    let http = coordinator.http_url().expect("http address");
    assert_eq!(
        http_get(&format!("{http}/healthz")).expect("healthz").0,
        200
    );
    assert_eq!(http_get(&format!("{http}/readyz")).expect("readyz").0, 200);
    // Wait until a judged round shows up in the metrics, and for a /metrics
    // and a status read one after the other that agree on the connected
    // hosts: a host that misses a beat between the two reads (3 intervals,
    // 750 ms here) is counted by one and not the other.
    let mut mismatch = String::new();
    let (text, status) = wait_until(
        "a judged round in /metrics that agrees with the status",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let (code, body) = http_get(&format!("{http}/metrics")).ok()?;
            let judged = value(
                &body,
                r#"rollguard_verdicts_total{deployment="metered",verdict="pass"}"#,
            )
            .is_some_and(|v| v >= 1.0);
            if code != 200 || !judged {
                return None;
            }
            let status = coordinator.ctl(&["status", "-o", "json"]).json().ok()?;
            match disagreement(&body, &status) {
                Some(why) => {
                    mismatch = why;
                    None
                }
                None => Some((body, status)),
            }
        },
    )
    .unwrap_or_else(|err| panic!("{err}; last disagreement: {mismatch}"));
    let deployment = deployment(&status, "metered").expect("metered in the status");
    assert_eq!(deployment["configured"], true, "{status}");
    // A configured deployment no host has joined is listed, with no cohorts.
    let idle = self::deployment(&status, "idle").expect("idle in the status");
    assert_eq!(idle["configured"], true, "{status}");
    assert_eq!(idle["cohorts"], serde_json::json!([]), "{status}");
    // The deployments and their policies, as the operator reads them.
    let listed = coordinator
        .ctl(&["deployments", "-o", "json"])
        .json()
        .expect("deployments");
    let named = |name: &str| {
        listed
            .as_array()
            .and_then(|all| all.iter().find(|d| d["deployment"] == name))
            .unwrap_or_else(|| panic!("no {name}: {listed}"))
    };
    let idle = named("idle");
    assert_eq!(idle["configured"], true, "{idle}");
    assert_eq!(idle["hosts_seen"], 0, "{idle}");
    assert_eq!(idle["rules"][0]["metric"], "error_rate", "{idle}");
    assert_eq!(idle["rules"][0]["max"], 0.05, "{idle}");
    assert_eq!(idle["rules"][0]["limit_text"], "max 0.05", "{idle}");
    assert_eq!(idle["check_interval_secs"], 5.0, "the default: {idle}");
    assert_eq!(
        idle["beta_hosts"],
        serde_json::json!(["canary-*"]),
        "{idle}"
    );
    let metered = named("metered");
    assert_eq!(metered["hosts_seen"], 2, "{metered}");
    assert_eq!(metered["check_interval_secs"], 1.0, "{metered}");
    assert_eq!(metered["armed"], true, "{metered}");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    for cohort in deployment["cohorts"].as_array().expect("cohorts") {
        let name = cohort["cohort"].as_str().expect("cohort");
        let cpu = value(
            &text,
            &format!(r#"rollguard_cohort_cpu_usage_ratio{{deployment="metered",cohort="{name}",stat="mean"}}"#),
        )
        .expect("cpu series");
        assert!((0.0..=1.0).contains(&cpu), "{cpu}");
    }
    assert_eq!(
        value(&text, r#"rollguard_command_results{status="succeeded"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(&text, r#"rollguard_command_results{status="no_answer"}"#),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            r#"rollguard_consecutive_failures{deployment="metered"}"#
        ),
        deployment["judgement"]["consecutive"].as_f64()
    );
    assert_eq!(
        value(&text, r#"rollguard_deployment_armed{deployment="metered"}"#),
        Some(1.0)
    );
    assert!(value(&text, "rollguard_samples_ingested_total").is_some_and(|v| v > 0.0));
    assert_eq!(value(&text, "rollguard_samples_rejected_total"), Some(0.0));
    assert!(value(&text, "rollguard_store_commit_duration_seconds_count").is_some_and(|v| v > 0.0));
    for host in ["beta-m", "base-m"] {
        assert!(
            value(
                &text,
                &format!(r#"rollguard_host_cpu_usage_ratio{{host="{host}"}}"#)
            )
            .is_some(),
            "per-host series for {host}"
        );
    }
    // Every family has HELP and a type.
    let parsed = exposition::parse(&text).expect("parses");
    for family in &parsed.families {
        assert!(family.help.is_some(), "{} has no HELP", family.name);
    }

    // .ci/run lints this file with `promtool check metrics`.
    let path = target_dir().join("rollguard-metrics.prom");
    std::fs::write(&path, &text).expect("write the sample");
    if let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).expect("open"))
        .output()
    {
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
