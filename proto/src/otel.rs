//! Tracing setup shared by the three binaries: `tracing` logs to stderr,
//! plus OpenTelemetry spans exported over OTLP/gRPC when an endpoint is set;
//! and W3C trace-context propagation through commands and gRPC metadata.
//!
//! It lives here, beside the wire contract, because OTLP export and trace
//! context are wire concerns and `rollguard-common` stays free of tonic.
//!
//! Export is batched on the SDK's own background thread: a slow or dead
//! collector never delays the caller. When no endpoint is set, no exporter
//! exists and spans cost only what `tracing` costs.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How long shutdown waits for the last spans to be exported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Keeps the tracer provider alive; [`TelemetryGuard::shutdown`] flushes it.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

/// Returns the OTLP endpoint: the configured one, else `OTEL_EXPORTER_OTLP_ENDPOINT`
/// (or its traces-specific form); empty means none.
pub fn resolve_endpoint(configured: Option<&str>) -> Option<String> {
    let from_env = || {
        [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .find_map(|key| std::env::var(key).ok())
    };
    configured
        .map(str::to_owned)
        .or_else(from_env)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Installs the global subscriber: fmt to stderr filtered by `RUST_LOG`
/// (else `default_level`), and, with an endpoint, an OpenTelemetry layer
/// exporting as `service_name`. Must be called inside a tokio runtime when
/// an endpoint is given (the exporter's channel lives there).
pub fn init(
    service_name: &'static str,
    default_level: &str,
    endpoint: Option<&str>,
) -> TelemetryGuard {
    let filter = log_filter(default_level);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = endpoint.and_then(|endpoint| match build_provider(service_name, endpoint) {
        Ok(provider) => Some(provider),
        Err(err) => {
            eprintln!("{service_name}: OTLP export disabled: {err}");
            None
        }
    });
    // Spans go to OpenTelemetry regardless of RUST_LOG; logs follow the filter.
    let otel_layer = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service_name))
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.is_span() && meta.target().starts_with("rollguard")
            }))
    });
    use tracing_subscriber::Layer as _;
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel_layer)
        .try_init();
    if let Some(endpoint) = endpoint {
        tracing::info!(%endpoint, service_name, "exporting traces over OTLP/gRPC");
    }
    TelemetryGuard { provider }
}

/// `RUST_LOG` as `target=level` directives (e.g. `warn,rollguard_agent=debug`),
/// else `default_level`. A plain target filter rather than `EnvFilter`: it
/// keeps a regex engine out of every binary, which is a fifth of the agent's
/// code. A `RUST_LOG` that does not parse is reported and the default used.
pub fn log_filter(default_level: &str) -> Targets {
    let default = || default_level.parse().unwrap_or_default();
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => spec.parse().unwrap_or_else(|err| {
            eprintln!(
                "RUST_LOG `{spec}` is not a list of target=level directives ({err}); using `{default_level}`"
            );
            default()
        }),
        _ => default(),
    }
}

fn build_provider(service_name: &'static str, endpoint: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|err| err.to_string())?;
    let host_name = rustix_free_hostname();
    let resource = Resource::builder()
        .with_service_name(service_name)
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("host.name", host_name),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

fn rustix_free_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl TelemetryGuard {
    /// Returns true when spans are exported.
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the exporter. The SDK blocks while it exports, so
    /// this runs on a plain thread while the caller's runtime keeps driving
    /// the exporter's connection.
    pub async fn shutdown(self) {
        self.shutdown_within(FLUSH_TIMEOUT).await;
    }

    /// [`TelemetryGuard::shutdown`] with a bound of the caller's: a CLI call
    /// must not wait seconds on a dead collector.
    pub async fn shutdown_within(self, limit: Duration) {
        let Some(provider) = self.provider else {
            return;
        };
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("otel-shutdown".to_owned())
            .spawn(move || {
                let result = provider.shutdown_with_timeout(limit);
                let _ = done_tx.send(result);
            });
        if spawned.is_err() {
            return;
        }
        match tokio::time::timeout(limit + Duration::from_millis(500), done_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => eprintln!("trace export shutdown: {err}"),
            _ => eprintln!("trace export shutdown timed out; some spans may be lost"),
        }
    }
}

/// Returns the W3C trace context (`traceparent`, `tracestate`) of `span`.
pub fn inject(span: &tracing::Span) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    let context = span.context();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier
}

/// Makes `span` a child of the remote context in `carrier`, if it holds one.
pub fn set_parent(span: &tracing::Span, carrier: &HashMap<String, String>) {
    if carrier.contains_key("traceparent") {
        let context = TraceContextPropagator::new().extract(carrier);
        let _ = span.set_parent(context);
    }
}

/// Reads the W3C trace context out of gRPC request metadata.
pub fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> HashMap<String, String> {
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|key| {
            metadata
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(|v| (key.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Writes the W3C trace context of `span` into gRPC request metadata.
pub fn to_metadata(span: &tracing::Span, metadata: &mut tonic::metadata::MetadataMap) {
    for (key, value) in inject(span) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            metadata.insert(key, value);
        }
    }
}

/// Sets an OpenTelemetry attribute on `span` (names that `tracing` fields cannot express).
pub fn set_attribute(
    span: &tracing::Span,
    key: impl Into<String>,
    value: impl Into<opentelemetry::Value>,
) {
    span.set_attribute(opentelemetry::Key::new(key.into()), value);
}
