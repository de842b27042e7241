//! Who is at the other end of a connection, and the TLS settings each side
//! uses to find out.
//!
//! Every certificate `rollguardctl pki` issues to a caller names it with one
//! SPIFFE URI SAN: `spiffe://rollguard/agent/HOST_ID` for an agent and
//! `spiffe://rollguard/operator/NAME` for an operator. The coordinator reads
//! the caller's identity from that SAN, never from a message's payload.

use std::fmt;
use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity as TlsIdentity};
use x509_parser::extensions::GeneralName;

/// The SPIFFE trust domain of every rollguard certificate.
pub const TRUST_DOMAIN: &str = "rollguard";

/// A caller named by its certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// A host's agent, named by its host id.
    Agent(String),
    /// A person or tool that calls the control API.
    Operator(String),
}

impl Identity {
    /// The kind and name as written in `[auth] revoked`: `agent/NAME` or
    /// `operator/NAME`.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// The name without its kind.
    pub fn name(&self) -> &str {
        match self {
            Identity::Agent(name) | Identity::Operator(name) => name,
        }
    }

    /// The SPIFFE URI that names this identity in a certificate.
    pub fn uri(&self) -> String {
        format!("spiffe://{TRUST_DOMAIN}/{self}")
    }

    /// Reads `agent/NAME` or `operator/NAME`.
    pub fn parse_key(key: &str) -> Option<Identity> {
        let (kind, name) = key.split_once('/')?;
        if name.is_empty() || name.contains('/') {
            return None;
        }
        match kind {
            "agent" => Some(Identity::Agent(name.to_owned())),
            "operator" => Some(Identity::Operator(name.to_owned())),
            _ => None,
        }
    }

    /// Reads `spiffe://rollguard/agent/NAME` or `spiffe://rollguard/operator/NAME`.
    pub fn parse_uri(uri: &str) -> Option<Identity> {
        let rest = uri.strip_prefix("spiffe://")?;
        let path = rest.strip_prefix(TRUST_DOMAIN)?.strip_prefix('/')?;
        Identity::parse_key(path)
    }

    /// The identity a DER certificate names: its one rollguard SPIFFE URI
    /// SAN. A certificate with none, or with two, names nobody.
    pub fn of_certificate(der: &[u8]) -> Result<Identity, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|err| IdentityError(format!("unreadable certificate: {err}")))?;
        let sans = cert
            .subject_alternative_name()
            .map_err(|err| IdentityError(format!("unreadable subjectAltName: {err}")))?;
        let mut found = None;
        for name in sans.iter().flat_map(|ext| ext.value.general_names.iter()) {
            if let GeneralName::URI(uri) = name {
                if let Some(identity) = Identity::parse_uri(uri) {
                    if found.replace(identity).is_some() {
                        return Err(IdentityError(
                            "the certificate names more than one rollguard identity".to_owned(),
                        ));
                    }
                }
            }
        }
        found.ok_or_else(|| {
            IdentityError(format!(
                "the certificate has no spiffe://{TRUST_DOMAIN}/agent/.. or /operator/.. URI SAN"
            ))
        })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Agent(name) => write!(f, "agent/{name}"),
            Identity::Operator(name) => write!(f, "operator/{name}"),
        }
    }
}

/// Why a certificate names nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityError(pub String);

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdentityError {}

/// The first certificate of a PEM file, as DER.
pub fn first_certificate_der(pem: &[u8]) -> Result<Vec<u8>, IdentityError> {
    let mut rest = pem;
    loop {
        let (remaining, block) = x509_parser::pem::parse_x509_pem(rest)
            .map_err(|err| IdentityError(format!("not a PEM certificate: {err}")))?;
        if block.label == "CERTIFICATE" {
            return Ok(block.contents);
        }
        if remaining.is_empty() || remaining.len() == rest.len() {
            return Err(IdentityError("no CERTIFICATE block in the PEM".to_owned()));
        }
        rest = remaining;
    }
}

/// The files a client presents and trusts: the CA that signed the
/// coordinator's certificate, and its own certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// A client's TLS settings read from its files, with the identity its
/// certificate names.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: ClientTlsConfig,
    pub identity: Identity,
}

impl ClientFiles<'_> {
    /// Reads the three files. The server's certificate is verified against
    /// `ca` and its SAN against the URL's host (tonic does that from the
    /// endpoint's URI).
    pub fn load(&self) -> Result<ClientTls, IdentityError> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path).map_err(|err| {
                IdentityError(format!("reading the {what} {}: {err}", path.display()))
            })
        };
        let ca = read("CA certificate", self.ca)?;
        let cert = read("certificate", self.cert)?;
        let key = read("key", self.key)?;
        let der = first_certificate_der(&cert)
            .map_err(|err| IdentityError(format!("{}: {err}", self.cert.display())))?;
        let identity = Identity::of_certificate(&der)
            .map_err(|err| IdentityError(format!("{}: {err}", self.cert.display())))?;
        first_certificate_der(&ca)
            .map_err(|err| IdentityError(format!("{}: {err}", self.ca.display())))?;
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(TlsIdentity::from_pem(cert, key));
        Ok(ClientTls { config, identity })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_uris_read_back() {
        for identity in [
            Identity::Agent("beta-7".to_owned()),
            Identity::Operator("alice".to_owned()),
        ] {
            assert_eq!(Identity::parse_key(&identity.key()), Some(identity.clone()));
            assert_eq!(Identity::parse_uri(&identity.uri()), Some(identity));
        }
        assert_eq!(
            Identity::Agent("h1".to_owned()).uri(),
            "spiffe://rollguard/agent/h1"
        );
    }

    fn certificate_with(uris: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        for uri in uris {
            params.subject_alt_names.push(rcgen::SanType::URI(
                rcgen::string::Ia5String::try_from(*uri).unwrap(),
            ));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_names_its_one_spiffe_uri() {
        let der = certificate_with(&["spiffe://rollguard/agent/web-1"]);
        assert_eq!(
            Identity::of_certificate(&der),
            Ok(Identity::Agent("web-1".to_owned()))
        );
        let der = certificate_with(&["https://example.com", "spiffe://rollguard/operator/bob"]);
        assert_eq!(
            Identity::of_certificate(&der),
            Ok(Identity::Operator("bob".to_owned()))
        );
        let two = certificate_with(&["spiffe://rollguard/agent/a", "spiffe://rollguard/agent/b"]);
        assert!(Identity::of_certificate(&two).is_err());
        let none = certificate_with(&["spiffe://elsewhere/agent/a"]);
        assert!(Identity::of_certificate(&none).is_err());
        assert!(Identity::of_certificate(b"not der").is_err());
    }

    #[test]
    fn foreign_or_malformed_names_are_nobody() {
        for uri in [
            "spiffe://other/agent/h1",
            "spiffe://rollguard/admin/h1",
            "spiffe://rollguard/agent/",
            "spiffe://rollguard/agent/a/b",
            "https://rollguard/agent/h1",
            "spiffe://rollguardx/agent/h1",
        ] {
            assert_eq!(Identity::parse_uri(uri), None, "{uri}");
        }
    }
}
