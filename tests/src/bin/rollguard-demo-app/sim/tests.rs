use rollguard_common::exposition::{self, gauge, histogram, sum_counter, Histogram, Selector};

use super::*;

const STABLE: &str = "1.9.2";
const BETA: &str = "2.0.0-beta.3";
const TICK_FOR_TEST: Duration = Duration::from_millis(100);

fn beta_profile() -> BetaProfile {
    BetaProfile {
        version: BETA.to_owned(),
        fail_after: Duration::from_secs(20),
        error_rate: 0.5,
        latency_factor: 4.0,
    }
}

/// Runs `n_ticks` 100 ms ticks starting at `start`; returns the time after them.
fn run_ticks(sim: &mut Sim, start: Instant, n_ticks: u32) -> Instant {
    for tick_idx in 0..n_ticks {
        sim.tick(start + TICK_FOR_TEST * tick_idx);
    }
    start + TICK_FOR_TEST * n_ticks
}

/// What the agent would read from one scrape.
#[derive(Debug)]
struct Scrape {
    ok: f64,
    errors: f64,
    latency: Histogram,
    queue_depth: f64,
    worker_health: f64,
    version: String,
}

fn scrape(sim: &Sim, now: Instant) -> Scrape {
    let body = sim.render(now);
    let parsed = exposition::parse(&body).expect("the exposition parses");
    let select = |text: &str| Selector::parse(text).expect("test selector parses");
    let version = parsed
        .select(&select("demo_app_info"))
        .next()
        .and_then(|sample| sample.label("version"))
        .expect("demo_app_info has a version")
        .to_owned();
    Scrape {
        ok: sum_counter(&parsed, &select(r#"http_requests_total{code="200"}"#))
            .expect("ok counter"),
        errors: sum_counter(
            &parsed,
            &select(r#"http_requests_total{method="GET",code=~"5.."}"#),
        )
        .expect("error counter"),
        latency: histogram(&parsed, "http_request_duration_seconds", &[]).expect("histogram"),
        queue_depth: gauge(&parsed, &select("queue_depth")).expect("queue_depth"),
        worker_health: gauge(&parsed, &select("worker_health")).expect("worker_health"),
        version,
    }
}

#[test]
fn stable_version_serves_the_base_rates_exactly() {
    let start = Instant::now();
    let mut sim = Sim::new(beta_profile(), 200, STABLE.to_owned(), start);
    let end = run_ticks(&mut sim, start, 1000);
    let scrape = scrape(&sim, end);
    // 20 requests per tick, 0.2% of them errors.
    assert_eq!((scrape.ok, scrape.errors), (19_960.0, 40.0));
    assert_eq!(scrape.latency.count, 20_000.0);
    assert_eq!(scrape.worker_health, 1.0);
    assert_eq!(scrape.queue_depth, QUEUE_BASE as f64);
    assert_eq!(scrape.version, STABLE);
}

#[test]
fn latencies_follow_the_shape_in_every_hundred_requests() {
    // Healthy mean 20 ms: 12 and 20 ms land in le=0.025, 40 ms in 0.05, 100 ms in 0.1.
    let start = Instant::now();
    let mut sim = Sim::new(beta_profile(), 200, STABLE.to_owned(), start);
    let end = run_ticks(&mut sim, start, 5);
    let buckets: Vec<(f64, f64)> = scrape(&sim, end).latency.buckets;
    let expected = [
        0.0, 0.0, 90.0, 99.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0,
    ];
    assert_eq!(
        buckets.iter().map(|bucket| bucket.1).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(buckets.last().map(|bucket| bucket.0), Some(f64::INFINITY));
    let sum_secs = 100.0 * (0.5 * 0.012 + 0.4 * 0.020 + 0.09 * 0.040 + 0.01 * 0.100);
    assert!((scrape(&sim, end).latency.sum - sum_secs).abs() < 1e-9);
}

#[test]
fn beta_fails_after_the_delay_and_recovers_on_rollback() {
    let start = Instant::now();
    let mut sim = Sim::new(beta_profile(), 200, BETA.to_owned(), start);
    // Healthy for the first 20 s.
    let failing_from = run_ticks(&mut sim, start, 200);
    let healthy = scrape(&sim, failing_from);
    assert_eq!((healthy.ok, healthy.errors), (3_992.0, 8.0));
    assert!(sim.failing(failing_from));

    // Then half the requests fail and latency is four times the base.
    let rollback_at = run_ticks(&mut sim, failing_from, 100);
    let failing = scrape(&sim, rollback_at);
    assert_eq!(failing.errors - healthy.errors, 1_000.0);
    let delta = failing.latency.delta(&healthy.latency);
    assert_eq!(delta.quantile(0.5).map(|p50| p50 > 0.025), Some(true));
    assert_eq!(failing.worker_health, 0.5);
    assert_eq!(failing.queue_depth, QUEUE_MAX as f64);

    // A rollback makes it healthy again; the queue drains.
    assert!(sim.set_version(STABLE, rollback_at));
    assert!(!sim.set_version(STABLE, rollback_at));
    let end = run_ticks(&mut sim, rollback_at, 100);
    let after = scrape(&sim, end);
    assert_eq!(after.errors - failing.errors, 4.0);
    assert_eq!(
        (after.worker_health, after.queue_depth),
        (1.0, QUEUE_BASE as f64)
    );
}

#[test]
fn fail_after_counts_from_installation() {
    let start = Instant::now();
    let mut sim = Sim::new(beta_profile(), 200, STABLE.to_owned(), start);
    let installed_at = start + Duration::from_secs(60);
    sim.set_version(BETA, installed_at);
    assert!(!sim.failing(installed_at + Duration::from_secs(19)));
    assert!(sim.failing(installed_at + Duration::from_secs(20)));
}

#[test]
fn control_override_hits_every_version() {
    let start = Instant::now();
    let mut sim = Sim::new(beta_profile(), 200, STABLE.to_owned(), start);
    sim.set_control(parse_control("error_rate=0.3\nlatency_ms = 250\n").expect("valid control"));
    assert_eq!(sim.conditions(start), (0.3, 250.0));
    assert!(sim.failing(start));
    let end = run_ticks(&mut sim, start, 100);
    assert_eq!(scrape(&sim, end).errors, 600.0);
    sim.set_control(ControlOverride::default());
    assert!(!sim.failing(end));
}

#[test]
fn probes_fail_at_the_error_rate_only_while_failing() {
    let start = Instant::now();
    let mut sim = Sim::new(beta_profile(), 200, BETA.to_owned(), start);
    assert!((0..100).all(|_| sim.probe(start)));
    let later = start + Duration::from_secs(30);
    let n_failed = (0..100).filter(|_| !sim.probe(later)).count();
    assert_eq!(n_failed, 50);
}

#[test]
fn fractional_request_rates_stay_exact() {
    let start = Instant::now();
    let mut sim = Sim::new(beta_profile(), 5, STABLE.to_owned(), start);
    let end = run_ticks(&mut sim, start, 30);
    assert_eq!(scrape(&sim, end).latency.count, 15.0);
}

#[test]
fn version_label_is_escaped() {
    let version = "2.0 \"rc\" C:\\beta\nnext";
    let sim = Sim::new(beta_profile(), 200, version.to_owned(), Instant::now());
    assert!(sim
        .render(Instant::now())
        .contains(r#"version="2.0 \"rc\" C:\\beta\nnext""#));
    assert_eq!(scrape(&sim, Instant::now()).version, version);
}

#[track_caller]
fn check_control(text: &str, expected: Result<ControlOverride, &str>) {
    let got = parse_control(text).map_err(|err| err.to_string());
    assert_eq!(got, expected.map_err(str::to_owned));
}

#[test]
fn control_file_parsing() {
    let none = ControlOverride::default();
    check_control("", Ok(none));
    check_control("# incident drill\n\n", Ok(none));
    check_control(
        "error_rate=0.3",
        Ok(ControlOverride {
            error_rate: Some(0.3),
            ..none
        }),
    );
    check_control(
        " latency_ms = 250 \nerror_rate=0\n",
        Ok(ControlOverride {
            error_rate: Some(0.0),
            latency_ms: Some(250.0),
        }),
    );
    check_control("error_rate=1.5", Err("line 1: value 1.5 is out of range"));
    check_control("latency_ms=-1", Err("line 1: value -1 is out of range"));
    check_control("\nerror_rate=lots", Err("line 2: value is not a number"));
    check_control("error_rate", Err("line 1: expected key=value"));
    check_control("rps=5", Err("line 1: unknown key \"rps\""));
}
