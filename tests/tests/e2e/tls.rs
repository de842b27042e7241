//! Mutual TLS with certificates made by `rollguardctl pki`: a fleet connects
//! and rolls back; callers without a good certificate are refused; the
//! certificate, never the payload, names the caller; a viewer may only read;
//! a revocation read on SIGHUP ends the revoked agent's stream.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rollguard_proto::v1 as pb;
use rollguard_tests::{
    agent, binaries, test_dir, wait_until, Agent, AgentSpec, Coordinator, CtlOutput, Pki,
};
use serde_json::Value;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

const ROLES: &str =
    "[auth.roles]\nalice = \"operator\"\nvera = \"viewer\"\nmallory = \"admin\"\nold = \"admin\"\n";

/// A CA in `root/pki` with a coordinator certificate for 127.0.0.1, and
/// the agents and operators named.
fn pki(root: &Path, agents: &[&str], operators: &[&str]) -> Pki {
    let pki = Pki::init(&root.join("pki")).expect("pki init");
    pki.issue(
        "coordinator",
        "coordinator",
        &["--san", "127.0.0.1", "--san", "localhost"],
    )
    .expect("coordinator certificate");
    for name in agents {
        pki.issue("agent", name, &[]).expect("agent certificate");
    }
    for name in operators {
        pki.issue("operator", name, &[])
            .expect("operator certificate");
    }
    pki
}

fn tls_agent(root: &Path, coordinator: &Coordinator, pki: &Pki, host: &str, cohort: &str) -> Agent {
    let mut spec = AgentSpec::with_evidence_action(host, "cache", cohort);
    spec.extra_toml.push_str(&pki.agent_toml(host));
    Agent::start(root, &coordinator.url, &spec).expect("agent starts")
}

fn agents_as(pki: &Pki, coordinator: &Coordinator, operator: &str) -> Option<Vec<Value>> {
    let out = pki.ctl_as(&coordinator.url, operator, &["agents", "-o", "json"]);
    out.json().ok()?.as_array().cloned()
}

fn wait_connected(pki: &Pki, coordinator: &Coordinator, hosts: &[&str]) {
    wait_until(
        "the TLS agents to connect",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let agents = agents_as(pki, coordinator, "vera")?;
            hosts
                .iter()
                .all(|h| agent(&agents, h).is_some_and(|a| a["connected"] == true))
                .then_some(())
        },
    )
    .expect("agents connect over TLS");
}

#[track_caller]
fn assert_denied(out: &CtlOutput, needle: &str) {
    assert!(!out.status.success(), "refused: {out:?}");
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {line}");
    assert!(line.contains(needle), "`{line}` does not say `{needle}`");
}

#[test]
fn a_tls_fleet_rolls_back_as_the_named_operator_and_a_viewer_only_reads() {
    let root = test_dir("tls-fleet");
    let pki = pki(&root, &["beta-1", "base-1"], &["alice", "vera", "carol"]);
    let config = format!("{}{ROLES}", pki.coordinator_toml("coordinator"));
    let coordinator = Coordinator::start_tls(&root.join("data"), &config).expect("coordinator");
    assert!(coordinator.url.starts_with("https://127.0.0.1:"));
    let beta = tls_agent(&root, &coordinator, &pki, "beta-1", "beta");
    let baseline = tls_agent(&root, &coordinator, &pki, "base-1", "baseline");
    wait_connected(&pki, &coordinator, &["beta-1", "base-1"]);

    // A viewer reads but may not act; the refusal is one line, or one JSON document.
    let out = pki.ctl_as(
        &coordinator.url,
        "vera",
        &["rollback", "cache", "--reason", "try"],
    );
    assert_denied(
        &out,
        "permission denied: operator vera has role viewer; rollback needs operator",
    );
    let out = pki.ctl_as(
        &coordinator.url,
        "vera",
        &["rollback", "cache", "--reason", "try", "-o", "json"],
    );
    let error = out.json().expect("one JSON document");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("permission denied")),
        "{error}"
    );
    let out = pki.ctl_as(&coordinator.url, "vera", &["rearm", "cache"]);
    assert_denied(&out, "rearm needs operator");
    // An operator certificate with no binding may call nothing at all.
    let out = pki.ctl_as(&coordinator.url, "carol", &["status"]);
    assert_denied(&out, "operator carol has no role binding");
    // An agent's certificate may not call the control API.
    let out = pki.ctl_as(&coordinator.url, "beta-1", &["status"]);
    assert_denied(&out, "agent beta-1 may call only connect");

    // The operator acts, and the audit history names the certificate.
    let out = pki.ctl_as(
        &coordinator.url,
        "alice",
        &[
            "rollback",
            "cache",
            "--reason",
            "tls drill",
            "--wait",
            "--timeout",
            "60s",
            "-o",
            "json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        beta.evidence_lines(),
        1,
        "the beta host ran the rollback once"
    );
    assert_eq!(baseline.evidence_lines(), 0, "the baseline host did not");
    let history = pki
        .ctl_as(
            &coordinator.url,
            "vera",
            &["history", "--deployment", "cache", "-o", "json"],
        )
        .json()
        .expect("history");
    let text = history.to_string();
    assert!(text.contains("operator/alice"), "{text}");
}

fn channel(url: &str, pki_ca: &Path, identity: Option<(&Path, &Path)>) -> Endpoint {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(pki_ca).expect("ca")));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).expect("cert"),
            std::fs::read(key).expect("key"),
        ));
    }
    Endpoint::from_shared(url.to_owned())
        .expect("url")
        .connect_timeout(Duration::from_secs(10))
        .tls_config(tls)
        .expect("tls config")
}

/// Calls GetFleetStatus; the error, if the call fails.
async fn status_call(endpoint: Endpoint) -> Result<(), String> {
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut client = pb::control_service_client::ControlServiceClient::new(channel);
    client
        .get_fleet_status(pb::GetFleetStatusRequest::default())
        .await
        .map(|_| ())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// Opens `Connect` and sends a Hello for `host_id`; the stream's first answer.
async fn connect_as(endpoint: Endpoint, host_id: &str) -> Result<(), tonic::Status> {
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("{e:?}")))?;
    let mut client = pb::agent_service_client::AgentServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Hello(pb::Hello {
            host_id: host_id.to_owned(),
            deployment: "cache".to_owned(),
            cohort: pb::Cohort::Baseline as i32,
            ..Default::default()
        })),
    })
    .await
    .expect("queue Hello");
    let response = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?;
    drop(response);
    Ok(())
}

#[test]
fn callers_without_a_good_certificate_are_refused_and_identity_comes_from_it() {
    let root = test_dir("tls-refused");
    let pki = pki(&root, &["beta-1"], &["alice", "vera", "mallory"]);
    pki.issue("operator", "old", &["--expired"])
        .expect("expired certificate");
    let other = Pki::init(&root.join("other-ca")).expect("another CA");
    other
        .issue("operator", "alice", &[])
        .expect("alice from another CA");
    let config = format!(
        "{}[auth]\nrevoked = [\"operator/mallory\"]\n{ROLES}",
        pki.coordinator_toml("coordinator"),
    );
    let coordinator = Coordinator::start_tls(&root.join("data"), &config).expect("coordinator");
    let beta = tls_agent(&root, &coordinator, &pki, "beta-1", "beta");
    wait_connected(&pki, &coordinator, &["beta-1"]);

    // The good operator gets through: the refusals below are about the certificates.
    let out = pki.ctl_as(&coordinator.url, "alice", &["status"]);
    assert!(out.status.success(), "{out:?}");
    // Expired, and signed by another CA: the handshake fails.
    let out = pki.ctl_as(&coordinator.url, "old", &["status"]);
    assert!(
        !out.status.success(),
        "an expired certificate is refused: {out:?}"
    );
    let out = other.ctl_as(&coordinator.url, "alice", &["status"]);
    assert!(
        !out.status.success(),
        "another CA's certificate is refused: {out:?}"
    );
    // Revoked: refused by name.
    let out = pki.ctl_as(&coordinator.url, "mallory", &["status"]);
    assert_denied(&out, "operator/mallory is revoked");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        // No client certificate at all: the call fails at the handshake.
        let anonymous = status_call(channel(&coordinator.url, &pki.ca(), None)).await;
        assert!(
            anonymous.is_err(),
            "no certificate, no answer: {anonymous:?}"
        );
        // beta-1's certificate cannot announce another host, nor the one an
        // operator's certificate could.
        let as_beta = channel(
            &coordinator.url,
            &pki.ca(),
            Some((&pki.cert("beta-1"), &pki.key("beta-1"))),
        );
        let status = connect_as(as_beta, "beta-2").await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().contains("cannot connect as host beta-2"),
            "{status:?}"
        );
        let as_alice = channel(
            &coordinator.url,
            &pki.ca(),
            Some((&pki.cert("alice"), &pki.key("alice"))),
        );
        let status = connect_as(as_alice, "alice-host")
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    });
    // Nothing about another host changed, and beta-1 is still connected as beta.
    let agents = agents_as(&pki, &coordinator, "vera").expect("agents");
    assert!(agent(&agents, "beta-2").is_none(), "{agents:?}");
    assert!(agent(&agents, "alice-host").is_none(), "{agents:?}");
    let beta_1 = agent(&agents, "beta-1").expect("beta-1 listed");
    assert_eq!(beta_1["connected"], true, "{beta_1}");
    assert_eq!(beta_1["cohort"], "beta", "{beta_1}");
    drop(beta);
}

#[test]
fn a_revocation_read_on_sighup_ends_the_agents_stream() {
    let root = test_dir("tls-revoke");
    let pki = pki(&root, &["beta-1"], &["vera"]);
    let config = format!("{}{ROLES}", pki.coordinator_toml("coordinator"));
    let coordinator = Coordinator::start_tls(&root.join("data"), &config).expect("coordinator");
    let beta = tls_agent(&root, &coordinator, &pki, "beta-1", "beta");
    wait_connected(&pki, &coordinator, &["beta-1"]);

    let revoked = format!(
        "{}[auth]\nrevoked = [\"agent/beta-1\"]\n[auth.roles]\nvera = \"viewer\"\n",
        pki.coordinator_toml("coordinator")
    );
    std::fs::write(root.join("data").join("coordinator.toml"), revoked).expect("rewrite config");
    let pid = coordinator.proc.pid().expect("running");
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).expect("SIGHUP");
    wait_until(
        "the revoked agent's stream to end",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let agents = agents_as(&pki, &coordinator, "vera")?;
            agent(&agents, "beta-1")
                .is_some_and(|a| a["connected"] == false)
                .then_some(())
        },
    )
    .expect("revoked agent disconnected");
    // It is refused on every reconnect, and says so in its log.
    wait_until(
        "the agent to log the refusal",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || beta.proc.log_text().contains("revoked").then_some(()),
    )
    .expect("refusal logged");
    let agents = agents_as(&pki, &coordinator, "vera").expect("agents");
    assert_eq!(
        agent(&agents, "beta-1").expect("listed")["connected"],
        false
    );
}

#[test]
fn an_agent_host_id_that_differs_from_its_certificate_is_a_config_error() {
    let root = test_dir("tls-hostid");
    let pki = pki(&root, &["web-1"], &[]);
    let config = root.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "coordinator = \"https://127.0.0.1:7600\"\ndeployment = \"d\"\ncohort = \"beta\"\n{}",
            pki.agent_toml("web-1")
        ),
    )
    .expect("write");
    let out = Command::new(&binaries().agent)
        .args(["--check-config", "--host-id", "web-2", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("host_id") && stderr.contains("web-1"),
        "{stderr}"
    );
    // Without --host-id the certificate names the host.
    let out = Command::new(&binaries().agent)
        .args(["--check-config", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("host web-1 in d"), "{stdout}");
    // An https:// coordinator without [tls] names the key.
    let bare = root.join("bare.toml");
    std::fs::write(
        &bare,
        "coordinator = \"https://127.0.0.1:7600\"\ndeployment = \"d\"\ncohort = \"beta\"\n",
    )
    .expect("write");
    let out = Command::new(&binaries().agent)
        .args(["--check-config", "--config"])
        .arg(&bare)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("tls.ca"), "{stderr}");
}

/// `curl` over HTTPS as `operator` (none: no client certificate); returns
/// (status code, body), or `None` when the handshake failed.
fn https_get(pki: &Pki, url: &str, operator: Option<&str>) -> Option<(u16, String)> {
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(pki.ca());
    if let Some(name) = operator {
        command
            .arg("--cert")
            .arg(pki.cert(name))
            .arg("--key")
            .arg(pki.key(name));
    }
    let out = command.arg(url).output().expect("curl runs");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_owned()))
}

#[test]
fn the_http_listener_off_loopback_serves_https_health_to_anyone_and_the_rest_to_viewers() {
    let test =
        "tls::the_http_listener_off_loopback_serves_https_health_to_anyone_and_the_rest_to_viewers";
    if Command::new("curl").arg("--version").output().is_err() {
        rollguard_tests::skip(
            test,
            "no curl on PATH to speak HTTPS with client certificates",
        );
        return;
    }
    let root = test_dir("https-dashboard");
    let pki = pki(&root, &["web-1"], &["vera", "nobody", "old"]);
    let config = format!(
        "[auth]\nrevoked = [\"operator/old\"]\n{ROLES}{}",
        pki.coordinator_toml("coordinator")
    );
    // 0.0.0.0 is off loopback: HTTPS with the [tls] certificate (SAN 127.0.0.1).
    let coordinator = Coordinator::start_tls_http_on(&root.join("data"), &config, "0.0.0.0:0")
        .expect("coordinator");
    let addr = coordinator.http_url().expect("http address");
    let port = addr.rsplit(':').next().expect("port");
    let base = format!("https://127.0.0.1:{port}");
    let get = |path: &str, operator: Option<&str>| {
        https_get(&pki, &format!("{base}{path}"), operator)
            .unwrap_or_else(|| panic!("the TLS handshake for {path} as {operator:?} failed"))
    };
    // Health is open: a load balancer has no certificate.
    assert_eq!(get("/healthz", None).0, 200);
    assert_eq!(get("/readyz", None).0, 200);
    // Everything else needs an operator with a binding.
    for path in ["/metrics", "/", "/api/fleet", "/api/events"] {
        let (code, body) = get(path, None);
        assert_eq!(code, 403, "{path}: {body}");
        assert!(body.contains("client certificate"), "{path}: {body}");
    }
    let (code, body) = get("/metrics", Some("vera"));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("# TYPE rollguard_agents_connected gauge"),
        "{body}"
    );
    let (code, body) = get("/", Some("vera"));
    assert_eq!(code, 200);
    assert!(body.contains("<title>rollguard</title>"), "{body}");
    assert_eq!(get("/api/fleet", Some("vera")).0, 200);
    let (code, body) = get("/", Some("nobody"));
    assert_eq!(
        (code, body.contains("no role binding")),
        (403, true),
        "{body}"
    );
    let (code, body) = get("/", Some("old"));
    assert_eq!((code, body.contains("revoked")), (403, true), "{body}");
    let (code, body) = get("/metrics", Some("web-1"));
    assert_eq!(
        (code, body.contains("not an operator")),
        (403, true),
        "{body}"
    );
    // A certificate from another CA fails the handshake itself.
    let other = Pki::init(&root.join("other-pki")).expect("other CA");
    other.issue("operator", "vera", &[]).expect("other vera");
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(pki.ca())
        .arg("--cert")
        .arg(other.cert("vera"))
        .arg("--key")
        .arg(other.key("vera"))
        .arg(format!("{base}/metrics"));
    let out = command.output().expect("curl runs");
    assert!(
        !out.status.success(),
        "a foreign certificate got in: {out:?}"
    );
}
