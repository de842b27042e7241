//! rollguardctl's connection to the coordinator: the channel, the deadline
//! of each call, how a failed call reads, and who the caller is.

use std::time::Duration;

use anyhow::{anyhow, Context};
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use tonic::transport::{Channel, Endpoint};

/// Time allowed to establish the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default deadline of one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to the coordinator with the CLI's connect timeout.
pub async fn connect(url: &str) -> anyhow::Result<ControlServiceClient<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("bad coordinator URL `{url}`"))?
        .connect_timeout(CONNECT_TIMEOUT);
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

pub(crate) fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow!("{:?}: {}", status.code(), status.message())
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
