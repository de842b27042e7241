//! `rollguardctl pki`: the fleet's CA and the certificates of its
//! coordinator, agents and operators, made without openssl.
//!
//! `init` makes a self-signed CA (DIR/ca.pem, DIR/ca-key.pem); `issue` signs
//! a leaf with the CA read back from those files; `show` describes any
//! certificate. `issue operator --p12` also bundles the operator's
//! certificate, key and the CA into a PKCS#12 file for a browser (`p12`).
//! Every key is ECDSA P-256. A client certificate names its
//! holder with one SPIFFE URI SAN built by [`Identity::uri`], which is what
//! the coordinator reads back; a coordinator certificate carries the DNS
//! names and IPs its clients dial.
//!
//! It deliberately does not sign CSRs (it makes every key itself), make
//! intermediate CAs (the CA's path length is 0) or revocation lists (the
//! coordinator's `[auth] revoked` list names identities instead).

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rollguard_common::ids::validate_name;
use rollguard_proto::tls::{first_certificate_der, Identity};
use serde::Serialize;
use serde_json::json;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

use self::p12::Password;
use super::args::{BundleFlags, Format, IssueFlags, IssueKind, PkiArgs, PkiCommand};
use super::output::table;

mod p12;

/// The CA's certificate, in the PKI directory.
pub(crate) const CA_FILE: &str = "ca.pem";
/// The CA's private key, in the PKI directory.
pub(crate) const CA_KEY_FILE: &str = "ca-key.pem";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// A CA lasts ten years unless `--valid-for` says otherwise.
pub(crate) const CA_VALID_FOR: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
/// A coordinator certificate lasts a year (exactly 365 days, not humantime's
/// 365.25-day `1y`).
pub(crate) const SERVER_VALID_FOR: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Agent and operator certificates last 90 days.
pub(crate) const CLIENT_VALID_FOR: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// How far before now a certificate starts, so that a peer whose clock is
/// behind does not find a fresh certificate "not yet valid": an agent an
/// hour behind must still accept a coordinator certificate issued a moment
/// ago (issue 11). Public CAs backdate leaves by an hour for the same
/// reason. The CA gets it too: rustls ignores a trust anchor's dates, but
/// other verifiers (openssl, grpcurl) check them.
pub(crate) const BACKDATE: Duration = Duration::from_secs(60 * 60);
/// The last second X.509 can express (9999-12-31T23:59:59Z).
const LATEST_UNIX_SECS: u64 = 253_402_300_799;

const CA_COMMON_NAME: &str = "rollguard CA";
const MAX_PKI_NAME_LEN: usize = 128;
/// The key is readable by its owner only; it is created with this mode (not
/// chmod-ed afterwards) so it is never readable by others, even briefly.
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o700;

/// Runs `rollguardctl pki ...`; needs no coordinator.
pub(crate) fn run(args: PkiArgs, format: Format) -> anyhow::Result<u8> {
    let now = SystemTime::now();
    match args.command {
        PkiCommand::Init { dir, valid_for } => {
            let validity = Validity::starting(now, valid_for.unwrap_or(CA_VALID_FOR))?;
            let written = init(&dir, validity)?;
            written.print(format);
        }
        PkiCommand::Issue(kind) => {
            let (leaf, flags, password_file) = Leaf::from_args(kind);
            // Before any key is made: a bad password file writes nothing.
            let password = password_file.as_deref().map(Password::read).transpose()?;
            let validity = if flags.expired {
                Validity::expired(now)
            } else {
                Validity::starting(now, flags.valid_for.unwrap_or(leaf.default_valid_for()))?
            };
            let written = issue_leaf(&flags.dir, &leaf, validity, flags.force, password.as_ref())?;
            written.print(format);
        }
        PkiCommand::Show { file } => {
            let pem = fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let summary =
                describe(&pem, now).with_context(|| format!("reading {}", file.display()))?;
            summary.print(format);
        }
    }
    Ok(0)
}

// === impl Validity ===

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
}

impl Validity {
    /// Valid from a little before `now` (see [`BACKDATE`]) until
    /// `now + valid_for`.
    pub(crate) fn starting(now: SystemTime, valid_for: Duration) -> anyhow::Result<Validity> {
        if valid_for.is_zero() {
            bail!("--valid-for must be longer than zero");
        }
        let latest = UNIX_EPOCH + Duration::from_secs(LATEST_UNIX_SECS);
        let not_after = now
            .checked_add(valid_for)
            .filter(|not_after| *not_after <= latest)
            .context("--valid-for reaches past the year 9999, which X.509 cannot express")?;
        Ok(Validity {
            not_before: now.checked_sub(BACKDATE).unwrap_or(now),
            not_after,
        })
    }

    /// Expired since yesterday: for tests that a peer refuses such a
    /// certificate (the hidden `--expired` flag).
    pub(crate) fn expired(now: SystemTime) -> Validity {
        Validity {
            not_before: now.checked_sub(2 * DAY).unwrap_or(UNIX_EPOCH),
            not_after: now.checked_sub(DAY).unwrap_or(UNIX_EPOCH),
        }
    }

    fn apply(self, params: &mut CertificateParams) {
        params.not_before = self.not_before.into();
        params.not_after = self.not_after.into();
    }
}

// === impl Leaf ===

/// What an issued certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leaf {
    /// The coordinator's server certificate, named `name`, for these DNS
    /// names and IP addresses.
    Coordinator { name: String, sans: Vec<String> },
    /// An agent's or an operator's client certificate.
    Client(Identity),
}

impl Leaf {
    /// The leaf, its flags, and the password file of its PKCS#12 bundle
    /// if one was asked for (operators only: clap refuses `--p12` elsewhere).
    fn from_args(kind: IssueKind) -> (Leaf, IssueFlags, Option<PathBuf>) {
        match kind {
            IssueKind::Coordinator { name, sans, flags } => {
                (Leaf::Coordinator { name, sans }, flags, None)
            }
            IssueKind::Agent { host_id, flags } => {
                (Leaf::Client(Identity::Agent(host_id)), flags, None)
            }
            IssueKind::Operator {
                name,
                flags,
                bundle:
                    BundleFlags {
                        p12,
                        p12_password_file,
                    },
            } => {
                let password_file = p12_password_file.filter(|_| p12);
                (Leaf::Client(Identity::Operator(name)), flags, password_file)
            }
        }
    }

    /// The file name stem and the subject CN.
    fn name(&self) -> &str {
        match self {
            Leaf::Coordinator { name, .. } => name,
            Leaf::Client(identity) => identity.name(),
        }
    }

    /// What the name is, for error messages.
    fn what(&self) -> &'static str {
        match self {
            Leaf::Coordinator { .. } => "coordinator name",
            Leaf::Client(Identity::Agent(_)) => "host id",
            Leaf::Client(Identity::Operator(_)) => "operator name",
        }
    }

    fn default_valid_for(&self) -> Duration {
        match self {
            Leaf::Coordinator { .. } => SERVER_VALID_FOR,
            Leaf::Client(_) => CLIENT_VALID_FOR,
        }
    }

    /// How `pki show` will name it.
    fn label(&self) -> String {
        match self {
            Leaf::Coordinator { .. } => "coordinator".to_owned(),
            Leaf::Client(identity) => identity.to_string(),
        }
    }

    fn params(&self, validity: Validity) -> anyhow::Result<CertificateParams> {
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(self.name());
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        validity.apply(&mut params);
        match self {
            Leaf::Coordinator { sans, .. } => {
                if sans.is_empty() {
                    bail!("a coordinator certificate needs at least one --san");
                }
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                params.subject_alt_names = sans
                    .iter()
                    .map(|san| server_san(san))
                    .collect::<Result<_, _>>()?;
            }
            Leaf::Client(identity) => {
                // rustls refuses a client certificate without clientAuth.
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                let uri = identity
                    .uri()
                    .try_into()
                    .context("the SPIFFE URI is not ASCII")?;
                params.subject_alt_names = vec![SanType::URI(uri)];
            }
        }
        Ok(params)
    }
}

/// An IP literal becomes an IP SAN, anything else a DNS SAN.
fn server_san(san: &str) -> anyhow::Result<SanType> {
    if let Ok(ip) = san.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !san.is_empty()
        && san.len() <= 253
        && san
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*'));
    if !valid {
        bail!("--san {san:?} is neither an IP address nor a DNS name");
    }
    Ok(SanType::DnsName(
        san.try_into().context("a DNS name is ASCII")?,
    ))
}

/// Checks a HOST_ID or NAME: it becomes a file name and a SPIFFE path
/// segment, so only letters, digits, `.`, `-` and `_`, 1 to 128 of them.
pub(crate) fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    validate_name(what, name).map_err(anyhow::Error::msg)?;
    if name.chars().count() > MAX_PKI_NAME_LEN {
        bail!("{what} is longer than {MAX_PKI_NAME_LEN} characters");
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        bail!("{what} {name:?} contains {bad:?}; use letters, digits, '.', '-' and '_'");
    }
    // SPIFFE IDs forbid dot segments.
    if name == "." || name == ".." {
        bail!("{what} must not be {name:?}");
    }
    // NAME.pem and NAME-key.pem must never be the CA's files, nor another
    // name's key file.
    if name == "ca" || name.ends_with("-key") {
        bail!("{what} {name:?} would clash with the CA's or another certificate's key file");
    }
    Ok(())
}

// === init and issue ===

/// The files `init` or `issue` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) identity: String,
    pub(crate) certificate: PathBuf,
    pub(crate) key: PathBuf,
    /// The PKCS#12 bundle, if `--p12` asked for one.
    pub(crate) bundle: Option<PathBuf>,
    pub(crate) not_after: SystemTime,
}

impl Written {
    fn print(&self, format: Format) {
        let not_after = humantime::format_rfc3339_seconds(self.not_after).to_string();
        match format {
            Format::Json => println!(
                "{}",
                json!({
                    "identity": self.identity,
                    "certificate": self.certificate,
                    "key": self.key,
                    "bundle": self.bundle,
                    "not_after": not_after,
                })
            ),
            Format::Table => {
                let files = match &self.bundle {
                    Some(bundle) => format!(
                        "{}, {} and {}",
                        self.certificate.display(),
                        self.key.display(),
                        bundle.display()
                    ),
                    None => format!("{} and {}", self.certificate.display(), self.key.display()),
                };
                println!("wrote {files} ({}, valid until {not_after})", self.identity);
            }
        }
    }
}

/// Makes a new CA in `dir` (created if missing); refuses to replace one.
pub(crate) fn init(dir: &Path, validity: Validity) -> anyhow::Result<Written> {
    // The directory holds the CA's key: owner only.
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let certificate = dir.join(CA_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    refuse_existing(
        &[&certificate, &key_path],
        "a CA is already there; not replacing it",
    )?;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating the CA key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(CA_COMMON_NAME);
    params.serial_number = Some(random_serial());
    // Signs leaves only: no intermediate CAs below it.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity.apply(&mut params);
    let cert = params
        .self_signed(&key)
        .context("signing the CA certificate")?;

    write_files(
        &[
            (&key_path, key.serialize_pem().as_bytes(), KEY_MODE),
            (&certificate, cert.pem().as_bytes(), CERT_MODE),
        ],
        false,
    )?;
    Ok(Written {
        identity: "CA".to_owned(),
        certificate,
        key: key_path,
        bundle: None,
        not_after: validity.not_after,
    })
}

/// Issues `leaf` signed by the CA in `dir`; refuses to replace its files
/// unless `replace`.
pub(crate) fn issue(
    dir: &Path,
    leaf: &Leaf,
    validity: Validity,
    replace: bool,
) -> anyhow::Result<Written> {
    issue_leaf(dir, leaf, validity, replace, None)
}

/// [`issue`], and with a `password` also DIR/NAME.p12: the certificate, its
/// key and the CA certificate for a browser (operators only).
fn issue_leaf(
    dir: &Path,
    leaf: &Leaf,
    validity: Validity,
    replace: bool,
    password: Option<&Password>,
) -> anyhow::Result<Written> {
    let name = leaf.name();
    check_name(leaf.what(), name)?;
    if password.is_some() && !matches!(leaf, Leaf::Client(Identity::Operator(_))) {
        bail!("only an operator certificate goes into a .p12 (--p12)");
    }
    let ca = Ca::load(dir)?;
    let certificate = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    let bundle_path = password.map(|_| dir.join(format!("{name}.p12")));
    if !replace {
        let mut paths = vec![certificate.as_path(), key_path.as_path()];
        paths.extend(bundle_path.as_deref());
        refuse_existing(&paths, "pass --force to replace it")?;
    }

    let params = leaf.params(validity)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating the key")?;
    let cert = params
        .signed_by(&key, &ca.issuer)
        .context("signing the certificate")?;
    if validity.not_after > ca.not_after {
        tracing::warn!(
            not_after = %humantime::format_rfc3339_seconds(validity.not_after),
            ca_not_after = %humantime::format_rfc3339_seconds(ca.not_after),
            "the certificate outlives the CA; peers refuse it once the CA expires"
        );
    }

    let key_pem = key.serialize_pem();
    let cert_pem = cert.pem();
    let mut files = vec![
        (key_path.as_path(), key_pem.as_bytes(), KEY_MODE),
        (certificate.as_path(), cert_pem.as_bytes(), CERT_MODE),
    ];
    let bundle = password
        .map(|password| {
            let contents = p12::Contents {
                friendly_name: &format!("rollguard {}", leaf.label()),
                certificate: cert.der(),
                key: &key.serialize_der(),
                ca_certificate: &ca.certificate_der,
            };
            p12::encode(&contents, password).context("encoding the .p12")
        })
        .transpose()?;
    if let (Some(bundle_path), Some(bundle)) = (&bundle_path, &bundle) {
        // It holds the key, so it gets the key's mode.
        files.push((bundle_path.as_path(), bundle, KEY_MODE));
    }
    write_files(&files, replace)?;
    Ok(Written {
        identity: leaf.label(),
        certificate,
        key: key_path,
        bundle: bundle_path,
        not_after: validity.not_after,
    })
}

/// The CA of a PKI directory, read back from its two files.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// ca.pem's certificate, for a bundle.
    certificate_der: Vec<u8>,
    not_after: SystemTime,
}

impl Ca {
    fn load(dir: &Path) -> anyhow::Result<Ca> {
        let cert_path = dir.join(CA_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let read = |path: &Path| {
            fs::read_to_string(path).with_context(|| {
                format!(
                    "reading {} (run `rollguardctl pki init` first)",
                    path.display()
                )
            })
        };
        let cert_pem = read(&cert_path)?;
        let key = KeyPair::from_pem(&read(&key_path)?)
            .with_context(|| format!("reading the key in {}", key_path.display()))?;
        let der = first_certificate_der(cert_pem.as_bytes())
            .with_context(|| format!("reading {}", cert_path.display()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        if !cert.is_ca() {
            bail!("{} is not a CA certificate", cert_path.display());
        }
        // Leaves signed with another key would verify against nothing.
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            bail!(
                "{} is not the key of {}",
                key_path.display(),
                cert_path.display()
            );
        }
        let not_after = system_time(cert.validity().not_after);
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        Ok(Ca {
            issuer,
            certificate_der: der.to_vec(),
            not_after,
        })
    }
}

fn common_name(name: &str) -> DistinguishedName {
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, name);
    distinguished_name
}

/// A fresh 16-byte serial. No CSR is ever signed (this tool makes every
/// key), so nobody can steer what gets signed; the serial only has to be
/// unique, which 126 random bits are.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    fastrand::fill(&mut bytes);
    // Positive (top bit clear) and never zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn refuse_existing(paths: &[&Path], hint: &str) -> anyhow::Result<()> {
    for path in paths {
        if fs::symlink_metadata(path).is_ok() {
            bail!("{} exists; {hint}", path.display());
        }
    }
    Ok(())
}

/// Writes each (path, contents, mode) in order; if one fails, removes what
/// this call wrote so no half set (a key without its certificate, or a
/// pair without the bundle asked for) is left behind.
fn write_files(files: &[(&Path, &[u8], u32)], replace: bool) -> anyhow::Result<()> {
    for (written, (path, contents, mode)) in files.iter().enumerate() {
        if let Err(err) = write_new(path, contents, *mode, replace) {
            for (path, _, _) in &files[..written] {
                let _ = fs::remove_file(path);
            }
            return Err(err);
        }
    }
    Ok(())
}

/// Creates `path` with `mode` and writes `contents`. It never opens an
/// existing file: with `replace` the old one is removed first, so the new
/// file gets `mode` even if the old one was readable by others.
fn write_new(path: &Path, contents: &[u8], mode: u32, replace: bool) -> anyhow::Result<()> {
    if replace {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("removing {}", path.display())),
        }
    }
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| {
            file.write_all(contents)?;
            file.sync_all()
        });
    result.with_context(|| format!("writing {}", path.display()))
}

// === show ===

/// What `pki show` prints about a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Summary {
    /// `CA`, `coordinator`, `agent/NAME`, `operator/NAME`, or `unknown`.
    pub(crate) identity: String,
    pub(crate) subject: String,
    pub(crate) issuer: String,
    /// `DNS:name`, `IP:addr` or `URI:uri`.
    pub(crate) sans: Vec<String>,
    pub(crate) serial: String,
    /// RFC 3339.
    pub(crate) not_before: String,
    /// RFC 3339.
    pub(crate) not_after: String,
    /// `valid`, `expired` or `not yet valid`, at the time of the call.
    pub(crate) status: &'static str,
    pub(crate) key_usage: Vec<String>,
    pub(crate) extended_key_usage: Vec<String>,
}

impl Summary {
    fn print(&self, format: Format) {
        match format {
            Format::Json => println!("{}", json!(self)),
            Format::Table => {
                let rows = [
                    ("identity", self.identity.clone()),
                    ("subject", self.subject.clone()),
                    ("issuer", self.issuer.clone()),
                    ("sans", self.sans.join(", ")),
                    ("serial", self.serial.clone()),
                    ("not before", self.not_before.clone()),
                    ("not after", self.not_after.clone()),
                    ("status", self.status.to_owned()),
                    ("key usage", self.key_usage.join(", ")),
                    ("extended key usage", self.extended_key_usage.join(", ")),
                ];
                let rows: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|(field, value)| vec![field.to_owned(), value])
                    .collect();
                print!("{}", table(&rows));
            }
        }
    }
}

/// Describes the first certificate of a PEM file, as of `now`.
pub(crate) fn describe(pem: &[u8], now: SystemTime) -> anyhow::Result<Summary> {
    let der = first_certificate_der(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).context("unreadable certificate")?;
    let extended_key_usage = extended_key_usages(&cert)?;
    let identity = if cert.is_ca() {
        "CA".to_owned()
    } else if let Ok(identity) = Identity::of_certificate(&der) {
        identity.to_string()
    } else if extended_key_usage.iter().any(|usage| usage == "serverAuth") {
        "coordinator".to_owned()
    } else {
        "unknown".to_owned()
    };
    let not_before = system_time(cert.validity().not_before);
    let not_after = system_time(cert.validity().not_after);
    let status = if now < not_before {
        "not yet valid"
    } else if now > not_after {
        "expired"
    } else {
        "valid"
    };
    Ok(Summary {
        identity,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans: sans(&cert)?,
        serial: cert.raw_serial_as_string(),
        not_before: humantime::format_rfc3339_seconds(not_before).to_string(),
        not_after: humantime::format_rfc3339_seconds(not_after).to_string(),
        status,
        key_usage: key_usages(&cert)?,
        extended_key_usage,
    })
}

fn sans(cert: &X509Certificate<'_>) -> anyhow::Result<Vec<String>> {
    let Some(ext) = cert
        .subject_alternative_name()
        .context("unreadable subjectAltName")?
    else {
        return Ok(Vec::new());
    };
    let names = ext.value.general_names.iter().map(|name| match name {
        GeneralName::DNSName(dns) => format!("DNS:{dns}"),
        GeneralName::URI(uri) => format!("URI:{uri}"),
        GeneralName::IPAddress(bytes) => match ip_address(bytes) {
            Some(ip) => format!("IP:{ip}"),
            None => "IP:invalid".to_owned(),
        },
        GeneralName::RFC822Name(email) => format!("email:{email}"),
        other => format!("{other:?}"),
    });
    Ok(names.collect())
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(octets) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    let octets = <[u8; 16]>::try_from(bytes).ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(octets)))
}

fn key_usages(cert: &X509Certificate<'_>) -> anyhow::Result<Vec<String>> {
    let Some(ext) = cert.key_usage().context("unreadable keyUsage")? else {
        return Ok(Vec::new());
    };
    let usage = ext.value;
    let named = [
        (usage.digital_signature(), "digitalSignature"),
        (usage.non_repudiation(), "nonRepudiation"),
        (usage.key_encipherment(), "keyEncipherment"),
        (usage.data_encipherment(), "dataEncipherment"),
        (usage.key_agreement(), "keyAgreement"),
        (usage.key_cert_sign(), "keyCertSign"),
        (usage.crl_sign(), "cRLSign"),
        (usage.encipher_only(), "encipherOnly"),
        (usage.decipher_only(), "decipherOnly"),
    ];
    Ok(named
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| name.to_owned())
        .collect())
}

fn extended_key_usages(cert: &X509Certificate<'_>) -> anyhow::Result<Vec<String>> {
    let Some(ext) = cert
        .extended_key_usage()
        .context("unreadable extendedKeyUsage")?
    else {
        return Ok(Vec::new());
    };
    let usage = ext.value;
    let named = [
        (usage.any, "anyExtendedKeyUsage"),
        (usage.server_auth, "serverAuth"),
        (usage.client_auth, "clientAuth"),
        (usage.code_signing, "codeSigning"),
        (usage.email_protection, "emailProtection"),
        (usage.time_stamping, "timeStamping"),
        (usage.ocsp_signing, "OCSPSigning"),
    ];
    let mut names: Vec<String> = named
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| name.to_owned())
        .collect();
    names.extend(usage.other.iter().map(|oid| oid.to_id_string()));
    Ok(names)
}

/// An X.509 time as a `SystemTime` (second precision, as X.509 has).
fn system_time(time: ASN1Time) -> SystemTime {
    let secs = time.timestamp();
    let offset = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH + offset
    } else {
        UNIX_EPOCH - offset
    }
}

#[cfg(test)]
mod tests;
