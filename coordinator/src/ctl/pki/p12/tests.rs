//! The DER writer, the PKCS#12 KDF against OpenSSL's, and how the password
//! file is read. That `openssl pkcs12` reads a whole bundle back is tested
//! in `pki/tests.rs`, through the real flags.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[track_caller]
fn check_der(encoded: Vec<u8>, expected_hex: &str) {
    assert_eq!(hex(&encoded), expected_hex);
}

#[test]
fn integers_take_the_fewest_octets_and_stay_positive() {
    check_der(integer(0), "020100");
    check_der(integer(3), "020103");
    check_der(integer(127), "02017f");
    check_der(integer(128), "02020080");
    check_der(integer(100_000), "02030186a0");
    check_der(integer(u32::MAX), "020500ffffffff");
}

#[test]
fn lengths_past_127_take_the_long_form() {
    check_der(octet_string(&[]), "0400");
    check_der(octet_string(&[0xab; 3]), "0403ababab");
    assert_eq!(&octet_string(&[0; 127])[..2], &[0x04, 0x7f]);
    assert_eq!(&octet_string(&[0; 128])[..3], &[0x04, 0x81, 0x80]);
    assert_eq!(&octet_string(&[0; 300])[..4], &[0x04, 0x82, 0x01, 0x2c]);
    assert_eq!(octet_string(&[0; 300]).len(), 304);
}

#[test]
fn strings_sets_and_tags() {
    check_der(bmp_string("ab"), "1e0400610062");
    check_der(null(), "0500");
    check_der(explicit(0, &null()), "a0020500");
    // A SET OF is sorted by encoding, whatever order it was given in.
    check_der(set(&[&integer(2), &integer(1)]), "3106020101020102");
    check_der(object_id(oid::SHA256), "0609608648016503040201");
}

#[test]
fn the_mac_password_is_a_terminated_bmp_string() {
    assert_eq!(
        hex(&Password::for_test("hunter2").bmp_string()),
        "00680075006e00740065007200320000"
    );
    assert_eq!(hex(&Password::for_test("ö").bmp_string()), "00f60000");
}

/// Expected values from `openssl kdf -keylen 32 -kdfopt digest:SHA256
/// -kdfopt hexpass:BMP -kdfopt hexsalt:SALT -kdfopt iter:N -kdfopt id:3
/// PKCS12KDF` (OpenSSL 3.0).
#[track_caller]
fn check_kdf(password: &str, salt: &[u8], rounds: u32, expected_hex: &str) {
    let bmp = Password::for_test(password).bmp_string();
    let key = pkcs12_kdf_sha256(KDF_ID_MAC, &bmp, salt, rounds);
    assert_eq!(hex(&key), expected_hex.to_lowercase().replace(':', ""));
}

#[test]
fn the_pkcs12_kdf_agrees_with_openssl() {
    check_kdf(
        "hunter2",
        &[0, 1, 2, 3, 4, 5, 6, 7],
        1000,
        "6E:79:9D:E5:17:EF:EE:DA:72:C0:B1:30:A8:4C:0F:5F:0F:A6:19:B4:D5:57:D4:AE:7C:E0:8D:E1:F5:24:C6:A8",
    );
    // A password longer than a block, not ASCII, and a 16-byte salt.
    check_kdf(
        "passwörd-that-is-longer-than-one-block-of-sixty-four-bytes",
        &[
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ],
        3,
        "2D:39:08:36:6B:CE:01:EC:63:83:F4:7E:B4:60:BC:38:78:88:59:57:1D:1F:20:F6:BB:AB:E0:D5:D1:9E:00:85",
    );
}

/// A file of this test's own holding `contents`, with `mode`.
fn password_file(name: &str, contents: &str, mode: u32) -> PathBuf {
    let path = std::env::temp_dir().join(format!("rollguard-p12-{name}-{}", std::process::id()));
    fs::write(&path, contents).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[track_caller]
fn check_password(contents: &str, expected: &str) {
    let path = password_file("read", contents, 0o600);
    let password = Password::read(&path).unwrap();
    fs::remove_file(&path).unwrap();
    assert_eq!(password.0, expected);
}

#[test]
fn the_password_is_the_first_line_without_its_ending() {
    check_password("s3cret\n", "s3cret");
    check_password("s3cret", "s3cret");
    check_password("s3cret\r\nsecond line\n", "s3cret");
    check_password(" spaced out \n", " spaced out ");
}

#[track_caller]
fn check_password_refused(path: &Path, expected: &str) {
    let err = format!("{:#}", Password::read(path).unwrap_err());
    assert!(err.contains(PASSWORD_FLAG), "{err}");
    assert!(err.contains(expected), "{err}");
}

#[test]
fn an_empty_password_or_a_missing_file_is_refused_by_name() {
    for (name, contents) in [("empty", ""), ("newline", "\n"), ("blank", "\nsecond\n")] {
        let path = password_file(name, contents, 0o600);
        check_password_refused(&path, "empty first line");
        fs::remove_file(&path).unwrap();
    }
    let missing = std::env::temp_dir().join("rollguard-p12-no-such-file");
    check_password_refused(&missing, "No such file");
}

#[test]
fn the_password_is_never_printed_by_debug() {
    assert_eq!(
        format!("{:?}", Password::for_test("hunter2")),
        "Password(..)"
    );
}
