//! Detection latency benchmark: from the moment a beta app starts failing to
//! the moment every beta agent has the rollback command (its action ran),
//! over repeated runs with real coordinator, agent and app processes.
//!
//! Usage: `cargo run --release -p rollguard-tests --bin rollguard-bench-detect -- [RUNS]`
//! The goal is `consecutive_failures x check_interval + 1 s` or less.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rollguard_tests::{
    test_dir, wait_until, Agent, AgentSpec, Coordinator, DemoApp, BETA_VERSION, STABLE_VERSION,
};

const CHECK_INTERVAL_MS: u64 = 1000;
const CONSECUTIVE: u64 = 3;
const N_BETA: usize = 3;

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()
        .context("RUNS must be a number")?
        .unwrap_or(10);
    let mut latencies_ms = Vec::new();
    for run in 1..=runs {
        let ms = one_run(run)?;
        println!(
            "run {run:>2}: every beta host had the command {ms:.0} ms after the failure began"
        );
        latencies_ms.push(ms);
    }
    latencies_ms.sort_by(f64::total_cmp);
    let pct = |q: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * q).round() as usize];
    let goal = (CONSECUTIVE * CHECK_INTERVAL_MS + 1000) as f64;
    println!(
        "\ndetection latency over {runs} runs ({N_BETA} beta hosts, agent interval 250 ms, \
         check_interval {CHECK_INTERVAL_MS} ms, consecutive_failures {CONSECUTIVE}):"
    );
    println!(
        "min {:.0} ms, p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms; goal <= {goal:.0} ms: {}",
        latencies_ms[0],
        pct(0.5),
        pct(0.9),
        latencies_ms[latencies_ms.len() - 1],
        if latencies_ms[latencies_ms.len() - 1] <= goal {
            "met"
        } else {
            "missed"
        }
    );
    Ok(())
}

fn one_run(run: usize) -> anyhow::Result<f64> {
    let root = test_dir(&format!("bench-detect-{run}"));
    let config = format!(
        "[deployments.bench]\ncheck_interval = \"{CHECK_INTERVAL_MS}ms\"\n\
         consecutive_failures = {CONSECUTIVE}\nmin_requests = 20\n\
         [[deployments.bench.rules]]\nmetric = \"error_rate\"\nmax = 0.05\n"
    );
    let coordinator = Coordinator::start(&root.join("data"), Some(&config))?;
    let mut apps = Vec::new();
    let mut agents = Vec::new();
    for idx in 0..=N_BETA {
        let (cohort, version) = if idx < N_BETA {
            ("beta", BETA_VERSION)
        } else {
            ("baseline", STABLE_VERSION)
        };
        let app = DemoApp::start(&root.join(format!("app-{idx}")), version, "1h")?;
        let agent = Agent::start(
            &root,
            &coordinator.url,
            &AgentSpec {
                host_id: format!("{cohort}-{idx}"),
                deployment: "bench".to_owned(),
                cohort: cohort.to_owned(),
                extra_toml: app.agent_toml(),
            },
        )?;
        apps.push(app);
        agents.push(agent);
    }
    // Wait for two passing rounds with traffic, then break the betas.
    wait_until(
        "passing rounds",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let why = coordinator
                .ctl(&["why", "bench", "--rounds", "2", "-o", "json"])
                .json()
                .ok()?;
            let rounds = why["rounds"].as_array()?;
            (rounds.len() == 2 && rounds.iter().all(|r| r["verdict"] == "pass")).then_some(())
        },
    )?;
    let began = SystemTime::now();
    for app in &apps[..N_BETA] {
        std::fs::write(&app.control_file, "error_rate=0.5\n")?;
    }
    let times = wait_until(
        "every beta action",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            let times: Vec<u128> = agents[..N_BETA]
                .iter()
                .filter_map(|a| a.evidence_times_ns().first().copied())
                .collect();
            (times.len() == N_BETA).then_some(times)
        },
    )?;
    let began_ns = began.duration_since(UNIX_EPOCH)?.as_nanos();
    let last = times.into_iter().max().unwrap_or(began_ns);
    let _ = std::fs::remove_dir_all(&root);
    Ok(last.saturating_sub(began_ns) as f64 / 1e6)
}
