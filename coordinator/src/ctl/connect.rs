//! rollguardctl's connection to the coordinator: the channel, the deadline
//! of each call, how a failed call reads, and who the caller is.

use std::time::Duration;

use anyhow::{anyhow, Context};
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// Time allowed to establish the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default deadline of one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to the coordinator with the CLI's connect timeout; with `tls`,
/// over mutual TLS.
pub async fn connect(
    url: &str,
    tls: Option<ClientTlsConfig>,
) -> anyhow::Result<ControlServiceClient<Channel>> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("bad coordinator URL `{url}`"))?
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("TLS settings for {url}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to the coordinator at {url}"))?;
    Ok(ControlServiceClient::new(channel))
}

pub(crate) fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// One line: the status code in words, then the coordinator's reason
/// (`permission denied: operator carol has role viewer; rollback needs operator`).
pub(crate) fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow!("{}: {}", code_words(status.code()), status.message())
}

/// `PermissionDenied` -> `permission denied`.
fn code_words(code: tonic::Code) -> String {
    let mut words = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            words.push(' ');
        }
        words.push(c.to_ascii_lowercase());
    }
    words
}

/// Names the operator in the audit history: `user@host (rollguardctl)`.
pub(crate) fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    format!("{user}@{host} (rollguardctl)")
}
