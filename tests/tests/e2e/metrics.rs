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

#[test]
fn metrics_carry_the_fleet_state_and_pass_the_linter() {
    let root = test_dir("metrics");
    let coordinator = Coordinator::start(
        &root.join("data"),
        Some(
            "[metrics]\nper_host = true\n[deployments.metered]\ncheck_interval = \"1s\"\n\
             [[deployments.metered.rules]]\nmetric = \"cpu_percent\"\nmax = 100\n",
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
    // Wait until a judged round shows up in the metrics.
    let text = wait_until(
        "a judged round in /metrics",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let (code, body) = http_get(&format!("{http}/metrics")).ok()?;
            (code == 200
                && value(
                    &body,
                    r#"rollguard_verdicts_total{deployment="metered",verdict="pass"}"#,
                )
                .is_some_and(|v| v >= 1.0))
            .then_some(body)
        },
    )
    .expect("metrics");

    let status = coordinator
        .ctl(&["status", "-o", "json"])
        .json()
        .expect("status");
    let deployment = &status["deployments"][0];
    for cohort in deployment["cohorts"].as_array().expect("cohorts") {
        let name = cohort["cohort"].as_str().expect("cohort");
        assert_eq!(
            value(
                &text,
                &format!(r#"rollguard_agents_connected{{deployment="metered",cohort="{name}"}}"#)
            ),
            cohort["hosts_connected"].as_f64(),
            "{text}"
        );
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
