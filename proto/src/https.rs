//! The HTTP/1 connector of the agent's app scrapes and probes and of the
//! coordinator's webhooks: `http://` URLs as they are, `https://` over
//! rustls with the ring provider (the one tonic uses), the server's
//! certificate verified against [`TrustRoots`]: the system's trust store or
//! the CA file a config names.
//!
//! It lives here because the agent and the coordinator both need it and
//! never depend on each other. Loading roots reads files: do it while
//! validating config, so a bad file is a config error naming its key;
//! building a [`connector`] then does no IO and cannot fail.
//!
//! Deliberately NOT done here: client certificates, HTTP/2, proxies, and the
//! requests themselves (each caller keeps its own deadline and body cap).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// A connector for `http://` and `https://` URLs; see [`connector`].
pub type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Why trust roots could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    /// The CA file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The CA file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The CA file is not well-formed PEM.
    #[error("{} is not a PEM certificate", path.display())]
    NotPem {
        /// The CA file.
        path: PathBuf,
        /// What the PEM reader found.
        #[source]
        source: pem::Error,
    },
    /// The CA file holds no `CERTIFICATE` block.
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate {
        /// The CA file.
        path: PathBuf,
    },
    /// A certificate in the CA file cannot serve as a trust anchor.
    #[error("{}: certificate {index} is not a usable CA certificate", path.display())]
    BadCertificate {
        /// The CA file.
        path: PathBuf,
        /// Which certificate in the file, from 1.
        index: usize,
        /// Why webpki refused it.
        #[source]
        source: rustls::Error,
    },
    /// The system's trust store yielded no usable certificate.
    #[error("no system root certificates found{detail}")]
    NoSystemRoots {
        /// The first loading error, as `: reason`, or empty.
        detail: String,
    },
}

/// The CA certificates an https server's chain must end in; cheap to clone.
#[derive(Clone)]
pub struct TrustRoots {
    store: Arc<RootCertStore>,
}

impl TrustRoots {
    /// Loads the system's trust store: on Debian `/etc/ssl/certs` (as
    /// `update-ca-certificates` leaves it); `SSL_CERT_FILE` and
    /// `SSL_CERT_DIR` override where it is read from.
    pub fn system() -> Result<TrustRoots, HttpsError> {
        let loaded = rustls_native_certs::load_native_certs();
        let mut store = RootCertStore::empty();
        // Unparsable certificates in a system bundle are skipped, as every
        // TLS library does: one odd file must not cost every other root.
        let (n_added, _n_ignored) = store.add_parsable_certificates(loaded.certs);
        if n_added == 0 {
            let detail = loaded
                .errors
                .first()
                .map(|err| format!(": {err}"))
                .unwrap_or_default();
            return Err(HttpsError::NoSystemRoots { detail });
        }
        Ok(TrustRoots {
            store: Arc::new(store),
        })
    }

    /// Reads the PEM file at `path`: every `CERTIFICATE` block in it is
    /// trusted, and nothing else is. Other blocks (a key) are skipped.
    pub fn from_pem_file(path: &Path) -> Result<TrustRoots, HttpsError> {
        let pem = std::fs::read(path).map_err(|source| HttpsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut store = RootCertStore::empty();
        for (idx, der) in CertificateDer::pem_slice_iter(&pem).enumerate() {
            let der = der.map_err(|source| HttpsError::NotPem {
                path: path.to_owned(),
                source,
            })?;
            store
                .add(der)
                .map_err(|source| HttpsError::BadCertificate {
                    path: path.to_owned(),
                    index: idx + 1,
                    source,
                })?;
        }
        if store.is_empty() {
            return Err(HttpsError::NoCertificate {
                path: path.to_owned(),
            });
        }
        Ok(TrustRoots {
            store: Arc::new(store),
        })
    }

    /// Returns how many CA certificates are trusted.
    pub fn n_certificates(&self) -> usize {
        self.store.len()
    }
}

impl fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustRoots")
            .field("n_certificates", &self.store.len())
            .finish()
    }
}

/// Returns a connector for `http://` and `https://` URLs whose https
/// servers must chain to `roots_opt`. With `None` only `http://` works: an
/// `https://` handshake fails, as no certificate is trusted.
///
/// TCP_NODELAY is set: requests are small and one per connection matters.
pub fn connector(roots_opt: Option<&TrustRoots>) -> HttpsConnector {
    let store = roots_opt.map_or_else(
        || Arc::new(RootCertStore::empty()),
        |roots| Arc::clone(&roots.store),
    );
    // The provider is named rather than taken from the process default, so
    // no other crate's choice (or none) can change it.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls's default protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    // The https layer above hands https:// URIs down to this one.
    http.enforce_http(false);
    HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

#[cfg(test)]
mod tests;
