//! The connector against real servers on 127.0.0.1:0: a TLS one whose
//! certificate an rcgen CA signed, and a plain one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::*;

/// A CA and a server certificate for 127.0.0.1 that it signed.
struct Pki {
    ca_pem: String,
    server: ServerConfig,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let server =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![server_cert.der().clone()], key)
            .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server,
    }
}

/// Serves `hello over <scheme>` to every request, over TLS with `tls_opt`.
async fn serve(tls_opt: Option<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor_opt = tls_opt.map(|config| TlsAcceptor::from(Arc::new(config)));
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor_opt = acceptor_opt.clone();
            tokio::spawn(async move {
                let builder = hyper::server::conn::http1::Builder::new();
                match acceptor_opt {
                    // A refused handshake is what some tests want: no panic.
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let service = service_fn(|r| answer(r, "https"));
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let service = service_fn(|r| answer(r, "http"));
                        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    });
    addr
}

async fn answer(
    request: Request<Incoming>,
    scheme: &str,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = request.into_body().collect().await?.to_bytes();
    let text = format!("hello over {scheme}, got {} bytes", body.len());
    Ok(Response::new(Full::new(Bytes::from(text))))
}

/// POSTs `body` to `url` through [`connector`]; returns the response body or
/// the whole error chain.
async fn post(roots_opt: Option<&TrustRoots>, url: &str) -> Result<String, String> {
    let client =
        Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector(roots_opt));
    let request = Request::post(url)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let exchange = async {
        let response = client.request(request).await.map_err(|err| chain(&err))?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|err| chain(&err))?;
        Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the exchange ends")
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Writes `contents` to a fresh temp file.
fn temp_file(contents: &[u8]) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "rollguard-https-{}-{}.pem",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test]
async fn https_is_verified_against_the_ca_file() {
    let pki = pki();
    let addr = serve(Some(pki.server)).await;
    let ca_file = temp_file(pki.ca_pem.as_bytes());
    let roots = TrustRoots::from_pem_file(&ca_file).unwrap();
    let _ = std::fs::remove_file(&ca_file);
    assert_eq!(roots.n_certificates(), 1);
    let reply = post(Some(&roots), &format!("https://{addr}/hook")).await;
    assert_eq!(reply.as_deref(), Ok("hello over https, got 2 bytes"));
}

#[tokio::test]
async fn https_from_an_unknown_ca_fails_on_the_certificate() {
    let addr = serve(Some(pki().server)).await;
    let url = format!("https://{addr}/hook");
    // The system roots (this machine's trust store) do not hold the test CA,
    // and neither does another CA's file (of the same name, as rcgen names
    // them all: rustls reports a bad signature there, an unknown issuer else).
    let system = TrustRoots::system().expect("the machine has a trust store");
    let other_ca = temp_file(pki().ca_pem.as_bytes());
    let other = TrustRoots::from_pem_file(&other_ca).unwrap();
    let _ = std::fs::remove_file(&other_ca);
    for roots_opt in [Some(&system), Some(&other), None] {
        let err = post(roots_opt, &url).await.unwrap_err();
        assert!(
            err.contains("invalid peer certificate: "),
            "{roots_opt:?}: {err}"
        );
    }
}

#[tokio::test]
async fn plain_http_goes_through_with_or_without_roots() {
    let addr = serve(None).await;
    let system = TrustRoots::system().expect("the machine has a trust store");
    for roots_opt in [None, Some(&system)] {
        let reply = post(roots_opt, &format!("http://{addr}/hook")).await;
        assert_eq!(reply.as_deref(), Ok("hello over http, got 2 bytes"));
    }
}

#[test]
fn a_ca_file_must_hold_a_usable_pem_certificate() {
    let key_only = KeyPair::generate().unwrap().serialize_pem();
    let broken = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
    let not_a_ca = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
    for (contents, expected) in [
        ("", "holds no PEM certificate"),
        ("just text\n", "holds no PEM certificate"),
        (key_only.as_str(), "holds no PEM certificate"),
        (broken, "is not a PEM certificate"),
        (not_a_ca, "certificate 1 is not a usable CA certificate"),
    ] {
        let path = temp_file(contents.as_bytes());
        let err = TrustRoots::from_pem_file(&path).unwrap_err();
        let _ = std::fs::remove_file(&path);
        let text = chain(&err);
        assert!(text.contains(expected), "{contents:?}: {text}");
        assert!(text.contains(&*path.to_string_lossy()), "{text}");
    }
    let missing = std::env::temp_dir().join("rollguard-https-no-such-file.pem");
    let err = TrustRoots::from_pem_file(&missing).unwrap_err();
    assert!(chain(&err).starts_with("cannot read "), "{err}");
}
