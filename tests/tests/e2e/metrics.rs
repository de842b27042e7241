//! The coordinator's /metrics: parsed with a real exposition parser, it
//! carries the series the fleet state holds; /healthz and /readyz answer.
//! The Grafana dashboard and the alert rules in `deploy/` name only families
//! it declares, so renaming a family fails here rather than in someone's
//! Grafana.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
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

/// The files in `deploy/` that query the coordinator's families.
const METRIC_USERS: [&str; 2] = [
    "deploy/grafana/rollguard.json",
    "deploy/prometheus/rollguard-rules.yml",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `rollguard_[a-z0-9_]+` name in `text` (a query, a legend or prose).
fn metric_names(text: &str) -> BTreeSet<&str> {
    let is_name_byte = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices("rollguard_") {
        // `xrollguard_y` is not a name of ours.
        if start > 0 && is_name_byte(bytes[start - 1]) {
            continue;
        }
        let len = bytes[start..]
            .iter()
            .take_while(|b| is_name_byte(**b))
            .count();
        names.insert(&text[start..start + len]);
    }
    names
}

/// The names in `names` that `exposition` declares no family for. A
/// histogram's `_bucket`, `_sum` and `_count` series belong to its family.
fn undeclared<'a>(names: &BTreeSet<&'a str>, exposition: &str) -> Vec<&'a str> {
    let declared: HashMap<&str, &str> = exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .collect();
    let is_declared = |name: &str| {
        declared.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|family| declared.get(family) == Some(&"histogram"))
            })
    };
    names
        .iter()
        .copied()
        .filter(|name| !is_declared(name))
        .collect()
}

/// Fails naming each file of [`METRIC_USERS`] and the families it uses that
/// the coordinator's `exposition` does not declare.
#[track_caller]
fn assert_deploy_uses_declared_families(exposition: &str) {
    let mut missing = Vec::new();
    for file in METRIC_USERS {
        let text = std::fs::read_to_string(repo_root().join(file))
            .unwrap_or_else(|err| panic!("reading {file}: {err}"));
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{file} names no rollguard_ metric");
        for name in undeclared(&names, exposition) {
            missing.push(format!("{file}: {name}"));
        }
    }
    assert!(
        missing.is_empty(),
        "families used in deploy/ that the coordinator's /metrics does not declare \
         (renamed or removed?):\n  {}",
        missing.join("\n  ")
    );
}

#[track_caller]
fn check_undeclared(used: &str, exposition: &str, expected: &[&str]) {
    assert_eq!(undeclared(&metric_names(used), exposition), expected);
}

#[test]
fn the_family_check_knows_histograms_and_names_the_missing() {
    let exposition = "# HELP rollguard_a_total A.\n# TYPE rollguard_a_total counter\n\
                      rollguard_a_total 1\n# TYPE rollguard_d_seconds histogram\n\
                      # TYPE rollguard_g gauge\n";
    check_undeclared("rate(rollguard_a_total[5m])", exposition, &[]);
    check_undeclared(
        "rollguard_d_seconds_bucket rollguard_d_seconds_sum rollguard_d_seconds_count",
        exposition,
        &[],
    );
    // A suffix of a histogram's series on a gauge is a different name.
    check_undeclared("rollguard_g_bucket", exposition, &["rollguard_g_bucket"]);
    // Renamed families, each named once; a longer word is not ours.
    check_undeclared(
        "rollguard_a{x=\"1\"} / rollguard_b_total + rollguard_b_total xrollguard_c",
        exposition,
        &["rollguard_a", "rollguard_b_total"],
    );
    // A sample line alone does not declare a family.
    check_undeclared(
        "rollguard_a_total rollguard_z",
        "rollguard_z 1\n",
        &["rollguard_a_total", "rollguard_z"],
    );
}

#[test]
fn grafana_dashboard_imports_with_a_datasource_variable() {
    let path = repo_root().join("deploy/grafana/rollguard.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard parses");
    // Grafana 10 writes 38 and up; an import migrates older ones, not newer.
    let schema = dashboard["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=39).contains(&schema), "schemaVersion {schema}");
    // An exported dashboard has no numeric id (Grafana gives one on import).
    assert!(dashboard["id"].is_null(), "{}", dashboard["id"]);
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource", "{datasource}");
    assert_eq!(datasource["query"], "prometheus", "{datasource}");
    let deployment = variable("deployment");
    assert_eq!(deployment["type"], "query", "{deployment}");
    assert_eq!(
        deployment["definition"], "label_values(rollguard_deployment_armed, deployment)",
        "{deployment}"
    );
    assert_eq!(deployment["multi"], true, "{deployment}");
    assert_eq!(deployment["includeAll"], true, "{deployment}");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(
        panels
            .iter()
            .any(|p| p["type"] == "row" && p["repeat"] == "deployment"),
        "no row repeated per deployment"
    );
    // Every query goes to the chosen datasource: a uid from someone's
    // Grafana would not exist in the importer's.
    let mut ids = BTreeSet::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = &panel["title"];
        assert!(ids.insert(panel["id"].as_u64()), "duplicate id: {title}");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            assert!(
                target["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{title}"
            );
        }
    }
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
    // The dashboard and the alert rules query only families declared here
    // (with a deployment, hosts, a judged round and a command, so labelled
    // families have samples too).
    assert_deploy_uses_declared_families(&text);

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
