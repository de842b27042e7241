use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// Reads one HTTP request (headers and a Content-Length body) and answers `status`.
async fn answer(listener: &TcpListener, status: &str) -> String {
    let (mut socket, _) = listener.accept().await.expect("accept");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.expect("read");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let response =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                socket.write_all(response.as_bytes()).await.expect("write");
                return text[end + 4..].to_owned();
            }
        }
        if n == 0 {
            return String::new();
        }
    }
}

fn webhook(url: String, events: &[&str], format: WebhookFormat) -> Webhook {
    Webhook {
        url,
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        format,
    }
}

#[tokio::test]
async fn each_webhook_gets_the_events_its_filter_takes_in_its_format() {
    let json_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let slack_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = |l: &TcpListener| format!("http://{}/hook", l.local_addr().expect("addr"));
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let notifier = Notifier::start(
        &[
            webhook(url(&json_listener), &["rollout.*"], WebhookFormat::Json),
            webhook(url(&slack_listener), &["*"], WebhookFormat::Slack),
        ],
        &tracker,
        shutdown.clone(),
    );
    notifier
        .send(serde_json::json!({"event": "verdict_changed", "deployment": "cache", "to": "fail"}));
    notifier.send(serde_json::json!({"event": "rollout.started", "deployment": "cache", "text": "cache 2.0: started"}));
    let (json_bodies, slack_bodies) = tokio::time::timeout(Duration::from_secs(30), async {
        let json = answer(&json_listener, "200 OK").await;
        let slack = [
            answer(&slack_listener, "200 OK").await,
            answer(&slack_listener, "200 OK").await,
        ];
        (json, slack)
    })
    .await
    .expect("the events arrive");
    let event: serde_json::Value = serde_json::from_str(&json_bodies).expect("JSON");
    assert_eq!(
        event["event"], "rollout.started",
        "the filter keeps verdict_changed out"
    );
    let texts: Vec<serde_json::Value> = slack_bodies
        .iter()
        .map(|b| serde_json::from_str::<serde_json::Value>(b).expect("JSON")["text"].clone())
        .collect();
    assert_eq!(
        texts,
        vec![
            serde_json::json!("verdict_changed cache: to: fail"),
            serde_json::json!("cache 2.0: started")
        ]
    );
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

#[test]
fn filters_take_names_prefixes_and_everything() {
    let hook = webhook(
        String::new(),
        &["rollout.*", "rollback_decided"],
        WebhookFormat::Json,
    );
    assert!(hook.wants("rollout.completed"));
    assert!(hook.wants("rollback_decided"));
    assert!(!hook.wants("rollback_result"));
    assert!(!hook.wants("verdict_changed"));
    assert!(webhook(String::new(), &["*"], WebhookFormat::Json).wants("anything"));
}

#[tokio::test]
async fn events_are_posted_as_json_and_retried_after_a_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let notifier = Notifier::start(
        &[webhook(url, &["*"], WebhookFormat::Json)],
        &tracker,
        shutdown.clone(),
    );
    notifier.send(serde_json::json!({"event": "verdict_changed", "to": "fail"}));
    let received = tokio::time::timeout(Duration::from_secs(30), async {
        let first = answer(&listener, "500 Internal Server Error").await;
        let second = answer(&listener, "200 OK").await;
        (first, second)
    })
    .await
    .expect("two attempts arrive");
    for body in [&received.0, &received.1] {
        let event: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(event["event"], "verdict_changed");
        assert_eq!(event["to"], "fail");
    }
    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .expect("the sender stops on shutdown");
}

#[tokio::test]
async fn an_https_webhook_is_verified_against_the_system_roots() {
    // A server whose certificate a private CA signed: the system's roots do
    // not trust it, so the post fails on the certificate (and shows why).
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&server_key, &issuer)
        .expect("server certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the defaults")
    .with_no_client_auth()
    .with_single_cert(vec![server_cert.der().clone()], key)
    .expect("server TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://{}/hook", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        acceptor.accept(socket).await.map(|_| ())
    });
    let err = post(&client_for(&url), &url, Bytes::from_static(b"{}"))
        .await
        .expect_err("the certificate is not trusted");
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    let handshake = server.await.expect("server task");
    assert!(handshake.is_err(), "the client hung up in the handshake");
}
