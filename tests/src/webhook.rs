//! A real HTTP webhook receiver on loopback: it answers every POST with
//! 200 and keeps each body with its path, in arrival order, so a test can
//! check which events a coordinator sent where.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// One POST: its path and its body as JSON (`Value::Null` if it was not JSON).
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: Value,
}

/// The receiver; it stops with the test process.
#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl WebhookReceiver {
    /// Binds port 0 and serves on a thread per connection.
    pub fn start() -> anyhow::Result<WebhookReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let sink = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || serve(stream, &sink));
            }
        });
        Ok(WebhookReceiver { url, received })
    }

    /// Every POST so far to `path`, in arrival order.
    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.body.clone())
            .collect()
    }

    /// The `event` names of the bodies posted to `path`, in order.
    pub fn events(&self, path: &str) -> Vec<String> {
        self.bodies(path)
            .iter()
            .map(|b| b["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Serves the requests of one (keep-alive) connection until it closes.
fn serve(stream: TcpStream, sink: &Mutex<Vec<Received>>) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        sink.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Received { path, body });
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}
