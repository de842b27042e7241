//! `rollguardctl pki` through its real flags, into temporary directories;
//! read back with x509-parser and proven with real TLS handshakes.

use std::os::unix::fs::PermissionsExt;

use clap::{CommandFactory, Parser};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Identity as TlsIdentity, Server, ServerTlsConfig,
};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use x509_parser::extensions::GeneralName;

use super::*;
use crate::ctl::args::{Cli, Command};

/// A fresh directory of this test's own (not created).
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rollguard-pki-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Runs `rollguardctl -o json pki ARGS...`.
fn pki(args: &[&str]) -> anyhow::Result<u8> {
    let argv = ["rollguardctl", "-o", "json", "pki"].iter().chain(args);
    let cli = Cli::try_parse_from(argv)?;
    match cli.command {
        Command::Pki(pki_args) => run(pki_args, cli.output),
        other => panic!("parsed as {other:?}"),
    }
}

/// A directory holding a fresh CA.
fn ca_dir(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    assert_eq!(pki(&["init", "--dir", path_str(&dir)]).unwrap(), 0);
    dir
}

/// `pki issue KIND NAME --dir DIR EXTRA...`.
fn issue_in(dir: &Path, kind: &str, name: &str, extra: &[&str]) -> anyhow::Result<u8> {
    let mut args = vec!["issue", kind, name, "--dir", path_str(dir)];
    args.extend_from_slice(extra);
    pki(&args)
}

fn der_of(path: &Path) -> Vec<u8> {
    let pem = fs::read(path).unwrap();
    first_certificate_der(&pem).unwrap()
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[track_caller]
fn assert_near(actual: ASN1Time, expected: SystemTime) {
    let actual = system_time(actual);
    let diff = match actual.duration_since(expected) {
        Ok(diff) => diff,
        Err(err) => err.duration(),
    };
    assert!(
        diff < Duration::from_secs(60),
        "{} is not within a minute of {}",
        humantime::format_rfc3339_seconds(actual),
        humantime::format_rfc3339_seconds(expected),
    );
}

fn san_strings(cert: &X509Certificate<'_>) -> Vec<String> {
    sans(cert).unwrap()
}

#[test]
fn init_writes_a_ca_and_refuses_to_replace_it() {
    let dir = temp_dir("init");
    let dir_arg = path_str(&dir);
    let now = SystemTime::now();
    assert_eq!(pki(&["init", "--dir", dir_arg]).unwrap(), 0);

    let der = der_of(&dir.join(CA_FILE));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let constraints = cert.basic_constraints().unwrap().unwrap().value;
    assert!(constraints.ca);
    assert_eq!(constraints.path_len_constraint, Some(0));
    let usage = cert.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign() && usage.crl_sign());
    assert!(!usage.digital_signature());
    assert_eq!(cert.subject().to_string(), "CN=rollguard CA");
    assert_eq!(cert.issuer(), cert.subject());
    assert_near(cert.validity().not_after, now + CA_VALID_FOR);
    assert_eq!(mode_of(&dir.join(CA_KEY_FILE)), 0o600);
    assert_eq!(mode_of(&dir), 0o700);

    // A second init fails and leaves both files as they were.
    let before = (
        fs::read(dir.join(CA_FILE)).unwrap(),
        fs::read(dir.join(CA_KEY_FILE)).unwrap(),
    );
    let err = pki(&["init", "--dir", dir_arg]).unwrap_err();
    assert!(format!("{err:#}").contains("already"), "{err:#}");
    let after = (
        fs::read(dir.join(CA_FILE)).unwrap(),
        fs::read(dir.join(CA_KEY_FILE)).unwrap(),
    );
    assert_eq!(before, after);

    // Nor does it replace a CA whose certificate alone is left.
    fs::remove_file(dir.join(CA_KEY_FILE)).unwrap();
    assert!(pki(&["init", "--dir", dir_arg]).is_err());
    assert!(!dir.join(CA_KEY_FILE).exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn init_takes_valid_for() {
    let dir = temp_dir("init-valid-for");
    let now = SystemTime::now();
    pki(&["init", "--dir", path_str(&dir), "--valid-for", "2y"]).unwrap();
    let der = der_of(&dir.join(CA_FILE));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    // humantime's year is 365.25 days.
    assert_near(
        cert.validity().not_after,
        now + Duration::from_secs(2 * 31_557_600),
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn coordinator_certificate_is_a_server_certificate_for_its_sans() {
    let dir = ca_dir("coordinator");
    let now = SystemTime::now();
    let extra = [
        "--san",
        "coord.example.com",
        "--san",
        "127.0.0.1",
        "--san",
        "::1",
    ];
    issue_in(&dir, "coordinator", "coord-1", &extra).unwrap();

    let der = der_of(&dir.join("coord-1.pem"));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert_eq!(
        san_strings(&cert),
        ["DNS:coord.example.com", "IP:127.0.0.1", "IP:::1"]
    );
    assert_eq!(cert.subject().to_string(), "CN=coord-1");
    assert_eq!(cert.issuer().to_string(), "CN=rollguard CA");
    assert!(!cert.is_ca());
    assert!(cert.key_usage().unwrap().unwrap().value.digital_signature());
    assert_near(
        cert.validity().not_after,
        now + Duration::from_secs(365 * 86_400),
    );
    assert_near(cert.validity().not_before, now - BACKDATE);
    assert_eq!(mode_of(&dir.join("coord-1-key.pem")), 0o600);
    assert_eq!(mode_of(&dir.join("coord-1.pem")) & 0o133, 0);
    fs::remove_dir_all(&dir).unwrap();
}

/// Issue 11: an agent whose clock is an hour behind accepts a coordinator
/// certificate issued just now.
#[test]
fn a_fresh_certificate_is_valid_to_a_peer_an_hour_behind() {
    let dir = ca_dir("backdated");
    let now = SystemTime::now();
    issue_in(&dir, "coordinator", "coord-1", &["--san", "127.0.0.1"]).unwrap();
    let pem = fs::read(dir.join("coord-1.pem")).unwrap();
    let an_hour_behind = now - Duration::from_secs(3600 - 60);
    assert_eq!(describe(&pem, an_hour_behind).unwrap().status, "valid");
    let der = der_of(&dir.join("coord-1.pem"));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_near(cert.validity().not_before, now - Duration::from_secs(3600));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn agent_and_operator_certificates_name_one_spiffe_uri() {
    let dir = ca_dir("clients");
    let now = SystemTime::now();
    issue_in(&dir, "agent", "web-1", &[]).unwrap();
    issue_in(&dir, "operator", "alice", &[]).unwrap();

    for (name, identity) in [
        ("web-1", Identity::Agent("web-1".to_owned())),
        ("alice", Identity::Operator("alice".to_owned())),
    ] {
        let der = der_of(&dir.join(format!("{name}.pem")));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth, "{name}");
        let general_names = &cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        assert_eq!(
            general_names.as_slice(),
            [GeneralName::URI(&identity.uri())],
            "{name}"
        );
        assert_eq!(Identity::of_certificate(&der).unwrap(), identity);
        assert_eq!(cert.subject().to_string(), format!("CN={name}"));
        assert!(!cert.is_ca());
        assert_near(
            cert.validity().not_after,
            now + Duration::from_secs(90 * 86_400),
        );
        assert_eq!(mode_of(&dir.join(format!("{name}-key.pem"))), 0o600);
    }
    // Each certificate has a serial of its own.
    let serial = |name: &str| {
        let der = der_of(&dir.join(format!("{name}.pem")));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        cert.raw_serial_as_string()
    };
    assert_ne!(serial("web-1"), serial("alice"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn issuing_refuses_to_replace_a_leaf_without_force() {
    let dir = ca_dir("force");
    issue_in(&dir, "agent", "h1", &[]).unwrap();
    let cert_before = fs::read(dir.join("h1.pem")).unwrap();
    let key_before = fs::read(dir.join("h1-key.pem")).unwrap();

    let err = issue_in(&dir, "agent", "h1", &[]).unwrap_err();
    assert!(format!("{err:#}").contains("--force"), "{err:#}");
    // An operator of the same name would write the same files.
    assert!(issue_in(&dir, "operator", "h1", &[]).is_err());
    assert_eq!(fs::read(dir.join("h1.pem")).unwrap(), cert_before);
    assert_eq!(fs::read(dir.join("h1-key.pem")).unwrap(), key_before);

    // Either file alone is enough to refuse.
    fs::remove_file(dir.join("h1.pem")).unwrap();
    assert!(issue_in(&dir, "agent", "h1", &[]).is_err());
    assert!(!dir.join("h1.pem").exists());

    // --force replaces both, and the key gets mode 0600 again.
    fs::set_permissions(dir.join("h1-key.pem"), fs::Permissions::from_mode(0o644)).unwrap();
    issue_in(&dir, "agent", "h1", &["--force"]).unwrap();
    assert_ne!(fs::read(dir.join("h1-key.pem")).unwrap(), key_before);
    assert_eq!(mode_of(&dir.join("h1-key.pem")), 0o600);
    fs::remove_dir_all(&dir).unwrap();
}

#[track_caller]
fn check_name_ok(name: &str, ok: bool) {
    assert_eq!(check_name("host id", name).is_ok(), ok, "{name:?}");
}

#[test]
fn names_are_letters_digits_dots_dashes_and_underscores() {
    check_name_ok("web-1", true);
    check_name_ok("h1.example.com", true);
    check_name_ok("build_agent.7", true);
    check_name_ok(&"a".repeat(128), true);
    check_name_ok("", false);
    check_name_ok(&"a".repeat(129), false);
    check_name_ok("a/b", false);
    check_name_ok("../etc", false);
    check_name_ok("a b", false);
    check_name_ok("tab\t", false);
    check_name_ok("héllo", false);
    check_name_ok("a:b", false);
    check_name_ok("a%2Fb", false);
    check_name_ok(".", false);
    check_name_ok("..", false);
    // Their files would be the CA's, or another name's key.
    check_name_ok("ca", false);
    check_name_ok("web-key", false);
}

#[test]
fn bad_names_are_refused_and_nothing_is_written() {
    let dir = ca_dir("bad-names");
    for (kind, name) in [
        ("agent", "../escape"),
        ("agent", "a b"),
        ("operator", "ca"),
        ("operator", "x/y"),
        ("agent", ""),
    ] {
        let extra: &[&str] = &[];
        assert!(
            issue_in(&dir, kind, name, extra).is_err(),
            "{kind} {name:?}"
        );
    }
    assert!(issue_in(&dir, "coordinator", "bad/name", &["--san", "localhost"]).is_err());
    let mut files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, [CA_KEY_FILE, CA_FILE]);
    assert!(!dir.parent().unwrap().join("escape.pem").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_coordinator_needs_good_sans() {
    let dir = ca_dir("sans");
    // clap refuses a coordinator without --san.
    let err = issue_in(&dir, "coordinator", "c1", &[]).unwrap_err();
    assert!(format!("{err}").contains("--san"), "{err}");
    for bad in ["bad host", "", "host/path", "ünïcode.example"] {
        assert!(
            issue_in(&dir, "coordinator", "c1", &["--san", bad]).is_err(),
            "{bad:?}"
        );
    }
    assert!(!dir.join("c1.pem").exists() && !dir.join("c1-key.pem").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn issuing_needs_a_ca_whose_key_matches() {
    let dir = temp_dir("no-ca");
    fs::create_dir_all(&dir).unwrap();
    let err = issue_in(&dir, "agent", "h1", &[]).unwrap_err();
    assert!(format!("{err:#}").contains("pki init"), "{err:#}");

    // A CA key that is not the CA certificate's key is refused up front.
    let other = ca_dir("no-ca-other");
    pki(&["init", "--dir", path_str(&dir)]).unwrap();
    fs::remove_file(dir.join(CA_KEY_FILE)).unwrap();
    fs::copy(other.join(CA_KEY_FILE), dir.join(CA_KEY_FILE)).unwrap();
    let err = issue_in(&dir, "agent", "h1", &[]).unwrap_err();
    assert!(format!("{err:#}").contains("is not the key of"), "{err:#}");
    assert!(!dir.join("h1.pem").exists());
    fs::remove_dir_all(&dir).unwrap();
    fs::remove_dir_all(&other).unwrap();
}

#[test]
fn valid_for_and_expired_set_the_validity() {
    let dir = ca_dir("validity");
    let now = SystemTime::now();
    issue_in(&dir, "agent", "short", &["--valid-for", "10m"]).unwrap();
    issue_in(&dir, "operator", "old", &["--expired"]).unwrap();
    let extra = ["--san", "localhost", "--valid-for", "30d"];
    issue_in(&dir, "coordinator", "c30", &extra).unwrap();

    let validity_of = |name: &str| {
        let der = der_of(&dir.join(format!("{name}.pem")));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        (cert.validity().not_before, cert.validity().not_after)
    };
    let (_, not_after) = validity_of("short");
    assert_near(not_after, now + Duration::from_secs(600));
    let (_, not_after) = validity_of("c30");
    assert_near(not_after, now + 30 * DAY);
    let (not_before, not_after) = validity_of("old");
    assert_near(not_before, now - 2 * DAY);
    assert_near(not_after, now - DAY);

    // --expired says when by itself.
    assert!(issue_in(&dir, "agent", "both", &["--expired", "--valid-for", "1d"]).is_err());
    assert!(issue_in(&dir, "agent", "zero", &["--valid-for", "0s"]).is_err());
    assert!(issue_in(&dir, "agent", "far", &["--valid-for", "9000y"]).is_err());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn expired_is_hidden_from_help() {
    let mut cli = Cli::command();
    let issue = cli.find_subcommand_mut("pki").unwrap();
    let issue = issue.find_subcommand_mut("issue").unwrap();
    let agent = issue.find_subcommand_mut("agent").unwrap();
    let help = agent.render_long_help().to_string();
    assert!(help.contains("--valid-for"), "{help}");
    assert!(help.contains("--force"), "{help}");
    assert!(!help.contains("--expired"), "{help}");
}

#[test]
fn show_describes_each_kind() {
    let dir = ca_dir("show");
    issue_in(
        &dir,
        "coordinator",
        "coord",
        &["--san", "127.0.0.1", "--san", "localhost"],
    )
    .unwrap();
    issue_in(&dir, "agent", "web-1", &[]).unwrap();
    issue_in(&dir, "operator", "alice", &["--expired"]).unwrap();
    let now = SystemTime::now();
    let show = |file: &str| describe(&fs::read(dir.join(file)).unwrap(), now).unwrap();

    let ca = show(CA_FILE);
    assert_eq!(ca.identity, "CA");
    assert_eq!(ca.key_usage, ["keyCertSign", "cRLSign"]);
    assert!(ca.sans.is_empty() && ca.extended_key_usage.is_empty());
    assert_eq!(ca.status, "valid");

    let coordinator = show("coord.pem");
    assert_eq!(coordinator.identity, "coordinator");
    assert_eq!(coordinator.sans, ["IP:127.0.0.1", "DNS:localhost"]);
    assert_eq!(coordinator.extended_key_usage, ["serverAuth"]);
    assert_eq!(coordinator.key_usage, ["digitalSignature"]);
    assert_eq!(coordinator.subject, "CN=coord");
    assert_eq!(coordinator.issuer, "CN=rollguard CA");

    let agent = show("web-1.pem");
    assert_eq!(agent.identity, "agent/web-1");
    assert_eq!(agent.sans, ["URI:spiffe://rollguard/agent/web-1"]);
    assert_eq!(agent.extended_key_usage, ["clientAuth"]);
    assert_eq!(agent.status, "valid");
    // RFC 3339 with second precision, in UTC.
    assert!(
        humantime::parse_rfc3339(&agent.not_after).is_ok(),
        "{}",
        agent.not_after
    );
    assert!(agent.not_before.ends_with('Z'), "{}", agent.not_before);
    assert_eq!(agent.serial.split(':').count(), 16, "{}", agent.serial);

    let operator = show("alice.pem");
    assert_eq!(operator.identity, "operator/alice");
    assert_eq!(operator.status, "expired");

    // -o json is one document with every field.
    let json = serde_json::to_value(&agent).unwrap();
    for field in [
        "identity",
        "subject",
        "issuer",
        "sans",
        "serial",
        "not_before",
        "not_after",
        "status",
        "key_usage",
        "extended_key_usage",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }
    // And through the command itself, table and JSON both succeed.
    let file = dir.join("web-1.pem");
    assert_eq!(pki(&["show", path_str(&file)]).unwrap(), 0);
    assert!(pki(&["show", path_str(&dir.join("missing.pem"))]).is_err());
    assert!(pki(&["show", path_str(&dir.join("web-1-key.pem"))]).is_err());
    fs::remove_dir_all(&dir).unwrap();
}

// === handshakes ===

/// Serves gRPC health over mutual TLS with `server`'s certificate (trusting
/// `dir`'s CA for clients) on 127.0.0.1, connects to it by IP with
/// `client`'s certificate, and calls Check.
async fn handshake(dir: &Path, server: &str, client: &str) -> Result<(), String> {
    let read = |file: &str| fs::read(dir.join(file)).unwrap();
    let identity = |name: &str| {
        TlsIdentity::from_pem(
            read(&format!("{name}.pem")),
            read(&format!("{name}-key.pem")),
        )
    };
    let server_tls = ServerTlsConfig::new()
        .identity(identity(server))
        .client_ca_root(Certificate::from_pem(read(CA_FILE)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let server_task = tokio::spawn(
        Server::builder()
            .tls_config(server_tls)
            .unwrap()
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );

    let client_tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(CA_FILE)))
        .identity(identity(client));
    let call = async {
        let channel = Channel::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(client_tls)
            .map_err(|err| format!("client TLS config: {err}"))?
            .connect()
            .await
            .map_err(|err| format!("connect: {err:?}"))?;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map_err(|status| format!("check: {status}"))?;
        Ok(())
    };
    // A refused handshake ends in an error, not a hang; the bound is a
    // backstop against a broken test.
    let result = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()));
    server_task.abort();
    result
}

#[tokio::test]
async fn issued_certificates_complete_a_mutual_tls_handshake() {
    let dir = ca_dir("handshake");
    issue_in(&dir, "coordinator", "coord", &["--san", "127.0.0.1"]).unwrap();
    issue_in(&dir, "agent", "web-1", &[]).unwrap();
    issue_in(&dir, "operator", "alice", &[]).unwrap();
    handshake(&dir, "coord", "web-1").await.unwrap();
    handshake(&dir, "coord", "alice").await.unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn expired_certificates_fail_the_handshake() {
    let dir = ca_dir("handshake-expired");
    issue_in(&dir, "coordinator", "coord", &["--san", "127.0.0.1"]).unwrap();
    let extra = ["--san", "127.0.0.1", "--expired"];
    issue_in(&dir, "coordinator", "old-coord", &extra).unwrap();
    issue_in(&dir, "agent", "web-1", &[]).unwrap();
    issue_in(&dir, "agent", "old-agent", &["--expired"]).unwrap();

    // The server refuses the client (TLS 1.3 tells the client in an alert,
    // which it reads on its first call).
    let err = handshake(&dir, "coord", "old-agent").await.unwrap_err();
    assert!(err.contains("CertificateExpired"), "{err}");
    // The client refuses the server.
    let err = handshake(&dir, "old-coord", "web-1").await.unwrap_err();
    assert!(err.contains("Expired"), "{err}");
    fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn certificates_of_the_wrong_kind_or_ca_fail_the_handshake() {
    let dir = ca_dir("handshake-wrong");
    issue_in(&dir, "coordinator", "coord", &["--san", "127.0.0.1"]).unwrap();
    issue_in(&dir, "coordinator", "elsewhere", &["--san", "10.9.9.9"]).unwrap();
    issue_in(&dir, "agent", "web-1", &[]).unwrap();
    // A server certificate is no client certificate (no clientAuth).
    let err = handshake(&dir, "coord", "coord").await.unwrap_err();
    assert!(err.contains("UnsupportedCertificate"), "{err}");
    // A client certificate is no server certificate (no serverAuth).
    let err = handshake(&dir, "web-1", "web-1").await.unwrap_err();
    assert!(err.contains("required: ServerAuth"), "{err}");
    // The server's SANs must name the address dialled.
    let err = handshake(&dir, "elsewhere", "web-1").await.unwrap_err();
    assert!(err.contains("NotValidForName"), "{err}");

    // An agent of another CA is refused by the server.
    let other = ca_dir("handshake-other-ca");
    issue_in(&other, "agent", "web-1", &[]).unwrap();
    fs::copy(other.join("web-1.pem"), dir.join("stranger.pem")).unwrap();
    fs::copy(other.join("web-1-key.pem"), dir.join("stranger-key.pem")).unwrap();
    // Both CAs are "CN=rollguard CA", so the server finds a CA by name
    // and the signature check fails.
    let err = handshake(&dir, "coord", "stranger").await.unwrap_err();
    assert!(err.contains("fatal alert"), "{err}");
    fs::remove_dir_all(&dir).unwrap();
    fs::remove_dir_all(&other).unwrap();
}

// === the operator's PKCS#12 bundle (issue 13) ===

/// A password file NAME beside the PKI directory, mode 0600.
fn password_file(dir: &Path, name: &str, password: &str) -> PathBuf {
    let path = PathBuf::from(format!("{}-{name}.password", path_str(dir)));
    fs::write(&path, format!("{password}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `openssl pkcs12 -in BUNDLE -passin file:PASSWORD -nodes -info`, or None
/// (after saying so) where openssl cannot run.
fn openssl_pkcs12(bundle: &Path, password: &Path) -> Option<std::process::Output> {
    let passin = format!("file:{}", path_str(password));
    let output = std::process::Command::new("openssl")
        .args(["pkcs12", "-in", path_str(bundle), "-passin", &passin])
        .args(["-nodes", "-info"])
        .output();
    match output {
        Ok(output) => Some(output),
        Err(err) => {
            eprintln!("SKIPPED: openssl cannot run ({err}); the .p12 was not read back");
            None
        }
    }
}

/// The PEM blocks of `text` with `label`, as DER.
fn pem_blocks(text: &[u8], label: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(text)
        .map(|pem| pem.expect("openssl writes well-formed PEM"))
        .filter(|pem| pem.label == label)
        .map(|pem| pem.contents)
        .collect()
}

#[test]
fn an_operator_p12_is_read_back_by_openssl_with_the_modern_profile() {
    let dir = ca_dir("p12");
    let password = password_file(&dir, "p12", "correct horse battery staple");
    let args = ["--p12", "--p12-password-file", path_str(&password)];
    assert_eq!(issue_in(&dir, "operator", "alice", &args).unwrap(), 0);
    let bundle = dir.join("alice.p12");
    assert_eq!(mode_of(&bundle), 0o600);
    assert!(dir.join("alice.pem").exists() && dir.join("alice-key.pem").exists());

    let Some(output) = openssl_pkcs12(&bundle, &password) else {
        return;
    };
    let info = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "openssl pkcs12 failed: {info}");
    // The lines that name the algorithms, for whoever reads the test log.
    for line in info.lines() {
        eprintln!("openssl: {line}");
    }
    assert!(info.contains("MAC: sha256, Iteration 100000"), "{info}");
    let pbes2 = "PBES2, PBKDF2, AES-256-CBC, Iteration 100000, PRF hmacWithSHA256";
    assert!(
        info.contains(&format!("PKCS7 Encrypted data: {pbes2}")),
        "{info}"
    );
    assert!(
        info.contains(&format!("Shrouded Keybag: {pbes2}")),
        "{info}"
    );

    // The operator's certificate first, then the CA's, byte for byte.
    let certificates = pem_blocks(&output.stdout, "CERTIFICATE");
    assert_eq!(
        certificates,
        [der_of(&dir.join("alice.pem")), der_of(&dir.join(CA_FILE))]
    );
    // The key is alice's: the same public key as in alice-key.pem.
    let keys = pem_blocks(&output.stdout, "PRIVATE KEY");
    assert_eq!(keys.len(), 1);
    let key = KeyPair::try_from(keys[0].as_slice()).unwrap();
    let key_file = fs::read_to_string(dir.join("alice-key.pem")).unwrap();
    let expected = KeyPair::from_pem(&key_file).unwrap();
    assert_eq!(key.public_key_raw(), expected.public_key_raw());
    // openssl shows the name a browser will show.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("friendlyName: rollguard operator/alice"),
        "{stdout}"
    );

    fs::remove_dir_all(&dir).unwrap();
    fs::remove_file(&password).unwrap();
}

#[test]
fn a_wrong_password_fails_the_p12_mac_check() {
    let dir = ca_dir("p12-wrong");
    let password = password_file(&dir, "right", "right");
    let args = ["--p12", "--p12-password-file", path_str(&password)];
    issue_in(&dir, "operator", "alice", &args).unwrap();
    let wrong = password_file(&dir, "wrong", "wrong");

    let Some(output) = openssl_pkcs12(&dir.join("alice.p12"), &wrong) else {
        return;
    };
    let info = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{info}");
    assert!(info.contains("Mac verify error"), "{info}");
    fs::remove_dir_all(&dir).unwrap();
    fs::remove_file(&password).unwrap();
    fs::remove_file(&wrong).unwrap();
}

#[test]
fn a_p12_is_not_replaced_without_force() {
    let dir = ca_dir("p12-force");
    let password = password_file(&dir, "pw", "pw");
    let args = ["--p12", "--p12-password-file", path_str(&password)];
    issue_in(&dir, "operator", "alice", &args).unwrap();
    let bundle = dir.join("alice.p12");
    let before = fs::read(&bundle).unwrap();

    // The .p12 alone is enough to refuse, and nothing else is written.
    fs::remove_file(dir.join("alice.pem")).unwrap();
    fs::remove_file(dir.join("alice-key.pem")).unwrap();
    let err = issue_in(&dir, "operator", "alice", &args).unwrap_err();
    assert!(format!("{err:#}").contains("alice.p12 exists"), "{err:#}");
    assert!(!dir.join("alice.pem").exists() && !dir.join("alice-key.pem").exists());
    assert_eq!(fs::read(&bundle).unwrap(), before);

    // --force replaces it, mode 0600 again.
    fs::set_permissions(&bundle, fs::Permissions::from_mode(0o644)).unwrap();
    let forced = [&args[..], &["--force"]].concat();
    issue_in(&dir, "operator", "alice", &forced).unwrap();
    assert_ne!(fs::read(&bundle).unwrap(), before);
    assert_eq!(mode_of(&bundle), 0o600);
    fs::remove_dir_all(&dir).unwrap();
    fs::remove_file(&password).unwrap();
}

#[test]
fn a_bad_p12_password_file_writes_nothing() {
    let dir = ca_dir("p12-bad-password");
    let missing = dir.join("no-such-password");
    let empty = password_file(&dir, "empty", "");
    for password in [&missing, &empty] {
        let args = ["--p12", "--p12-password-file", path_str(password)];
        let err = issue_in(&dir, "operator", "alice", &args).unwrap_err();
        assert!(
            format!("{err:#}").contains("--p12-password-file"),
            "{err:#}"
        );
        assert!(!dir.join("alice.pem").exists());
        assert!(!dir.join("alice-key.pem").exists());
        assert!(!dir.join("alice.p12").exists());
    }
    // Without --p12, no .p12.
    issue_in(&dir, "operator", "bob", &[]).unwrap();
    assert!(!dir.join("bob.p12").exists());
    fs::remove_dir_all(&dir).unwrap();
    fs::remove_file(&empty).unwrap();
}
