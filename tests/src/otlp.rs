//! Trace receivers for the end-to-end tests: a real OTLP/gRPC `TraceService`
//! (the collector's own protocol, from `opentelemetry-proto`) served with
//! tonic, and a "dead" endpoint that accepts connections and never answers,
//! logging the HTTP/2 frames it receives.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// One received span, flattened.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent_span_id: Vec<u8>,
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// Returns an attribute's value as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

fn text(value: Option<&AnyValue>) -> String {
    match value {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| {
                                (
                                    kv.key.clone(),
                                    text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                                )
                            })
                            .collect(),
                    });
                }
            }
        }
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A running OTLP trace receiver.
#[derive(Debug)]
pub struct TraceReceiver {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    _runtime: tokio::runtime::Runtime,
}

impl TraceReceiver {
    /// Serves the collector's TraceService on 127.0.0.1 port 0 in its own runtime.
    pub fn start() -> anyhow::Result<TraceReceiver> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let collector = Collector::default();
        let spans = Arc::clone(&collector.spans);
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Ok(TraceReceiver {
            url,
            spans,
            _runtime: runtime,
        })
    }

    /// Returns every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What the dead endpoint saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadEvent {
    /// A client connected.
    Accepted,
    /// An HTTP/2 HEADERS frame: a request (an export) began.
    RequestStarted,
    /// RST_STREAM or GOAWAY from the client, or the connection closed: an export gave up.
    RequestAbandoned,
    /// A marker the test adds to the same timeline.
    Marker(String),
}

/// An endpoint that accepts and never answers.
#[derive(Debug)]
pub struct DeadEndpoint {
    pub url: String,
    events: Arc<Mutex<Vec<(Instant, DeadEvent)>>>,
    _runtime: tokio::runtime::Runtime,
}

impl DeadEndpoint {
    /// Listens on 127.0.0.1 port 0 and logs the HTTP/2 frames clients send.
    pub fn start() -> anyhow::Result<DeadEndpoint> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let events: Arc<Mutex<Vec<(Instant, DeadEvent)>>> = Arc::default();
        let log = Arc::clone(&events);
        runtime.spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                push(&log, DeadEvent::Accepted);
                tokio::spawn(read_frames(socket, Arc::clone(&log)));
            }
        });
        Ok(DeadEndpoint {
            url,
            events,
            _runtime: runtime,
        })
    }

    /// Adds a marker to the timeline.
    pub fn mark(&self, what: &str) {
        push(&self.events, DeadEvent::Marker(what.to_owned()));
    }

    /// Returns the events so far, in order.
    pub fn events(&self) -> Vec<DeadEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }
}

fn push(log: &Arc<Mutex<Vec<(Instant, DeadEvent)>>>, event: DeadEvent) {
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((Instant::now(), event));
}

/// Reads the client preface, then HTTP/2 frames (9-byte headers), never writing a byte.
async fn read_frames(
    mut socket: tokio::net::TcpStream,
    log: Arc<Mutex<Vec<(Instant, DeadEvent)>>>,
) {
    let mut preface = [0u8; 24];
    if socket.read_exact(&mut preface).await.is_err() {
        push(&log, DeadEvent::RequestAbandoned);
        return;
    }
    loop {
        let mut header = [0u8; 9];
        if socket.read_exact(&mut header).await.is_err() {
            push(&log, DeadEvent::RequestAbandoned);
            return;
        }
        let length =
            (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
        let mut payload = vec![0u8; length];
        if socket.read_exact(&mut payload).await.is_err() {
            push(&log, DeadEvent::RequestAbandoned);
            return;
        }
        match header[3] {
            0x1 => push(&log, DeadEvent::RequestStarted),
            0x3 | 0x7 => push(&log, DeadEvent::RequestAbandoned),
            _ => {}
        }
    }
}
