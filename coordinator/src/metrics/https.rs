//! HTTPS on the HTTP listener off loopback (issue 13): the coordinator's
//! `[tls]` certificate and key; a client certificate is requested but not
//! required at the handshake (so `/healthz` and `/readyz` stay open to a
//! load balancer), verified against `[tls] client_ca` when one is sent.
//! Every other path (`/metrics`, the dashboard and its event stream) needs
//! an operator certificate with at least a viewer binding in `[auth.roles]`
//! and not revoked, the same check as the gRPC API's reads.

use std::sync::Arc;

use rollguard_proto::tls::Identity;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::auth::Authority;
use crate::config::TlsFiles;
use crate::error::{Error, Result};

/// The HTTPS side of the listener: its acceptor and the roles it checks.
#[derive(Clone)]
pub(crate) struct Https {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) authority: Arc<Authority>,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https").finish_non_exhaustive()
    }
}

/// Who a connection may serve beyond `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// Loopback or `--insecure-http`: every path.
    Open,
    /// A verified operator with at least a viewer role.
    Viewer(String),
    /// Why every other path is refused (no certificate, no binding, revoked).
    Denied(String),
}

/// The acceptor for `files`, with the ring provider (as everywhere else).
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor> {
    let bad = |what: &str, err: &dyn std::fmt::Display| {
        Error::InvalidArgument(format!("[tls] {what} for the HTTP listener: {err}"))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|err| bad("cert", &err))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|err| bad("cert", &err))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|err| bad("key", &err))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in
        CertificateDer::pem_file_iter(&files.client_ca).map_err(|err| bad("client_ca", &err))?
    {
        roots
            .add(ca.map_err(|err| bad("client_ca", &err))?)
            .map_err(|err| bad("client_ca", &err))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .allow_unauthenticated()
            .build()
            .map_err(|err| bad("client_ca", &err))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| bad("protocols", &err))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|err| bad("cert and key", &err))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The access of a peer that presented `certificate` (verified by the
/// handshake against the client CA), under the current `[auth]`.
pub(crate) fn access(authority: &Authority, certificate: Option<&[u8]>) -> Access {
    let Some(der) = certificate else {
        return Access::Denied("a client certificate with a viewer binding is required".to_owned());
    };
    match Identity::of_certificate(der) {
        // Viewer is the least role: any binding reads.
        Ok(Identity::Operator(name)) => match authority.role_of(&name) {
            Ok(_role) => Access::Viewer(format!("operator/{name}")),
            Err(why) => Access::Denied(why),
        },
        Ok(identity) => Access::Denied(format!("{identity} is not an operator")),
        Err(err) => Access::Denied(format!("the certificate names nobody: {err}")),
    }
}
