//! The PKCS#12 bundle of `pki issue operator NAME --p12`: the operator's
//! certificate, its key and the CA certificate in one password-protected
//! file, for a person to import into a browser so the browser can present
//! the certificate to the coordinator's dashboard (issue 13).
//!
//! [`encode`] writes the profile OpenSSL 3 writes by default and browsers
//! import (RFC 7292 with RFC 8018's PBES2): both the certificates and the
//! key are encrypted with AES-256-CBC under a PBKDF2-HMAC-SHA256 key, and
//! the whole is sealed with an HMAC-SHA256 MAC keyed by the PKCS#12 KDF
//! (RFC 7292 appendix B) with SHA-256. The DER is written here by hand: the
//! structure is fixed and small, and `openssl pkcs12` reads it back in the
//! tests. ring (already in the tree) does the hashing, PBKDF2, HMAC and the
//! random salts; RustCrypto's `aes` and `cbc` the encryption.
//!
//! It deliberately does not read PKCS#12 files, nor write the legacy
//! profile (RC2 or 3DES with a SHA-1 MAC) that only old importers need.

use std::fs;
use std::num::NonZeroU32;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockEncryptMut, KeyIvInit};
use anyhow::{bail, Context};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};

/// PBKDF2 rounds, and PKCS#12 KDF rounds for the MAC key. The MAC is as
/// good a way to test a guessed password as the encryption, so both get
/// the same count. OpenSSL's default is 2,048; 100,000 costs a browser a
/// fraction of a second at import, once.
const ITERATIONS: u32 = 100_000;
const SALT_LEN: usize = 16;
const AES_BLOCK_LEN: usize = 16;
const AES_256_KEY_LEN: usize = 32;
/// SHA-256's output, which is also the HMAC-SHA256 key length OpenSSL
/// derives for the MAC.
const SHA256_LEN: usize = 32;
/// SHA-256's input block, the PKCS#12 KDF's `v`.
const SHA256_BLOCK_LEN: usize = 64;
/// The PKCS#12 KDF's purpose byte for a MAC key (RFC 7292 B.3).
const KDF_ID_MAC: u8 = 3;
/// PFX version 3 (RFC 7292 section 4).
const PFX_VERSION: u32 = 3;

/// The flag whose file holds the password, for error messages.
const PASSWORD_FLAG: &str = "--p12-password-file";

/// Object identifiers, as the content octets of their DER encoding.
mod oid {
    /// id-data, 1.2.840.113549.1.7.1.
    pub(super) const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    /// id-encryptedData, 1.2.840.113549.1.7.6.
    pub(super) const ENCRYPTED_DATA: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];
    /// pkcs8ShroudedKeyBag, 1.2.840.113549.1.12.10.1.2.
    pub(super) const SHROUDED_KEY_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
    ];
    /// certBag, 1.2.840.113549.1.12.10.1.3.
    pub(super) const CERT_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03,
    ];
    /// x509Certificate, 1.2.840.113549.1.9.22.1.
    pub(super) const X509_CERTIFICATE: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01];
    /// friendlyName, 1.2.840.113549.1.9.20.
    pub(super) const FRIENDLY_NAME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x14];
    /// localKeyID, 1.2.840.113549.1.9.21.
    pub(super) const LOCAL_KEY_ID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x15];
    /// PBES2, 1.2.840.113549.1.5.13.
    pub(super) const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
    /// PBKDF2, 1.2.840.113549.1.5.12.
    pub(super) const PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
    /// hmacWithSHA256, 1.2.840.113549.2.9.
    pub(super) const HMAC_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09];
    /// aes256-CBC, 2.16.840.1.101.3.4.1.42.
    pub(super) const AES_256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
    /// sha256, 2.16.840.1.101.3.4.2.1.
    pub(super) const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
}

/// What goes into a bundle, all DER.
#[derive(Debug, Clone, Copy)]
pub(super) struct Contents<'a> {
    /// The name a browser shows for the certificate and key.
    pub(super) friendly_name: &'a str,
    pub(super) certificate: &'a [u8],
    /// PKCS#8 PrivateKeyInfo.
    pub(super) key: &'a [u8],
    pub(super) ca_certificate: &'a [u8],
}

/// A bundle's password, read from the file `--p12-password-file` names.
pub(super) struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// Reads the first line of `path` (its line ending stripped); warns if
    /// every user may read the file.
    pub(super) fn read(path: &Path) -> anyhow::Result<Password> {
        let context = || format!("reading the {PASSWORD_FLAG} {}", path.display());
        let metadata = fs::metadata(path).with_context(context)?;
        if metadata.permissions().mode() & 0o004 != 0 {
            tracing::warn!(
                file = %path.display(),
                "the {PASSWORD_FLAG} is readable by every user; chmod 600 it"
            );
        }
        let text = fs::read_to_string(path).with_context(context)?;
        let password = text.lines().next().unwrap_or_default();
        if password.is_empty() {
            bail!(
                "the {PASSWORD_FLAG} {} has an empty first line; the .p12 needs a password",
                path.display()
            );
        }
        Ok(Password(password.to_owned()))
    }

    /// For tests.
    #[cfg(test)]
    pub(super) fn for_test(password: &str) -> Password {
        Password(password.to_owned())
    }

    /// The PKCS#12 KDF's input: UTF-16BE with a two-byte terminator (RFC 7292
    /// B.1), as OpenSSL converts a UTF-8 password for the MAC.
    fn bmp_string(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self.0.encode_utf16().flat_map(u16::to_be_bytes).collect();
        out.extend_from_slice(&[0, 0]);
        out
    }
}

/// Encodes `contents` as a PKCS#12 file (DER) protected by `password`.
pub(super) fn encode(contents: &Contents<'_>, password: &Password) -> anyhow::Result<Vec<u8>> {
    let rng = SystemRandom::new();
    // Ties the key to its certificate for importers that pair them by it.
    let local_key_id = digest::digest(&digest::SHA256, contents.certificate);
    let attributes = bag_attributes(contents.friendly_name, local_key_id.as_ref());

    let certificates = sequence(&[
        &safe_bag(oid::CERT_BAG, &cert_bag(contents.certificate), &attributes),
        &safe_bag(oid::CERT_BAG, &cert_bag(contents.ca_certificate), &[]),
    ]);
    let encrypted_certificates = encrypted_data(&certificates, password, &rng)?;

    let (algorithm, encrypted_key) = pbes2_encrypt(contents.key, password, &rng)?;
    let shrouded_key = sequence(&[&algorithm, &octet_string(&encrypted_key)]);
    let keys = sequence(&[&safe_bag(oid::SHROUDED_KEY_BAG, &shrouded_key, &attributes)]);

    let authenticated_safe = sequence(&[
        &content_info(oid::ENCRYPTED_DATA, &encrypted_certificates),
        &content_info(oid::DATA, &octet_string(&keys)),
    ]);
    let mac = mac_data(&authenticated_safe, password, &rng)?;
    Ok(sequence(&[
        &integer(PFX_VERSION),
        &content_info(oid::DATA, &octet_string(&authenticated_safe)),
        &mac,
    ]))
}

// === the PKCS#12 structures ===

/// ContentInfo: a content type and its content, `[0] EXPLICIT`.
fn content_info(content_type: &[u8], content: &[u8]) -> Vec<u8> {
    sequence(&[&object_id(content_type), &explicit(0, content)])
}

/// SafeBag: a bag type, its value `[0] EXPLICIT`, and its attributes if any.
fn safe_bag(bag_type: &[u8], value: &[u8], attributes: &[u8]) -> Vec<u8> {
    let mut parts = vec![object_id(bag_type), explicit(0, value)];
    if !attributes.is_empty() {
        parts.push(attributes.to_vec());
    }
    sequence(&parts.iter().map(Vec::as_slice).collect::<Vec<_>>())
}

/// CertBag holding an X.509 certificate.
fn cert_bag(certificate: &[u8]) -> Vec<u8> {
    sequence(&[
        &object_id(oid::X509_CERTIFICATE),
        &explicit(0, &octet_string(certificate)),
    ])
}

/// The SET OF Attribute of the operator's certificate and key: its
/// friendlyName and localKeyID.
fn bag_attributes(friendly_name: &str, local_key_id: &[u8]) -> Vec<u8> {
    let name = sequence(&[
        &object_id(oid::FRIENDLY_NAME),
        &set(&[&bmp_string(friendly_name)]),
    ]);
    let key_id = sequence(&[
        &object_id(oid::LOCAL_KEY_ID),
        &set(&[&octet_string(local_key_id)]),
    ]);
    set(&[&name, &key_id])
}

/// EncryptedData (version 0) of `plaintext`, a DER SafeContents.
fn encrypted_data(
    plaintext: &[u8],
    password: &Password,
    rng: &SystemRandom,
) -> anyhow::Result<Vec<u8>> {
    let (algorithm, ciphertext) = pbes2_encrypt(plaintext, password, rng)?;
    let encrypted_content_info = sequence(&[
        &object_id(oid::DATA),
        &algorithm,
        // encryptedContent is [0] IMPLICIT OCTET STRING: primitive.
        &tlv(0x80, &ciphertext),
    ]);
    Ok(sequence(&[&integer(0), &encrypted_content_info]))
}

/// Encrypts with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC); returns the
/// AlgorithmIdentifier and the ciphertext. PBKDF2 takes the password's
/// UTF-8 bytes, as OpenSSL does (the BMPString is only for the PKCS#12 KDF).
fn pbes2_encrypt(
    plaintext: &[u8],
    password: &Password,
    rng: &SystemRandom,
) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let salt: [u8; SALT_LEN] = random(rng)?;
    let iv: [u8; AES_BLOCK_LEN] = random(rng)?;
    let mut key = [0u8; AES_256_KEY_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations(),
        &salt,
        password.0.as_bytes(),
        &mut key,
    );
    let ciphertext = cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);

    let prf = sequence(&[&object_id(oid::HMAC_WITH_SHA256), &null()]);
    let pbkdf2_params = sequence(&[&octet_string(&salt), &integer(ITERATIONS), &prf]);
    let kdf = sequence(&[&object_id(oid::PBKDF2), &pbkdf2_params]);
    let scheme = sequence(&[&object_id(oid::AES_256_CBC), &octet_string(&iv)]);
    let algorithm = sequence(&[&object_id(oid::PBES2), &sequence(&[&kdf, &scheme])]);
    Ok((algorithm, ciphertext))
}

/// MacData: HMAC-SHA256 of the AuthenticatedSafe's DER under a key from
/// the PKCS#12 KDF.
fn mac_data(
    authenticated_safe: &[u8],
    password: &Password,
    rng: &SystemRandom,
) -> anyhow::Result<Vec<u8>> {
    let salt: [u8; SALT_LEN] = random(rng)?;
    let mac_key = pkcs12_kdf_sha256(KDF_ID_MAC, &password.bmp_string(), &salt, ITERATIONS);
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &mac_key),
        authenticated_safe,
    );
    let digest_algorithm = sequence(&[&object_id(oid::SHA256), &null()]);
    let digest_info = sequence(&[&digest_algorithm, &octet_string(tag.as_ref())]);
    Ok(sequence(&[
        &digest_info,
        &octet_string(&salt),
        &integer(ITERATIONS),
    ]))
}

/// The PKCS#12 KDF (RFC 7292 B.2) with SHA-256, for one hash output of key
/// (all HMAC-SHA256 needs; the step that chains further blocks is left out).
fn pkcs12_kdf_sha256(id: u8, password: &[u8], salt: &[u8], rounds: u32) -> [u8; SHA256_LEN] {
    // S and P: salt and password each repeated to a whole number of blocks.
    let stretch = |input: &[u8]| -> Vec<u8> {
        let len = input.len().div_ceil(SHA256_BLOCK_LEN) * SHA256_BLOCK_LEN;
        input.iter().copied().cycle().take(len).collect()
    };
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(&[id; SHA256_BLOCK_LEN]);
    context.update(&stretch(salt));
    context.update(&stretch(password));
    let mut hash = context.finish();
    for _ in 1..rounds {
        hash = digest::digest(&digest::SHA256, hash.as_ref());
    }
    let mut out = [0u8; SHA256_LEN];
    out.copy_from_slice(hash.as_ref());
    out
}

fn iterations() -> NonZeroU32 {
    NonZeroU32::new(ITERATIONS).expect("ITERATIONS is a non-zero constant")
}

fn random<const N: usize>(rng: &SystemRandom) -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    rng.fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    Ok(bytes)
}

// === DER ===
//
// Definite lengths and the fewest length octets, as DER wants.

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    if content.len() < 0x80 {
        out.push(content.len() as u8);
    } else {
        let len = content.len().to_be_bytes();
        let skip = len.iter().take_while(|byte| **byte == 0).count();
        out.push(0x80 | (len.len() - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A SET OF, its elements in DER's order (by their encodings).
fn set(parts: &[&[u8]]) -> Vec<u8> {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    tlv(0x31, &sorted.concat())
}

fn explicit(tag_number: u8, content: &[u8]) -> Vec<u8> {
    tlv(0xa0 | tag_number, content)
}

fn octet_string(content: &[u8]) -> Vec<u8> {
    tlv(0x04, content)
}

fn object_id(encoded: &[u8]) -> Vec<u8> {
    tlv(0x06, encoded)
}

fn null() -> Vec<u8> {
    tlv(0x05, &[])
}

/// A non-negative INTEGER in the fewest octets.
fn integer(value: u32) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes[..3].iter().take_while(|byte| **byte == 0).count();
    let mut content = bytes[skip..].to_vec();
    // A set top bit would read as negative.
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    tlv(0x02, &content)
}

fn bmp_string(text: &str) -> Vec<u8> {
    let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    tlv(0x1e, &utf16)
}

#[cfg(test)]
mod tests;
