use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rollguard_proto::tls::{first_certificate_der, Identity};

use super::make_pair;

fn test_ca() -> Issuer<'static, KeyPair> {
    let key = KeyPair::generate().expect("a key");
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let cert = params.self_signed(&key).expect("a CA");
    Issuer::from_ca_cert_pem(&cert.pem(), key).expect("the CA reads back")
}

#[test]
fn a_made_certificate_names_its_holder() {
    let ca = test_ca();
    for identity in [
        Identity::Agent("loadgen-000042".to_owned()),
        Identity::Operator("loadgen".to_owned()),
    ] {
        let pair = make_pair(&ca, &identity).expect("made");
        let der = first_certificate_der(&pair.cert_pem).expect("PEM");
        assert_eq!(Identity::of_certificate(&der), Ok(identity.clone()));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("X.509");
        assert!(!cert.is_ca());
        let usage = cert
            .extended_key_usage()
            .expect("readable")
            .expect("present")
            .value;
        assert!(usage.client_auth && !usage.server_auth);
        assert!(KeyPair::from_pem(std::str::from_utf8(&pair.key_pem).expect("text")).is_ok());
    }
}

#[test]
fn every_certificate_has_its_own_serial() {
    let ca = test_ca();
    let serial = |host_id: &str| {
        let pair = make_pair(&ca, &Identity::Agent(host_id.to_owned())).expect("made");
        let der = first_certificate_der(&pair.cert_pem).expect("PEM");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("X.509");
        cert.raw_serial().to_vec()
    };
    assert_ne!(serial("h1"), serial("h1"));
}
