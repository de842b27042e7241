//! Property tests of the parser (issue 9): no input makes it panic, and a
//! parsed scrape written back as exposition text parses to the same scrape.
//!
//! Inputs are arbitrary strings, and documents built from exposition-like
//! fragments (names, label sets with escapes, Go floats, timestamps, HELP,
//! TYPE and comment lines, blanks, carriage returns) so that most cases get
//! past the first token. The seed is random on each run (set
//! PROPTEST_RNG_SEED to replay one); a failure prints the smallest input it
//! found, which belongs in `no_panic` or `samples` as a regression case.

use std::fmt::Write as _;

use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;

use crate::exposition::{parse, parse_with_limits, Exposition, Limits, MetricType};

/// Few enough cases to run in about a second in a debug build; nothing is
/// written to disk (a failure is printed, not persisted).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// === fragments ===

/// Blanks where the grammar allows them, possibly none.
fn blanks() -> impl Strategy<Value = &'static str> {
    select(vec!["", "", " ", "  ", "\t", " \t"])
}

/// At least one blank, where a token must end.
fn separator() -> impl Strategy<Value = &'static str> {
    select(vec![" ", " ", "  ", "\t", " \t "])
}

/// Mostly a few shared names, so HELP, TYPE and samples meet in one family.
fn family_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec!["http_requests", "latency_seconds", "up", ":job:rate5m"])
            .prop_map(str::to_owned),
        1 => "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
    ]
}

fn sample_name() -> impl Strategy<Value = String> {
    (
        family_name(),
        select(vec!["", "", "_bucket", "_sum", "_count", "_total"]),
    )
        .prop_map(|(name, suffix)| name + suffix)
}

fn label_name() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec!["le", "quantile", "code", "method", "_"]).prop_map(str::to_owned),
        "[a-zA-Z_][a-zA-Z0-9_]{0,6}",
    ]
}

/// Label value or HELP text as written: escapes known and unknown, quotes,
/// delimiters and multi-byte chars. `clean` leaves out a lone backslash and
/// a bare quote, which would end or break a label value.
fn escaped_text(clean: bool) -> impl Strategy<Value = String> {
    let mut pieces = vec![
        "a", "0.5", "+Inf", " ", "\t", "\\\\", "\\\"", "\\n", "\\a", "\\é", "é", "日本", "}", ",",
        "=", "#", "{",
    ];
    if !clean {
        pieces.extend(["\\", "\"", "\r"]);
    }
    vec(select(pieces), 0..6).prop_map(|pieces| pieces.concat())
}

/// A sample value: every spelling Prometheus accepts, and in noisy documents
/// some it does not.
fn value(clean: bool) -> BoxedStrategy<String> {
    let mut spellings = vec![
        "NaN",
        "nan",
        "+Inf",
        "-Inf",
        "Inf",
        "inf",
        "+infinity",
        "-0",
        "0",
        "1e3",
        "1.5E-7",
        ".5",
        "5.",
        "+1",
        "-2.5e+10",
    ];
    if !clean {
        spellings.extend([
            "-NaN", "+nan", "0x10", "1_000", "1e", "--1", "", "{", "\"1\"",
        ]);
    }
    prop_oneof![
        select(spellings).prop_map(str::to_owned),
        any::<f64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:e}")),
        any::<i64>().prop_map(|v| v.to_string()),
    ]
    .boxed()
}

/// The optional timestamp, with its leading blank; noisy ones may be floats,
/// out of range or trailed by more text.
fn timestamp(clean: bool) -> BoxedStrategy<String> {
    let some = (separator(), any::<i64>()).prop_map(|(sep, ts)| format!("{sep}{ts}"));
    if clean {
        return prop_oneof![Just(String::new()), some].boxed();
    }
    prop_oneof![
        Just(String::new()),
        some,
        (
            separator(),
            select(vec!["+5", "1.5", "9223372036854775808", "abc", "1 2"])
        )
            .prop_map(|(sep, ts)| format!("{sep}{ts}")),
    ]
    .boxed()
}

/// `{name="value",...}` with blanks and an optional trailing comma. Clean
/// label sets have distinct names; noisy ones may repeat one.
fn label_set(clean: bool) -> BoxedStrategy<String> {
    let names: BoxedStrategy<Vec<String>> = if clean {
        btree_set(label_name(), 0..4)
            .prop_map(|names| names.into_iter().collect())
            .boxed()
    } else {
        vec(label_name(), 0..5).boxed()
    };
    let pair = (blanks(), blanks(), blanks(), escaped_text(clean));
    (names, vec(pair, 4), any::<bool>(), blanks())
        .prop_map(|(names, pairs, trailing_comma, end)| {
            let mut out = String::from("{");
            for (idx, (name, (b1, b2, b3, text))) in names.iter().zip(pairs).enumerate() {
                if idx > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{b1}{name}{b2}={b3}\"{text}\"");
            }
            if trailing_comma && !names.is_empty() {
                out.push(',');
            }
            out.push_str(end);
            out.push('}');
            out
        })
        .boxed()
}

/// `name[{labels}] value [timestamp]`, with blanks around every token.
fn sample_line(clean: bool) -> impl Strategy<Value = String> {
    (
        blanks(),
        sample_name(),
        prop::option::of((blanks(), label_set(clean))),
        separator(),
        value(clean),
        timestamp(clean),
        blanks(),
    )
        .prop_map(|(lead, name, labels, sep, value, ts, tail)| {
            let labels = labels.map(|(b, set)| format!("{b}{set}"));
            format!(
                "{lead}{name}{}{sep}{value}{ts}{tail}",
                labels.unwrap_or_default()
            )
        })
}

fn help_line(clean: bool) -> impl Strategy<Value = String> {
    (family_name(), separator(), escaped_text(clean))
        .prop_map(|(name, sep, text)| format!("# HELP {name}{sep}{text}"))
}

fn type_line(clean: bool) -> impl Strategy<Value = String> {
    let mut types = vec!["counter", "gauge", "histogram", "summary", "untyped"];
    if !clean {
        types.extend(["", "Counter", "bogus", "gauge\r"]);
    }
    (family_name(), separator(), select(types), blanks())
        .prop_map(|(name, sep, kind, tail)| format!("# TYPE {name}{sep}{kind}{tail}"))
}

/// One line of a document: mostly samples, some metadata, comments and
/// blank lines; noisy documents add garbage and carriage returns.
fn line(clean: bool) -> BoxedStrategy<String> {
    let comment = "[a-z ]{0,12}".prop_map(|text| format!("#{text}"));
    let blank = blanks().prop_map(str::to_owned);
    if clean {
        return prop_oneof![
            8 => sample_line(true),
            2 => help_line(true),
            2 => type_line(true),
            1 => comment,
            1 => blank,
        ]
        .boxed();
    }
    prop_oneof![
        8 => sample_line(false),
        2 => help_line(false),
        2 => type_line(false),
        1 => comment,
        1 => blank,
        1 => "[^\n]{0,24}",
        1 => "[ -~\t\r]{0,24}",
        1 => sample_line(true).prop_map(|line| line + "\r"),
        1 => select(vec!["# HELP", "# TYPE", "# HELP 9x", "# TYPE x", "#", "{", "x{", "x 1 2 3"])
            .prop_map(str::to_owned),
    ]
    .boxed()
}

/// A scrape body: lines joined by `\n`, with or without a final newline.
fn document(clean: bool) -> impl Strategy<Value = String> {
    (vec(line(clean), 0..16), any::<bool>()).prop_map(|(lines, final_newline)| {
        let mut body = lines.join("\n");
        if final_newline {
            body.push('\n');
        }
        body
    })
}

// === checks ===

/// Parses `text`: an error must name a line of it; a panic fails the case.
fn parses_or_errs(text: &str) -> Result<(), TestCaseError> {
    if let Err(err) = parse(text) {
        let n_lines = text.split('\n').count();
        prop_assert!(
            err.line >= 1 && err.line <= n_lines,
            "error {err} outside the {n_lines} line(s)"
        );
    }
    Ok(())
}

/// Writes `exposition` back as exposition text: per family a TYPE line (so
/// each family starts where it did), its HELP, then its samples.
fn to_text(exposition: &Exposition<'_>) -> String {
    let escape = |text: &str, quotes: bool| {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '"' if quotes => out.push_str("\\\""),
                c => out.push(c),
            }
        }
        out
    };
    let mut out = String::new();
    for family in &exposition.families {
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.metric_type);
        if let Some(help) = &family.help {
            let _ = writeln!(out, "# HELP {} {}", family.name, escape(help, false));
        }
        for sample in &family.samples {
            out.push_str(sample.name);
            if !sample.labels.is_empty() {
                let labels: Vec<String> = sample
                    .labels
                    .iter()
                    .map(|label| format!("{}=\"{}\"", label.name, escape(&label.value, true)))
                    .collect();
                let _ = write!(out, "{{{}}}", labels.join(","));
            }
            let value = sample.value;
            let value = if value.is_nan() {
                "NaN".to_owned()
            } else if value.is_infinite() {
                if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
            } else {
                // Display gives the shortest digits that read back exactly.
                value.to_string()
            };
            let _ = write!(out, " {value}");
            if let Some(ts) = sample.timestamp_ms {
                let _ = write!(out, " {ts}");
            }
            out.push('\n');
        }
    }
    out
}

/// A family as compared: name, help, type, and samples with NaN made
/// comparable (every NaN reads as the same value).
type FamilyKey = (String, Option<String>, MetricType, Vec<SampleKey>);
type SampleKey = (String, Vec<(String, String)>, u64, Option<i64>);

fn comparable(exposition: &Exposition<'_>) -> Vec<FamilyKey> {
    exposition
        .families
        .iter()
        .map(|family| {
            let samples = family
                .samples
                .iter()
                .map(|sample| {
                    let labels = sample
                        .labels
                        .iter()
                        .map(|label| (label.name.to_owned(), label.value.to_string()))
                        .collect();
                    let value = if sample.value.is_nan() {
                        f64::NAN
                    } else {
                        sample.value
                    };
                    (
                        sample.name.to_owned(),
                        labels,
                        value.to_bits(),
                        sample.timestamp_ms,
                    )
                })
                .collect();
            (
                family.name.to_owned(),
                family.help.as_deref().map(str::to_owned),
                family.metric_type,
                samples,
            )
        })
        .collect()
}

/// A parsed `text`, written back and parsed again, is the same scrape.
fn round_trips(text: &str) -> Result<(), TestCaseError> {
    let Ok(parsed) = parse(text) else {
        return Ok(());
    };
    let written = to_text(&parsed);
    let reparsed = parse(&written)
        .map_err(|err| TestCaseError::fail(format!("{err} in the rewritten\n{written}")))?;
    prop_assert_eq!(
        comparable(&parsed),
        comparable(&reparsed),
        "rewritten as\n{}",
        written
    );
    Ok(())
}

// === properties ===

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_string_parses_or_errs(text in any::<String>()) {
        parses_or_errs(&text)?;
    }

    #[test]
    fn ascii_soup_parses_or_errs(text in "[ -~\t\r\n]{0,80}") {
        parses_or_errs(&text)?;
    }

    #[test]
    fn any_bytes_parse_or_err(bytes in vec(any::<u8>(), 0..80)) {
        parses_or_errs(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn exposition_like_documents_parse_or_err(text in document(false)) {
        parses_or_errs(&text)?;
        round_trips(&text)?;
    }

    #[test]
    fn well_formed_documents_round_trip(text in document(true)) {
        // Clean fragments are all valid, so every case reaches the round trip.
        prop_assert!(parse(&text).is_ok(), "{:?} fails: {:?}", text, parse(&text).err());
        round_trips(&text)?;
    }

    #[test]
    fn limits_hold_on_any_document(text in document(false)) {
        let limits = Limits { max_lines: 4, max_labels_per_sample: 2 };
        if let Ok(parsed) = parse_with_limits(&text, &limits) {
            prop_assert!(text.split_terminator('\n').count() <= limits.max_lines);
            prop_assert!(parsed.samples().all(|sample| sample.labels.len() <= 2));
        }
    }
}
