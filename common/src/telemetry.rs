//! Logging setup shared by the binaries: `tracing` to stderr, filtered by `RUST_LOG`.
//!
//! OpenTelemetry export is a later issue; it will be one more layer here.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `default_level` applies when `RUST_LOG` is unset.
///
/// Logs go to stderr so that stdout stays free for a command's output.
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // A second init (tests that call run twice) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
