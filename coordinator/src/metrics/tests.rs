//! `/metrics` rendered from real parts (a store in a temp dir, the fleet,
//! decisions) and read back with the project's own exposition parser.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rollguard_common::exposition::{self, MetricType};
use rollguard_common::{Cohort, DeploymentName, HostId};
use tokio_util::task::TaskTracker;

use super::*;
use crate::broadcast::Issuer;
use crate::fleet::HostIdentity;
use crate::notify::Notifier;
use crate::store::Store;
use tokio::net::TcpStream;

/// Every family, in the order the page has them.
const FAMILIES: [&str; 28] = [
    "rollguard_agents_connected",
    "rollguard_agents_stale",
    "rollguard_agents_disconnected",
    "rollguard_cohort_cpu_usage_ratio",
    "rollguard_cohort_memory_usage_ratio",
    "rollguard_cohort_load1",
    "rollguard_cohort_disk_read_bytes_per_second",
    "rollguard_cohort_disk_written_bytes_per_second",
    "rollguard_cohort_network_receive_bytes_per_second",
    "rollguard_cohort_network_transmit_bytes_per_second",
    "rollguard_cohort_error_ratio",
    "rollguard_cohort_request_latency_p99_seconds",
    "rollguard_cohort_requests_per_second",
    "rollguard_verdicts_total",
    "rollguard_deployment_verdict",
    "rollguard_consecutive_failures",
    "rollguard_deployment_armed",
    "rollguard_hosts_needing_attention",
    "rollguard_deployment_blast_radius_exceeded",
    "rollguard_command_results",
    "rollguard_samples_ingested_total",
    "rollguard_samples_rejected_total",
    "rollguard_samples_late_total",
    "rollguard_samples_deduplicated_total",
    "rollguard_store_errors_total",
    "rollguard_store_commit_duration_seconds",
    "rollguard_host_cpu_usage_ratio",
    "rollguard_host_memory_usage_ratio",
];

struct Rig {
    scrape: Scrape,
    dir: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rig(name: &str) -> Rig {
    let dir = std::env::temp_dir().join(format!("rollguard-metrics-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::for_test(dir.clone());
    config.metrics_per_host = true;
    config
        .deployments
        .insert(DeploymentName::new("shop".to_owned()), Default::default());
    let config = Arc::new(config);
    let counters = Arc::new(Counters::default());
    let (store, _writer) = Store::open(&dir, Arc::clone(&counters)).expect("store opens");
    let fleet = Arc::new(Fleet::from_snapshot(Default::default()));
    let issuer = Issuer {
        config: Arc::clone(&config),
        fleet: Arc::clone(&fleet),
        store,
        notifier: Notifier::default(),
        tracker: TaskTracker::new(),
    };
    let decisions = Arc::new(Decisions::restore(Vec::new(), Vec::new(), issuer));
    Rig {
        scrape: Scrape {
            config,
            fleet,
            decisions,
            counters,
        },
        dir,
    }
}

#[test]
fn every_family_has_help_and_type_from_start_up() {
    let rig = rig("start-up");
    let text = text::render(&rig.scrape);
    let parsed = exposition::parse(&text).expect("parses");
    let names: Vec<&str> = parsed.families.iter().map(|f| f.name).collect();
    assert_eq!(names[..FAMILIES.len()], FAMILIES, "{text}");
    assert_eq!(names.last(), Some(&"rollguard_host_load1"));
    for family in &parsed.families {
        assert!(family.help.is_some(), "{} has no HELP", family.name);
    }
    // Counters keep `_total` in their HELP and TYPE lines.
    assert!(text.contains("# TYPE rollguard_samples_ingested_total counter\n"));
    assert!(text.contains("# HELP rollguard_verdicts_total Evaluation rounds"));
    assert!(text.contains("\nrollguard_samples_ingested_total 0\n"));
    assert!(!text.contains("# EOF"));
    let histogram = parsed
        .families
        .iter()
        .find(|f| f.name == "rollguard_store_commit_duration_seconds")
        .expect("histogram");
    assert_eq!(histogram.metric_type, MetricType::Histogram);
}

#[test]
fn counters_and_the_histogram_carry_their_values() {
    let rig = rig("values");
    let counters = &rig.scrape.counters;
    Counters::add(&counters.samples_ingested, 7);
    counters.verdict("shop", "fail");
    counters.verdict("shop", "fail");
    counters.observe_commit(Duration::from_millis(3));
    counters.observe_commit(Duration::from_secs(9));
    let text = text::render(&rig.scrape);
    for line in [
        "rollguard_samples_ingested_total 7",
        r#"rollguard_verdicts_total{deployment="shop",verdict="fail"} 2"#,
        r#"rollguard_store_commit_duration_seconds_bucket{le="0.0025"} 0"#,
        r#"rollguard_store_commit_duration_seconds_bucket{le="0.005"} 1"#,
        // The crate writes bounds as floats: `1.0` where the old page had `1`.
        r#"rollguard_store_commit_duration_seconds_bucket{le="1.0"} 1"#,
        r#"rollguard_store_commit_duration_seconds_bucket{le="2.5"} 1"#,
        r#"rollguard_store_commit_duration_seconds_bucket{le="+Inf"} 2"#,
        "rollguard_store_commit_duration_seconds_count 2",
        r#"rollguard_deployment_armed{deployment="shop"} 1.0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
}

#[test]
fn a_hostile_name_is_escaped_and_cannot_add_series() {
    let rig = rig("hostile");
    // Names may hold quotes and backslashes (not whitespace): a label value
    // written raw would end the value early and smuggle in text.
    let host = r#"h"} 1 rollguard_fake{a="\"#;
    let identity = HostIdentity {
        host_id: HostId::new(host.to_owned()),
        deployment: DeploymentName::new(r#"dep\"x"#.to_owned()),
        cohort: Cohort::Beta,
        auto: false,
        app_version: String::new(),
        agent_version: String::new(),
        action_names: Vec::new(),
        interval: Duration::from_secs(1),
        session_id: 0,
        labels: BTreeMap::new(),
    };
    let (wire, _wire_rx) = tokio::sync::mpsc::channel(1);
    rig.scrape
        .fleet
        .connect(identity, AgentTx::new(wire), SystemTime::now());
    let text = text::render(&rig.scrape);
    let parsed = exposition::parse(&text).expect("still parses");
    assert!(parsed.families.iter().all(|f| f.name != "rollguard_fake"));
    let connected = parsed
        .families
        .iter()
        .find(|f| f.name == "rollguard_agents_connected")
        .expect("family");
    let deployments: Vec<&str> = connected
        .samples
        .iter()
        .flat_map(|s| &s.labels)
        .filter(|l| l.name == "deployment")
        .map(|l| l.value.as_ref())
        .collect();
    assert_eq!(deployments, [r#"dep\"x"#]);
}

// === The listener's limits (issue 10) ===
//
// These use loopback sockets (bound to port 0), since what they check is how
// the listener treats them; short limits keep them quick.

/// Generous: every wait below is for something that happens well before.
const DEADLINE: Duration = Duration::from_secs(10);

/// Starts the listener with `limits`; returns its address and its stop token.
async fn listen(rig: &Rig, limits: Limits) -> (std::net::SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("has an address");
    let shutdown = CancellationToken::new();
    tokio::spawn(serve_with(
        listener,
        Site {
            scrape: rig.scrape.clone(),
            dashboard: None,
            tls: None,
        },
        TaskTracker::new(),
        shutdown.clone(),
        limits,
    ));
    (addr, shutdown)
}

/// Sends a keep-alive GET /healthz on `stream`.
async fn ask(stream: &mut TcpStream) {
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("request sent");
}

/// Reads `/healthz`'s whole answer from `stream`.
async fn answer(stream: &mut TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\nok\n") {
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.expect("reads");
        assert_ne!(n, 0, "closed before the answer: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).expect("utf-8")
}

/// Waits (within [`DEADLINE`]) for the server to close `stream`.
async fn closed_by_server(stream: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
        .await
        .expect("closed by the server within the deadline")
        .expect("reads to EOF");
}

#[tokio::test]
async fn idle_connections_are_closed_new_and_kept_alive() {
    let rig = rig("idle");
    let limits = Limits {
        header_read_timeout: Duration::from_millis(200),
        ..Limits::DEFAULT
    };
    let (addr, _shutdown) = listen(&rig, limits).await;
    let mut silent = TcpStream::connect(addr).await.expect("connects");
    let mut kept_alive = TcpStream::connect(addr).await.expect("connects");
    ask(&mut kept_alive).await;
    assert!(answer(&mut kept_alive).await.starts_with("HTTP/1.1 200"));
    closed_by_server(&mut silent).await;
    closed_by_server(&mut kept_alive).await;
}

#[tokio::test]
async fn past_the_cap_a_connection_waits_until_one_closes() {
    let rig = rig("cap");
    let limits = Limits {
        max_connections: 2,
        ..Limits::DEFAULT
    };
    let (addr, _shutdown) = listen(&rig, limits).await;
    let mut served = Vec::new();
    for _ in 0..limits.max_connections {
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        ask(&mut stream).await;
        answer(&mut stream).await;
        served.push(stream);
    }
    // The kernel completes the handshake; the server does not accept it.
    let mut waiting = TcpStream::connect(addr).await.expect("connects");
    ask(&mut waiting).await;
    // Showing that something does not happen takes a window of time; the
    // answer would come in microseconds.
    let early = tokio::time::timeout(Duration::from_millis(300), answer(&mut waiting)).await;
    assert!(early.is_err(), "served past the cap");

    drop(served.pop());
    let late = tokio::time::timeout(DEADLINE, answer(&mut waiting))
        .await
        .expect("served once a connection closed");
    assert!(late.starts_with("HTTP/1.1 200"), "{late}");
}
