//! The client certificates of a TLS run (`--tls-dir DIR`): one per
//! simulated agent, naming its host id, and the operator's for the control
//! calls.
//!
//! `Certs` signs them in-process with the CA of a `rollguardctl pki`
//! directory (DIR/ca.pem, DIR/ca-key.pem), as `rollguardctl pki issue`
//! does (ECDSA P-256, clientAuth, one SPIFFE URI SAN, 90 days), and keeps
//! them: agents in DIR/agents/HOST_ID.pem and -key.pem, the operator in
//! DIR/NAME.pem and -key.pem (where `rollguardctl pki issue operator NAME`
//! puts it, so one made by hand is used as is). The next run reuses what
//! is there, so the certificates of 10,000 agents are made once.
//!
//! It deliberately skips what makes `rollguardctl pki` careful and slow for
//! real identities (no fsync, no refusal to replace): these are test
//! identities, rebuilt whenever one is unreadable, about to expire, or the
//! cache was made under another CA (DIR/agents/ca.pem, the CA it was made
//! with, differs from DIR/ca.pem). It never makes the CA nor the
//! coordinator's certificate.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use rollguard_proto::tls::{first_certificate_der, ClientFiles, Identity};
use tonic::transport::{Certificate, ClientTlsConfig, Identity as TlsIdentity};

const CA_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca-key.pem";
/// Below the PKI directory: the agents' certificates and the CA they were made with.
const AGENTS_DIR: &str = "agents";
/// As `rollguardctl pki issue` makes client certificates.
const VALID_FOR: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// Starts a little in the past, for a peer whose clock is behind.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// A kept certificate expiring sooner than this is made again.
const MIN_LEFT: Duration = Duration::from_secs(24 * 60 * 60);
const KEY_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// The client certificates of a TLS run, in memory.
#[derive(Debug)]
pub(crate) struct Certs {
    dir: PathBuf,
    ca_pem: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    /// The certificate of agent `idx` is `agents[idx]`.
    agents: Vec<Pair>,
    /// Whether DIR/agents holds certificates of this CA; if not, nothing there is reused.
    cache_matches: bool,
    operator: ClientTlsConfig,
}

/// A certificate and its key, as PEM.
#[derive(Debug, Clone)]
struct Pair {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl Certs {
    /// Reads the CA of `dir` and the operator certificate `operator` (made
    /// if missing); agents' certificates come with [`Certs::ensure`].
    pub(crate) fn open(dir: &Path, operator: &str) -> anyhow::Result<Certs> {
        let ca_path = dir.join(CA_FILE);
        let ca_pem = fs::read(&ca_path).with_context(|| {
            format!(
                "reading {} (make it with `rollguardctl pki init --dir {}`)",
                ca_path.display(),
                dir.display()
            )
        })?;
        let issuer = load_issuer(dir, &ca_pem)?;
        let agents_dir = dir.join(AGENTS_DIR);
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&agents_dir)
            .with_context(|| format!("creating {}", agents_dir.display()))?;
        let cache_matches = fs::read(agents_dir.join(CA_FILE)).is_ok_and(|kept| kept == ca_pem);
        let operator = operator_tls(dir, &issuer, operator)?;
        Ok(Certs {
            dir: dir.to_owned(),
            ca_pem,
            issuer,
            agents: Vec::new(),
            cache_matches,
            operator,
        })
    }

    /// Makes sure agents `0..host_ids.len()` have a certificate naming
    /// their host id: kept ones are read back, missing ones made and kept.
    /// `host_ids` starts at agent 0 each time; the ones already in memory
    /// are skipped.
    pub(crate) fn ensure(&mut self, host_ids: &[String]) -> anyhow::Result<()> {
        let wanted = &host_ids[self.agents.len().min(host_ids.len())..];
        if wanted.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let agents_dir = self.dir.join(AGENTS_DIR);
        if !self.cache_matches {
            forget_cache(&agents_dir)?;
            write_file(&agents_dir.join(CA_FILE), &self.ca_pem, 0o644)?;
            self.cache_matches = true;
        }
        // Signing is CPU-bound and independent per host: one chunk per core.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk_len = wanted.len().div_ceil(threads);
        let issuer = &self.issuer;
        let agents_dir = agents_dir.as_path();
        let chunks: Vec<anyhow::Result<(Vec<Pair>, usize)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = wanted
                .chunks(chunk_len)
                .map(|chunk| scope.spawn(move || agent_pairs(agents_dir, issuer, chunk)))
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().expect("making certificates does not panic"))
                .collect()
        });
        let mut made = 0;
        for chunk in chunks {
            let (pairs, made_here) = chunk?;
            self.agents.extend(pairs);
            made += made_here;
        }
        tracing::info!(
            made,
            reused = wanted.len() - made,
            secs = started.elapsed().as_secs_f64(),
            dir = %agents_dir.display(),
            "agent certificates ready"
        );
        Ok(())
    }

    /// The TLS settings of agent `idx`, presenting its own certificate;
    /// `None` before [`Certs::ensure`] covered it.
    pub(crate) fn agent(&self, idx: usize) -> Option<ClientTlsConfig> {
        let pair = self.agents.get(idx)?;
        Some(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&self.ca_pem))
                .identity(TlsIdentity::from_pem(&pair.cert_pem, &pair.key_pem)),
        )
    }

    /// The TLS settings of the control calls, presenting the operator's certificate.
    pub(crate) fn operator(&self) -> ClientTlsConfig {
        self.operator.clone()
    }
}

/// Reads DIR's CA as a signer, checking that the key is the certificate's.
fn load_issuer(dir: &Path, ca_pem: &[u8]) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let ca_path = dir.join(CA_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    let key_pem =
        fs::read_to_string(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let key = KeyPair::from_pem(&key_pem)
        .with_context(|| format!("reading the key in {}", key_path.display()))?;
    let der =
        first_certificate_der(ca_pem).with_context(|| format!("reading {}", ca_path.display()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .with_context(|| format!("reading {}", ca_path.display()))?;
    if !cert.is_ca() {
        bail!("{} is not a CA certificate", ca_path.display());
    }
    // Leaves signed with another key would verify against nothing.
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        bail!(
            "{} is not the key of {}",
            key_path.display(),
            ca_path.display()
        );
    }
    let ca_text = std::str::from_utf8(ca_pem)
        .with_context(|| format!("{} is not PEM text", ca_path.display()))?;
    Issuer::from_ca_cert_pem(ca_text, key).with_context(|| format!("reading {}", ca_path.display()))
}

/// The operator's TLS settings from DIR/NAME.pem, made first if missing.
fn operator_tls(
    dir: &Path,
    issuer: &Issuer<'static, KeyPair>,
    name: &str,
) -> anyhow::Result<ClientTlsConfig> {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    let identity = Identity::Operator(name.to_owned());
    if !cert_path.exists() {
        let pair = make_pair(issuer, &identity)?;
        write_pair(&cert_path, &key_path, &pair)?;
        tracing::info!(file = %cert_path.display(), %identity, "made the operator certificate");
    }
    let tls = ClientFiles {
        ca: &dir.join(CA_FILE),
        cert: &cert_path,
        key: &key_path,
    }
    .load()
    .context("reading the operator certificate")?;
    if tls.identity != identity {
        bail!(
            "{} names {}, not {identity}",
            cert_path.display(),
            tls.identity
        );
    }
    Ok(tls.config)
}

/// The pairs of `host_ids`, read back when kept and valid, made otherwise;
/// with how many were made.
fn agent_pairs(
    agents_dir: &Path,
    issuer: &Issuer<'static, KeyPair>,
    host_ids: &[String],
) -> anyhow::Result<(Vec<Pair>, usize)> {
    let mut pairs = Vec::with_capacity(host_ids.len());
    let mut made = 0;
    let now = SystemTime::now();
    for host_id in host_ids {
        let cert_path = agents_dir.join(format!("{host_id}.pem"));
        let key_path = agents_dir.join(format!("{host_id}-key.pem"));
        if let Some(pair) = kept_pair(&cert_path, &key_path, now) {
            pairs.push(pair);
            continue;
        }
        let pair = make_pair(issuer, &Identity::Agent(host_id.clone()))?;
        write_pair(&cert_path, &key_path, &pair)?;
        pairs.push(pair);
        made += 1;
    }
    Ok((pairs, made))
}

/// A kept pair, if both files read and the certificate is valid for a while yet.
fn kept_pair(cert_path: &Path, key_path: &Path, now: SystemTime) -> Option<Pair> {
    let cert_pem = fs::read(cert_path).ok()?;
    let key_pem = fs::read(key_path).ok()?;
    let der = first_certificate_der(&cert_pem).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let not_after =
        UNIX_EPOCH + Duration::from_secs(cert.validity().not_after.timestamp().max(0) as u64);
    (not_after > now + MIN_LEFT && !key_pem.is_empty()).then_some(Pair { cert_pem, key_pem })
}

/// A new key and a certificate naming `identity`, signed by `issuer`.
fn make_pair(issuer: &Issuer<'static, KeyPair>, identity: &Identity) -> anyhow::Result<Pair> {
    let now = SystemTime::now();
    let mut params = CertificateParams::default();
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, identity.name());
    params.distinguished_name = distinguished_name;
    // No serial set: rcgen derives one from the (fresh, random) public key.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // rustls refuses a client certificate without clientAuth.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now.checked_sub(BACKDATE).unwrap_or(now).into();
    params.not_after = (now + VALID_FOR).into();
    let uri = identity
        .uri()
        .try_into()
        .context("the SPIFFE URI is not ASCII")?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating a key")?;
    let cert = params
        .signed_by(&key, issuer)
        .with_context(|| format!("signing the certificate of {identity}"))?;
    Ok(Pair {
        cert_pem: cert.pem().into_bytes(),
        key_pem: key.serialize_pem().into_bytes(),
    })
}

/// Writes the key (owner only), then the certificate: a pair cut short
/// leaves no certificate, and is made again next time.
fn write_pair(cert_path: &Path, key_path: &Path, pair: &Pair) -> anyhow::Result<()> {
    let _ = fs::remove_file(cert_path);
    write_file(key_path, &pair.key_pem, KEY_MODE)?;
    write_file(cert_path, &pair.cert_pem, 0o644)
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    // Removed first so that a new key file never keeps an old file's wider mode.
    let _ = fs::remove_file(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| file.write_all(contents))
        .with_context(|| format!("writing {}", path.display()))
}

/// Removes every file of a cache made under another CA.
fn forget_cache(agents_dir: &Path) -> anyhow::Result<()> {
    let entries =
        fs::read_dir(agents_dir).with_context(|| format!("reading {}", agents_dir.display()))?;
    let mut n_removed = 0;
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", agents_dir.display()))?
            .path();
        if path.extension().is_some_and(|ext| ext == "pem") {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            n_removed += 1;
        }
    }
    if n_removed > 0 {
        tracing::info!(
            n_removed,
            dir = %agents_dir.display(),
            "the CA changed: forgot the agent certificates made under the old one"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
