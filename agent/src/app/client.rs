//! The HTTP/1 client the scraper and prober share: `http://` or `https://`
//! (the connector and its trust roots are `rollguard_proto::https`), one
//! GET, a deadline over the whole exchange (TLS handshake and body included)
//! and a cap on the body.
//!
//! Deliberately NOT done here: client certificates, redirects, retries,
//! compression (no `Accept-Encoding` is sent, so the body arrives as is).

use std::time::Duration;

use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rollguard_proto::https::{self, HttpsConnector, TrustRoots};

/// One HTTP/1 client for http and https URLs; cheap to clone.
pub(crate) type HttpClient = Client<HttpsConnector, Empty<Bytes>>;

const AGENT: &str = concat!("rollguard-agent/", env!("CARGO_PKG_VERSION"));

/// Returns a client that opens a fresh connection for every request.
///
/// No pooling: at one request per interval a connect on the same host or
/// network costs little, a probe then also covers accepting connections, and
/// no request races an app that closes idle keep-alive connections. An
/// https server must chain to `roots_opt` (`None`: plain http only).
pub(crate) fn new(roots_opt: Option<&TrustRoots>) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(https::connector(roots_opt))
}

/// A response whose whole body was read.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

/// Why a GET got no complete response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The deadline passed before the body was read.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// No response: connection refused, reset, a certificate not trusted, not HTTP...
    #[error("request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    /// The body broke off.
    #[error("cannot read the body")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The body is longer than allowed.
    #[error("body too large (over {limit} bytes)")]
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
}

/// GETs `uri` and reads the body, all within `timeout`.
pub(crate) async fn get(
    client: &HttpClient,
    uri: &Uri,
    accept: Option<&'static str>,
    timeout: Duration,
    max_body_bytes: usize,
) -> Result<Response, FetchError> {
    let mut request = Request::new(Empty::new());
    *request.uri_mut() = uri.clone();
    let headers = request.headers_mut();
    headers.insert(USER_AGENT, HeaderValue::from_static(AGENT));
    if let Some(accept) = accept {
        headers.insert(ACCEPT, HeaderValue::from_static(accept));
    }
    let exchange = async {
        let response = client.request(request).await.map_err(FetchError::Request)?;
        let status = response.status();
        let body = Limited::new(response.into_body(), max_body_bytes)
            .collect()
            .await
            .map_err(|err| {
                if err.is::<LengthLimitError>() {
                    FetchError::TooLarge {
                        limit: max_body_bytes,
                    }
                } else {
                    FetchError::Body(err)
                }
            })?
            .to_bytes();
        Ok(Response { status, body })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}
