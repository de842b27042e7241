//! Test support: a scripted HTTP/1.1 responder bound to 127.0.0.1:0, a
//! compact rendering of `AppHealth` for data-driven checks, and a `*` glob
//! to compare renderings that hold OS-specific error text.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hyper::Uri;
use rollguard_common::sample::{AppHealth, Bucket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

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
    hits: Arc<AtomicUsize>,
    accept_task: JoinHandle<()>,
}

impl TestServer {
    /// Binds 127.0.0.1:0 and starts answering.
    pub(crate) async fn start(script: Vec<Reply>) -> TestServer {
        assert!(!script.is_empty(), "a script needs at least one reply");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let accept_task = tokio::spawn(serve(listener, script, Arc::clone(&hits)));
        TestServer {
            addr,
            hits,
            accept_task,
        }
    }

    /// Returns `http://<addr><path>`.
    pub(crate) fn uri(&self, path: &str) -> Uri {
        format!("http://{}{path}", self.addr)
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

async fn serve(listener: TcpListener, script: Vec<Reply>, hits: Arc<AtomicUsize>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let idx = hits.fetch_add(1, Ordering::SeqCst);
        let reply = script[idx.min(script.len() - 1)].clone();
        connections.spawn(respond(stream, reply));
    }
}

async fn respond(mut stream: TcpStream, reply: Reply) {
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
