//! Test support: a scripted HTTP/1.1 responder bound to 127.0.0.1:0 (plain,
//! or https with a certificate from a [`TestPki`]), a compact rendering of `AppHealth` for data-driven checks, and a `*` glob
//! to compare renderings that hold OS-specific error text.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hyper::Uri;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rollguard_common::sample::{AppHealth, Bucket};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// One scripted answer.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// 200 with this body.
    Body(String),
    /// This status with this body.
    Status(u16, &'static str),
    /// Reads the request and never answers (the connection stays open).
    Hang,
}

/// Returns a 200 reply with `body`.
pub(crate) fn body(text: &str) -> Reply {
    Reply::Body(text.to_owned())
}

/// Serves `script` in order, one reply per connection; the last repeats.
#[derive(Debug)]
pub(crate) struct TestServer {
    addr: SocketAddr,
    scheme: &'static str,
    hits: Arc<AtomicUsize>,
    accept_task: JoinHandle<()>,
}

impl TestServer {
    /// Binds 127.0.0.1:0 and starts answering plain http.
    pub(crate) async fn start(script: Vec<Reply>) -> TestServer {
        TestServer::bind(script, None).await
    }

    /// Binds 127.0.0.1:0 and starts answering https with `pki`'s server
    /// certificate; a connection whose handshake fails gets no reply.
    pub(crate) async fn start_tls(script: Vec<Reply>, pki: &TestPki) -> TestServer {
        TestServer::bind(script, Some(TlsAcceptor::from(Arc::clone(&pki.server)))).await
    }

    async fn bind(script: Vec<Reply>, acceptor_opt: Option<TlsAcceptor>) -> TestServer {
        assert!(!script.is_empty(), "a script needs at least one reply");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let scheme = if acceptor_opt.is_some() {
            "https"
        } else {
            "http"
        };
        let hits = Arc::new(AtomicUsize::new(0));
        let accept_task = tokio::spawn(serve(listener, acceptor_opt, script, Arc::clone(&hits)));
        TestServer {
            addr,
            scheme,
            hits,
            accept_task,
        }
    }

    /// Returns `http://<addr><path>` (`https://` for a TLS server).
    pub(crate) fn uri(&self, path: &str) -> Uri {
        format!("{}://{}{path}", self.scheme, self.addr)
            .parse()
            .expect("valid test uri")
    }

    /// Returns how many connections were accepted.
    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every
        // connection task, hanging ones included.
        self.accept_task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    acceptor_opt: Option<TlsAcceptor>,
    script: Vec<Reply>,
    hits: Arc<AtomicUsize>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let idx = hits.fetch_add(1, Ordering::SeqCst);
        let reply = script[idx.min(script.len() - 1)].clone();
        match acceptor_opt.clone() {
            None => connections.spawn(respond(stream, reply)),
            Some(acceptor) => connections.spawn(async move {
                // A client that does not trust the certificate hangs up.
                if let Ok(tls) = acceptor.accept(stream).await {
                    respond(tls, reply).await;
                }
            }),
        };
    }
}

async fn respond(mut stream: impl AsyncRead + AsyncWrite + Unpin, reply: Reply) {
    // Read the request head; GETs have no body.
    let mut head = Vec::new();
    let mut chunk = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let (code, text) = match reply {
        Reply::Body(text) => (200, text),
        Reply::Status(code, text) => (code, text.to_owned()),
        Reply::Hang => {
            std::future::pending::<()>().await;
            return;
        }
    };
    let response = format!(
        "HTTP/1.1 {code} Scripted\r\ncontent-type: text/plain; version=0.0.4\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A CA, written to a PEM file for `app.ca`, and a server certificate for
/// 127.0.0.1 that it signed. The file is removed on drop.
#[derive(Debug)]
pub(crate) struct TestPki {
    /// The CA certificate's PEM file.
    pub(crate) ca_file: PathBuf,
    server: Arc<ServerConfig>,
}

impl TestPki {
    /// Makes the CA and the server certificate (rcgen, ring).
    pub(crate) fn new() -> TestPki {
        static NEXT_FILE: AtomicUsize = AtomicUsize::new(0);
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().expect("server key");
        let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("server params")
            .signed_by(&server_key, &issuer)
            .expect("server certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the defaults")
            .with_no_client_auth()
            .with_single_cert(vec![server_cert.der().clone()], key)
            .expect("server TLS config");
        let ca_file = std::env::temp_dir().join(format!(
            "rollguard-agent-test-ca-{}-{}.pem",
            std::process::id(),
            NEXT_FILE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&ca_file, ca_cert.pem()).expect("write the CA file");
        TestPki {
            ca_file,
            server: Arc::new(server),
        }
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

/// Returns an http URI on which nothing listens (a port just released).
pub(crate) async fn refused_uri() -> Uri {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}/").parse().expect("valid test uri")
}

/// Runs `future` on a fresh current-thread runtime, like the agent's.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime")
        .block_on(future)
}

/// Renders the figures a check compares, leaving out zero and empty ones.
///
/// Probe latencies depend on the machine, so only the probe histogram's
/// total (`probe_observed`) and its `+Inf`-only part (`probe_over_10s`)
/// are shown.
pub(crate) fn render(health: &AppHealth) -> String {
    let mut parts = Vec::new();
    if health.scrape_enabled {
        parts.push(format!("scrapes={}", health.scrapes));
        if health.scrape_errors > 0 {
            parts.push(format!(
                "scrape_errors={} scrape_error=`{}`",
                health.scrape_errors, health.scrape_error
            ));
        }
        parts.push(format!(
            "requests={} errors={}",
            health.requests, health.errors
        ));
        if !health.latency_buckets.is_empty() {
            parts.push(format!(
                "latency=[{}] count={} sum={}",
                render_buckets(&health.latency_buckets),
                health.latency_count,
                health.latency_sum_seconds
            ));
        }
    }
    if !health.gauges.is_empty() {
        let gauges: Vec<String> = health
            .gauges
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        parts.push(format!("gauges=[{}]", gauges.join(" ")));
    }
    if health.probe_enabled {
        parts.push(format!("probes={}", health.probes));
        if health.probe_errors > 0 {
            parts.push(format!(
                "probe_errors={} probe_error=`{}`",
                health.probe_errors, health.probe_error
            ));
        }
        let counts: Vec<f64> = health
            .probe_latency_buckets
            .iter()
            .map(|b| b.cumulative_count)
            .collect();
        if let [.., below_inf, total] = counts[..] {
            parts.push(format!(
                "probe_observed={total} probe_over_10s={}",
                total - below_inf
            ));
        }
    }
    parts.join(" ")
}

fn render_buckets(buckets: &[Bucket]) -> String {
    let parts: Vec<String> = buckets
        .iter()
        .map(|b| {
            if b.upper_bound == f64::INFINITY {
                format!("+Inf:{}", b.cumulative_count)
            } else {
                format!("{}:{}", b.upper_bound, b.cumulative_count)
            }
        })
        .collect();
    parts.join(" ")
}

/// Asserts that `text` matches `pattern`, where `*` matches any run of chars.
#[track_caller]
pub(crate) fn assert_glob(pattern: &str, text: &str) {
    assert!(
        glob(pattern, text),
        "\nexpected (glob): {pattern}\n          got: {text}\n"
    );
}

fn glob(pattern: &str, text: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        // No `*`: the whole text must be the pattern.
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[test]
fn glob_matches_stars() {
    assert!(glob("abc", "abc"));
    assert!(!glob("abc", "abcd"));
    assert!(glob("a*d", "abcd"));
    assert!(glob(
        "*refused*",
        "tcp connect error: Connection refused (os error 111)"
    ));
    assert!(!glob("a*b*c", "acb"));
    assert!(glob("a*", "a"));
}
