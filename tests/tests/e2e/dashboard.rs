//! The dashboard (issue 13) in a real browser: Debian's headless chromium,
//! driven over the DevTools protocol, against a real coordinator with a
//! beta and a baseline agent watching their apps.

use std::path::Path;
use std::time::Duration;

use rollguard_tests::cdp::{chromium, Browser};
use rollguard_tests::{
    skip, target_dir, test_dir, Agent, AgentSpec, Coordinator, DemoApp, BETA_VERSION,
    STABLE_VERSION,
};

const DEPLOYMENT: &str = "shop";
const TEST: &str =
    "dashboard::the_pages_list_the_fleet_draw_both_cohorts_and_show_the_rollback_live";

const CONFIG: &str = r#"
[deployments.shop]
check_interval = "1s"
consecutive_failures = 3
min_requests = 10
[[deployments.shop.rules]]
metric = "error_rate"
max = 0.1
[[deployments.shop.rules]]
metric = "latency_p99_ms"
max_ratio_to_baseline = 3.0
min_baseline = 10.0
"#;

fn host(root: &Path, url: &str, host_id: &str, cohort: &str, version: &str) -> (DemoApp, Agent) {
    let app = DemoApp::start(&root.join(format!("app-{host_id}")), version, "1h").expect("app");
    let spec = AgentSpec {
        host_id: host_id.to_owned(),
        deployment: DEPLOYMENT.to_owned(),
        cohort: cohort.to_owned(),
        extra_toml: app.agent_toml(),
    };
    let agent = Agent::start(root, url, &spec).expect("agent");
    (app, agent)
}

/// Counts the elements `selector` matches.
fn count(selector: &str) -> String {
    format!("document.querySelectorAll({selector:?}).length")
}

#[test]
fn the_pages_list_the_fleet_draw_both_cohorts_and_show_the_rollback_live() {
    let Some(binary) = chromium() else {
        skip(
            TEST,
            "no chromium on PATH (.ci/run installs Debian's `chromium`)",
        );
        return;
    };
    let root = test_dir("dashboard");
    let coordinator = Coordinator::start(&root.join("data"), Some(CONFIG)).expect("coordinator");
    let http = coordinator.http_url().expect("http url");
    let (beta_app, _beta) = host(&root, &coordinator.url, "shop-beta-1", "beta", BETA_VERSION);
    let (_base_app, _base) = host(
        &root,
        &coordinator.url,
        "shop-base-1",
        "baseline",
        STABLE_VERSION,
    );
    let mut browser = match Browser::start(&binary, &root.join("browser"), 1280, 1000) {
        Ok(browser) => browser,
        Err(err) => {
            skip(TEST, &format!("chromium did not start: {err:#}"));
            return;
        }
    };
    let long = Duration::from_secs(60);

    // The fleet page: the deployment as a link, both hosts in its table.
    browser.navigate(&format!("{http}/")).expect("navigate");
    browser
        .wait_for(
            "the deployment's link",
            &format!("document.querySelector('a[href=\"/deployments/{DEPLOYMENT}\"]') !== null"),
            long,
        )
        .expect("link");
    browser
        .wait_for(
            "both hosts listed, live",
            "document.body.innerText.includes('shop-beta-1') && document.body.innerText.includes('shop-base-1') && document.getElementById('live').textContent.startsWith('live')",
            long,
        )
        .expect("hosts");
    let shots = target_dir();
    browser
        .screenshot(&shots.join("rollguard-dashboard-fleet.png"))
        .expect("screenshot");

    // The deployment page draws both cohorts' lines once rounds come in.
    browser
        .navigate(&format!("{http}/deployments/{DEPLOYMENT}"))
        .expect("navigate");
    browser
        .wait_for(
            "beta and baseline lines",
            "(() => { const f = document.querySelector('[data-chart=error_rate]'); return !!f && f.querySelector('path.beta').getAttribute('d').split('L').length > 3 && f.querySelector('path.baseline').getAttribute('d').split('L').length > 3; })()",
            long,
        )
        .expect("lines");
    browser
        .wait_for(
            "a round drawn from the event stream",
            "(() => { const l = [...document.querySelectorAll('#verdicts rect[data-received]')].filter((r) => r.dataset.received).map((r) => Number(r.dataset.received) - Number(r.dataset.at)); return l.length >= 3 && l; })()",
            long,
        )
        .expect("live rounds");
    // From here on the page must change without a reload: a marker proves it.
    browser
        .eval("window.__sameLoad = true")
        .expect("mark the load");
    // Record when each round that came over the event stream is first
    // drawn, against the time it was judged (the coordinator's clock, on
    // this machine).
    browser
        .eval(
            "window.__before = new Set([...document.querySelectorAll('#verdicts rect[data-seq]')].map((r) => r.dataset.seq)); window.__drawn = {}; new MutationObserver(() => { const now = Date.now(); for (const r of document.querySelectorAll('#verdicts rect[data-received]')) { const seq = r.dataset.seq; if (r.dataset.received && !window.__before.has(seq) && !(seq in window.__drawn)) window.__drawn[seq] = now - Number(r.dataset.at); } }).observe(document.getElementById('main'), { childList: true, subtree: true }); true",
        )
        .expect("observer");

    // The beta starts failing: failing rounds, then the rollback marker.
    std::fs::write(&beta_app.control_file, "error_rate=0.5\n").expect("control");
    browser
        .wait_for(
            "a failing round in the strip",
            &count("#verdicts rect.fail"),
            long,
        )
        .expect("fail");
    browser
        .wait_for("the rollback marker", &count("line.marker.rollback"), long)
        .expect("marker");
    assert_eq!(
        browser.eval("window.__sameLoad === true").expect("eval"),
        true,
        "the page reloaded"
    );
    browser
        .wait_for(
            "the rollback's result in the commands table",
            "document.body.innerText.includes('succeeded')",
            long,
        )
        .expect("result");
    browser
        .screenshot(&shots.join("rollguard-dashboard-deployment.png"))
        .expect("screenshot");
    let errors = browser.errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // How long a judged round took to show (printed for the closing note).
    let seen = browser
        .eval("Object.values(window.__drawn).sort((a, b) => a - b)")
        .expect("latencies");
    let latencies: Vec<f64> = seen
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default();
    assert!(!latencies.is_empty(), "no round was seen arriving");
    let median = latencies[latencies.len() / 2];
    let max = latencies.last().copied().unwrap_or_default();
    eprintln!(
        "dashboard: {} rounds seen live; judged to drawn median {median:.0} ms, max {max:.0} ms",
        latencies.len()
    );
}
