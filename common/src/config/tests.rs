use std::collections::HashMap;

use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    interval: String,
    name: Option<String>,
    nested: Nested,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Nested {
    limit: u32,
}

impl Default for Raw {
    fn default() -> Self {
        Raw {
            interval: "1s".to_owned(),
            name: None,
            nested: Nested::default(),
        }
    }
}

fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

#[test]
fn env_overrides_defaults_and_flags_override_env() {
    let raw: Raw = load(Sources {
        env_prefix: "RG_TEST",
        env: env(&[("RG_TEST__INTERVAL", "5s"), ("RG_TEST__NESTED__LIMIT", "7")]),
        ..Sources::default()
    })
    .expect("loads");
    assert_eq!(raw.interval, "5s");
    assert_eq!(raw.nested.limit, 7);

    let raw: Raw = load(Sources {
        env_prefix: "RG_TEST",
        env: env(&[("RG_TEST__INTERVAL", "5s")]),
        overrides: vec![("interval", "9s".to_owned()), ("name", "x".to_owned())],
        ..Sources::default()
    })
    .expect("loads");
    assert_eq!(raw.interval, "9s");
    assert_eq!(raw.name.as_deref(), Some("x"));
}

#[test]
fn unknown_env_key_is_named_in_the_error() {
    let err = load::<Raw>(Sources {
        env_prefix: "RG_TEST",
        env: env(&[("RG_TEST__INTERVL", "5s")]),
        ..Sources::default()
    })
    .expect_err("unknown key must fail");
    assert!(err.to_string().contains("intervl"), "{err}");
}

#[test]
fn durations_name_their_key() {
    assert_eq!(
        parse_duration("interval", "250ms").expect("parses"),
        Duration::from_millis(250)
    );
    let err = parse_duration("interval", "soon").expect_err("bad");
    assert!(err.to_string().contains("`interval`"), "{err}");
    let err = parse_positive_duration("timeout", "0s").expect_err("zero");
    assert!(err.to_string().contains("`timeout`"), "{err}");
}

#[test]
fn sizes_parse_with_binary_and_decimal_units() {
    for (text, bytes) in [
        ("65536", 65_536),
        ("4MiB", 4 << 20),
        (" 512 KiB ", 512 << 10),
        ("1gib", 1 << 30),
        ("2MB", 2_000_000),
        ("10kb", 10_000),
        ("7B", 7),
        ("0", 0),
    ] {
        assert_eq!(parse_bytes("size", text).expect(text), bytes, "{text}");
    }
    for bad in [
        "",
        "MiB",
        "4 MiBs",
        "-1MiB",
        "1.5MiB",
        "99999999999999GiB",
        "4 M",
    ] {
        let err = parse_bytes("resend_buffer", bad)
            .expect_err(bad)
            .to_string();
        assert!(err.contains("`resend_buffer`"), "{bad}: {err}");
    }
}
