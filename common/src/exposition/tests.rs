use std::fmt::Write as _;

use super::*;

mod properties;

const NODE_EXPORTER: &str = include_str!("../../tests/fixtures/node_exporter-1.5.0.prom");
const PROMETHEUS: &str = include_str!("../../tests/fixtures/prometheus-2.42.0.prom");

fn selector(text: &str) -> Selector {
    Selector::parse(text).expect("test selector parses")
}

fn matchers(selector_text: &str) -> Vec<LabelMatcher> {
    selector(selector_text).matchers
}

#[track_caller]
fn assert_close(got: f64, expected: f64) {
    let tolerance = 1e-9 * expected.abs().max(1.0);
    assert!(
        (got - expected).abs() <= tolerance,
        "got {got}, expected {expected}"
    );
}

/// Renders a scrape as `# name type help` headers and `name{labels} value ts`
/// lines, with `{:?}` for strings and floats so escapes and NaN are visible.
fn render(exposition: &Exposition<'_>) -> String {
    let mut out = String::new();
    for family in &exposition.families {
        let help = family.help.as_deref().map(|help| format!(" {help:?}"));
        let _ = writeln!(
            out,
            "# {} {}{}",
            family.name,
            family.metric_type,
            help.unwrap_or_default()
        );
        for sample in &family.samples {
            out.push_str(sample.name);
            if !sample.labels.is_empty() {
                let labels: Vec<String> = sample
                    .labels
                    .iter()
                    .map(|label| format!("{}={:?}", label.name, label.value))
                    .collect();
                let _ = write!(out, "{{{}}}", labels.join(","));
            }
            let _ = write!(out, " {:?}", sample.value);
            if let Some(timestamp_ms) = sample.timestamp_ms {
                let _ = write!(out, " {timestamp_ms}");
            }
            out.push('\n');
        }
    }
    out
}

mod fixtures {
    use super::*;

    #[test]
    fn node_exporter_parses_fully() {
        let exposition = parse(NODE_EXPORTER).expect("fixture parses");
        // One family per HELP/TYPE pair in the file.
        assert_eq!(exposition.families.len(), 283);
        assert_eq!(exposition.samples().count(), 507);
        assert!(exposition
            .families
            .iter()
            .all(|family| family.help.is_some()));

        let gc = exposition
            .family("go_gc_duration_seconds")
            .expect("gc family");
        assert_eq!(gc.metric_type, MetricType::Summary);
        assert_eq!(
            gc.help.as_deref(),
            Some("A summary of the pause duration of garbage collection cycles.")
        );
        // Five quantiles plus _sum and _count.
        assert_eq!(gc.samples.len(), 7);
        assert_eq!(gc.samples[6].name, "go_gc_duration_seconds_count");

        let uname = exposition.family("node_uname_info").expect("uname family");
        assert_eq!(uname.samples[0].label("domainname"), Some("(none)"));
        assert_eq!(
            uname.samples[0].label("version"),
            Some("#1 SMP PREEMPT_DYNAMIC @0")
        );

        assert_eq!(gauge(&exposition, &selector("node_load1")), Some(0.01));
        assert_eq!(
            gauge(&exposition, &selector("process_start_time_seconds")),
            Some(1.79581957995e9)
        );
        assert_close(
            sum_counter(
                &exposition,
                &selector(r#"node_cpu_seconds_total{mode="idle"}"#),
            )
            .expect("idle cpu"),
            457.54 + 444.76,
        );
        assert_eq!(
            sum_counter(
                &exposition,
                &selector(r#"node_network_receive_bytes_total{device=~"eth.*"}"#),
            ),
            Some(6.3680998e7)
        );
        assert_eq!(
            exposition
                .select(&selector("node_cpu_seconds_total"))
                .count(),
            16
        );
    }

    #[test]
    fn prometheus_parses_fully() {
        let exposition = parse(PROMETHEUS).expect("fixture parses");
        assert_eq!(exposition.families.len(), 169);
        assert_eq!(exposition.samples().count(), 355);

        let histograms = exposition
            .families
            .iter()
            .filter(|family| family.metric_type == MetricType::Histogram)
            .count();
        assert_eq!(histograms, 7);
        let durations = exposition
            .family("prometheus_http_request_duration_seconds")
            .expect("duration family");
        // Two handlers, each 10 buckets plus _sum and _count.
        assert_eq!(durations.samples.len(), 24);

        let build = exposition
            .family("prometheus_build_info")
            .expect("build info");
        assert_eq!(
            build.samples[0].label("revision"),
            Some("2.42.0+ds-5+deb12u1")
        );
        assert_eq!(gauge(&exposition, &selector("go_goroutines")), Some(31.0));

        let nan = exposition
            .select(&selector(
                r#"prometheus_engine_query_duration_seconds{slice="result_sort",quantile="0.5"}"#,
            ))
            .next()
            .expect("summary quantile");
        assert!(nan.value.is_nan());
    }

    #[test]
    fn prometheus_counters() {
        let exposition = parse(PROMETHEUS).expect("fixture parses");
        let check = |text: &str, expected: Option<f64>| {
            assert_eq!(
                sum_counter(&exposition, &selector(text)),
                expected,
                "{text}"
            );
        };
        check("prometheus_http_requests_total", Some(13.0));
        check(
            r#"prometheus_http_requests_total{handler="/metrics"}"#,
            Some(8.0),
        );
        check(r#"prometheus_http_requests_total{code=~"5.."}"#, None);
        check(
            r#"promhttp_metric_handler_requests_total{code=~"5.."}"#,
            Some(0.0),
        );
        check(
            r#"promhttp_metric_handler_requests_total{code!~"5.."}"#,
            Some(8.0),
        );
        check("no_such_metric_total", None);
    }

    #[test]
    fn prometheus_duration_histogram() {
        let exposition = parse(PROMETHEUS).expect("fixture parses");
        let bounds = [
            0.1,
            0.2,
            0.4,
            1.0,
            3.0,
            8.0,
            20.0,
            60.0,
            120.0,
            f64::INFINITY,
        ];

        let metrics = histogram(
            &exposition,
            "prometheus_http_request_duration_seconds",
            &matchers(r#"x{handler="/metrics"}"#),
        )
        .expect("histogram for /metrics");
        let expected: Vec<(f64, f64)> = bounds.iter().map(|&bound| (bound, 8.0)).collect();
        assert_eq!(metrics.buckets, expected);
        assert_eq!(metrics.count, 8.0);
        assert_eq!(metrics.sum, 0.017157019000000003);
        // Every observation is in the first bucket: interpolate from 0 to 0.1.
        assert_close(metrics.quantile(0.5).expect("p50"), 0.05);
        assert_close(metrics.quantile(0.99).expect("p99"), 0.099);

        let all = histogram(&exposition, "prometheus_http_request_duration_seconds", &[])
            .expect("histogram over all handlers");
        let expected: Vec<(f64, f64)> = bounds.iter().map(|&bound| (bound, 13.0)).collect();
        assert_eq!(all.buckets, expected);
        assert_eq!(all.count, 13.0);
        assert_eq!(all.sum, 0.003684054 + 0.017157019000000003);

        let none = histogram(
            &exposition,
            "prometheus_http_request_duration_seconds",
            &matchers(r#"x{handler="/nope"}"#),
        );
        assert_eq!(none, None);
    }

    #[test]
    fn prometheus_size_histogram_quantiles() {
        let exposition = parse(PROMETHEUS).expect("fixture parses");
        let metrics = histogram(
            &exposition,
            "prometheus_http_response_size_bytes",
            &matchers(r#"x{handler=~"/met.*"}"#),
        )
        .expect("histogram for /metrics");
        assert_eq!(
            &metrics.buckets[..4],
            &[(100.0, 0.0), (1000.0, 0.0), (10000.0, 3.0), (100000.0, 8.0)]
        );
        // `le="1e+06"` and friends parse as floats.
        assert_eq!(metrics.buckets[4], (1e6, 8.0));
        assert_eq!(metrics.sum, 253317.0);
        // Rank 4 of 8 lies 1/5 into (10000, 100000].
        assert_close(metrics.quantile(0.5).expect("p50"), 28000.0);
        assert_close(metrics.quantile(0.9).expect("p90"), 85600.0);

        let all = histogram(&exposition, "prometheus_http_response_size_bytes", &[])
            .expect("histogram over all handlers");
        // Summed by `le`: 0, 5, 8, 13, ... 13; rank 6.5 lies half into (1000, 10000].
        assert_close(all.quantile(0.5).expect("p50"), 5500.0);
    }

    #[test]
    fn every_line_boundary_prefix_parses() {
        for text in [NODE_EXPORTER, PROMETHEUS] {
            let full = parse(text).expect("fixture parses").samples().count();
            let mut previous = 0;
            for (idx, _) in text.match_indices('\n') {
                let count = parse(&text[..idx])
                    .unwrap_or_else(|err| panic!("prefix up to byte {idx}: {err}"))
                    .samples()
                    .count();
                assert!(count >= previous && count <= full);
                previous = count;
            }
            assert_eq!(previous, full);
        }
    }
}

mod samples {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: &str) {
        let exposition = parse(text).unwrap_or_else(|err| panic!("{text:?}: {err}"));
        assert_eq!(render(&exposition), expected, "input: {text:?}");
    }

    #[test]
    fn values() {
        check("a 1", "# a untyped\na 1.0\n");
        check(
            "a +Inf\na -Inf\na NaN",
            "# a untyped\na inf\na -inf\na NaN\n",
        );
        check(
            "a Inf\na -inf\na nan\na +infinity",
            "# a untyped\na inf\na -inf\na NaN\na inf\n",
        );
        check(
            "a 1e3\na -1.5E-3\na .5\na 5.\na +2",
            "# a untyped\na 1000.0\na -0.0015\na 0.5\na 5.0\na 2.0\n",
        );
        check(
            "a 1.7976931348623157e308",
            "# a untyped\na 1.7976931348623157e308\n",
        );
        check("a 1e999", "# a untyped\na inf\n");
    }

    #[test]
    fn timestamps() {
        check("a 1 1700000000000", "# a untyped\na 1.0 1700000000000\n");
        check("a 1 -5\t", "# a untyped\na 1.0 -5\n");
        check("a{b=\"c\"} 2 0", "# a untyped\na{b=\"c\"} 2.0 0\n");
    }

    #[test]
    fn escaped_label_values() {
        check(
            r#"a{a="x\"y\\z\nw"} 1"#,
            "# a untyped\na{a=\"x\\\"y\\\\z\\nw\"} 1.0\n",
        );
        // Unknown escapes stay verbatim, as in Prometheus.
        check(r#"a{a="\t\é"} 1"#, "# a untyped\na{a=\"\\\\t\\\\é\"} 1.0\n");
        check(r#"a{a="\\"} 1"#, "# a untyped\na{a=\"\\\\\"} 1.0\n");
        // Delimiters inside quotes are data.
        check(
            r#"a{a="},= #{",b=""} 1"#,
            "# a untyped\na{a=\"},= #{\",b=\"\"} 1.0\n",
        );
        check(r#"a{a="日本"} 1"#, "# a untyped\na{a=\"日本\"} 1.0\n");
    }

    #[test]
    fn whitespace_and_commas() {
        check(
            "  a  {  x = \"1\" , y=\"2\" ,  }   3   ",
            "# a untyped\na{x=\"1\",y=\"2\"} 3.0\n",
        );
        check("a\t{x=\"1\"}\t4", "# a untyped\na{x=\"1\"} 4.0\n");
        check(
            "a{} 1\na{x=\"1\",} 2",
            "# a untyped\na 1.0\na{x=\"1\"} 2.0\n",
        );
        // Like Prometheus, no blank is needed before the value.
        check("a{x=\"1\"}2", "# a untyped\na{x=\"1\"} 2.0\n");
        check(
            "ns:a_b:rate5m 1",
            "# ns:a_b:rate5m untyped\nns:a_b:rate5m 1.0\n",
        );
        check("_a{_b=\"1\"} 1", "# _a untyped\n_a{_b=\"1\"} 1.0\n");
    }

    #[test]
    fn comments_and_blank_lines() {
        check("", "");
        check("\n\n  \n\t\n", "");
        check("# just a comment\n#no space\n# HELP\n# TYPE\n#", "");
        check(
            "a 1\n\n# other\nb 2\n",
            "# a untyped\na 1.0\n# b untyped\nb 2.0\n",
        );
    }

    #[test]
    fn help_and_type() {
        check(
            "# HELP a Some \\\\ text\\nmore \\\"q\\\"\n# TYPE a counter\na 1",
            "# a counter \"Some \\\\ text\\nmore \\\\\\\"q\\\\\\\"\"\na 1.0\n",
        );
        check(
            "# TYPE a gauge\n# HELP a\ta  b \na 1",
            "# a gauge \"a  b \"\na 1.0\n",
        );
        check("# HELP a\n# TYPE a  summary  \n", "# a summary \"\"\n");
        check("#\tTYPE\ta\tuntyped\na 1", "# a untyped\na 1.0\n");
    }

    #[test]
    fn family_grouping() {
        check(
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\nh_total 1",
            "# h histogram\nh_bucket{le=\"1\"} 1.0\nh_bucket{le=\"+Inf\"} 2.0\nh_sum 3.0\nh_count 2.0\n\
             # h_total untyped\nh_total 1.0\n",
        );
        check(
            "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 3\ns_count 2\ns_bucket 1",
            "# s summary\ns{quantile=\"0.5\"} 1.0\ns_sum 3.0\ns_count 2.0\n# s_bucket untyped\ns_bucket 1.0\n",
        );
        // A counter family does not swallow `_count`-like names.
        check(
            "# TYPE c counter\nc 1\nc_count 2",
            "# c counter\nc 1.0\n# c_count untyped\nc_count 2.0\n",
        );
        // Metadata after samples, or repeated, starts a new family.
        check(
            "a 1\n# TYPE a gauge\na 2\n# TYPE a counter\n",
            "# a untyped\na 1.0\n# a gauge\na 2.0\n# a counter\n",
        );
        check(
            "# HELP a x\n# HELP b y\n",
            "# a untyped \"x\"\n# b untyped \"y\"\n",
        );
    }
}

mod errors {
    use super::*;

    /// Parses `bad_line` as line 3 of a scrape and expects it to be rejected.
    #[track_caller]
    fn check(bad_line: &str, expected: ParseErrorKind) {
        let text = format!("# HELP ok fine\nok 1\n{bad_line}\nok 2\n");
        let err = parse(&text).expect_err(bad_line);
        assert_eq!(
            err,
            ParseError {
                line: 3,
                kind: expected
            },
            "input: {bad_line:?}"
        );
    }

    #[test]
    fn malformed_lines() {
        use ParseErrorKind::*;
        check(r#"a{x="abc} 1"#, UnterminatedLabelValue);
        check(r#"a{x="abc\"} 1"#, UnterminatedLabelValue);
        check(r#"a{x="abc\"#, UnterminatedLabelValue);
        check(r#"a{x=""#, UnterminatedLabelValue);
        check(r#"a{x="1"}"#, MissingValue);
        check("a", MissingValue);
        check("a  \t", MissingValue);
        check("a 1.2.3", InvalidValue);
        check("a 0x10", InvalidValue);
        check("a 0x1p4", InvalidValue);
        check("a 1_000", InvalidValue);
        check("a +NaN", InvalidValue);
        check("a -nan", InvalidValue);
        check("a 1{", InvalidValue);
        check("a{x} 1", ExpectedEquals);
        check(r#"a{x "1"} 1"#, ExpectedEquals);
        check(r#"a{x:y="1"} 1"#, ExpectedEquals);
        check(r#"a{="1"} 1"#, ExpectedLabelName);
        check("a{,} 1", ExpectedLabelName);
        check(r#"a{1x="1"} 1"#, ExpectedLabelName);
        check("a{", ExpectedLabelName);
        check("a{x=1} 1", ExpectedLabelValue);
        check("a{x=} 1", ExpectedLabelValue);
        check(r#"a{x="1" y="2"} 1"#, ExpectedCommaOrBrace);
        check(r#"a{x="1""#, ExpectedCommaOrBrace);
        check(r#"a{x="1",x="2"} 1"#, DuplicateLabel);
        check("a 1 abc", InvalidTimestamp);
        check("a 1 1.5", InvalidTimestamp);
        check("a 1 99999999999999999999", InvalidTimestamp);
        check("a 1 2 3", TrailingCharacters);
        check("1a 1", ExpectedMetricName);
        check(r#"{a="1"} 1"#, ExpectedMetricName);
        check("\u{0}\u{1}\u{7f}", ExpectedMetricName);
        check("\u{fffd}\u{fffd}garbage", ExpectedMetricName);
        check("a 1\r", CarriageReturn);
        check("\r", CarriageReturn);
        check("# TYPE a countr", InvalidMetricType);
        check("# TYPE a", InvalidMetricType);
        check("# TYPE a counter gauge", InvalidMetricType);
        check("# TYPE a Counter", InvalidMetricType);
        check("# HELP 1a x", ExpectedMetricName);
        check("# TYPE a{} counter", ExpectedMetricName);
        check("# HELP  ", ExpectedMetricName);
    }

    #[test]
    fn reports_first_bad_line() {
        let err = parse("a 1\n\n# x\nb{c} 1\nd\n").expect_err("bad line 4");
        assert_eq!(err.line, 4);
        assert_eq!(err.to_string(), "line 4: expected '=' after label name");
        let err = parse("x 1\ny\n").expect_err("bad line 2");
        assert_eq!(err.to_string(), "line 2: expected sample value");
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_lines: 3,
            max_labels_per_sample: 2,
        };
        assert!(parse_with_limits("a 1\nb 2\nc 3\n", &limits).is_ok());
        assert_eq!(
            parse_with_limits("a 1\nb 2\nc 3\n\n", &limits),
            Err(ParseError {
                line: 4,
                kind: ParseErrorKind::TooManyLines { max: 3 }
            })
        );
        assert!(parse_with_limits(r#"a{x="1",y="2"} 1"#, &limits).is_ok());
        let err = parse_with_limits(r#"a{x="1",y="2",z="3"} 1"#, &limits).expect_err("3 labels");
        assert_eq!(err.kind, ParseErrorKind::TooManyLabels { max: 2 });
        assert_eq!(err.to_string(), "line 1: more than 2 labels");
    }
}

mod no_panic {
    use super::*;

    /// Parses `text`; errors are fine, panics and out-of-range lines are not.
    fn survive(text: &str) {
        if let Err(err) = parse(text) {
            assert!(err.line >= 1 && err.line <= text.split('\n').count());
        }
    }

    #[test]
    fn truncated_fixtures() {
        for text in [NODE_EXPORTER, PROMETHEUS] {
            let boundaries: Vec<usize> = text.char_indices().map(|(idx, _)| idx).collect();
            let step = (boundaries.len() / 1000).max(1);
            for &idx in boundaries.iter().step_by(step) {
                survive(&text[..idx]);
            }
        }
        // Every prefix of a line full of escapes and delimiters.
        let tricky = "# HELP é a\\\\b\\n\\\"\n# TYPE é counter\nx{a=\"\\\"}{,=\\\\\\né\",b=\"\"\t,} -Inf 17\n";
        for (idx, _) in tricky.char_indices() {
            survive(&tricky[..idx]);
        }
    }

    #[test]
    fn mutated_fixture() {
        // Deterministic xorshift, so a failure reproduces.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let specials = b"{}=,\"\\# \t\n\r+-.eE0x";
        let base = PROMETHEUS.as_bytes();
        for _ in 0..2000 {
            let mut bytes = base[..4096].to_vec();
            for _ in 0..4 {
                let pos = (next() % bytes.len() as u64) as usize;
                bytes[pos] = if next() % 2 == 0 {
                    specials[(next() % specials.len() as u64) as usize]
                } else {
                    (next() % 256) as u8
                };
            }
            survive(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn hostile_inputs() {
        survive(&"\u{0}".repeat(10_000));
        survive(&"a".repeat(100_000));
        survive(&format!("a{{b=\"{}", "\\".repeat(100_001)));
        survive(&format!("a{{b=\"{}\"}} 1", "\\\"".repeat(50_000)));
        survive(&"{".repeat(10_000));
        survive(&"#".repeat(10_000));
        survive(&"\n".repeat(300_000));
        let many_labels: String = (0..1000).map(|idx| format!("l{idx}=\"v\",")).collect();
        assert_eq!(
            parse(&format!("a{{{many_labels}}} 1")).map_err(|err| err.kind),
            Err(ParseErrorKind::TooManyLabels { max: 64 })
        );
        let many_lines = "a 1\n".repeat(200_001);
        assert_eq!(
            parse(&many_lines).map_err(|err| err.kind),
            Err(ParseErrorKind::TooManyLines { max: 200_000 })
        );
    }
}

mod matchers {
    use super::*;

    /// Checks whether `value` satisfies `label=~"pattern"`, and that `!~`
    /// gives the opposite.
    #[track_caller]
    fn check(pattern: &str, value: &str, expected: bool) {
        let matcher = LabelMatcher::new("l", MatchOp::RegexMatch, pattern).expect(pattern);
        assert_eq!(matcher.matches(value), expected, "{pattern:?} on {value:?}");
        let negated = LabelMatcher::new("l", MatchOp::RegexNoMatch, pattern).expect(pattern);
        assert_eq!(
            negated.matches(value),
            !expected,
            "!~ {pattern:?} on {value:?}"
        );
    }

    #[test]
    fn regex_subset() {
        check("5..", "500", true);
        check("5..", "503", true);
        check("5..", "200", false);
        check("5..", "5000", false);
        check("5..", "50", false);
        check("5.*", "5", true);
        check("5.*", "", false);
        check(".*", "", true);
        check(".*", "line\nbreak", true);
        check(".+", "", false);
        check(".+", "x", true);
        check("[45]..", "404", true);
        check("[45]..", "504", true);
        check("[45]..", "304", false);
        check("[0-9]+", "123", true);
        check("[0-9]+", "12a", false);
        check("[0-9]+", "", false);
        check("[^5]..", "404", true);
        check("[^5]..", "500", false);
        check("[a-zA-Z_]+[0-9]?", "get_x9", true);
        check("[a-]", "-", true);
        check("[]a]", "]", true);
        check(r"[\]]", "]", true);
        check("2..|3..", "302", true);
        check("2..|3..", "402", false);
        check("GET|POST", "POST", true);
        check("GET|POST", "GETPOST", false);
        check("a|", "", true);
        check("/api/v1/.*", "/api/v1/query", true);
        check("/api/v1/.*", "/api/v2/query", false);
        check(r"a\.b", "a.b", true);
        check(r"a\.b", "axb", false);
        check("a?b", "b", true);
        check("a?b", "ab", true);
        check("a?b", "aab", false);
        check("é.", "éa", true);
        check("", "", true);
        check("", "x", false);
        // No backtracking blow-up.
        check(&"a*".repeat(60), &"a".repeat(10_000), true);
        check(&format!("{}b", "a*".repeat(60)), &"a".repeat(10_000), false);
    }

    #[test]
    fn equality_and_missing_labels() {
        let exposition = parse("m{a=\"1\"} 1\nm{a=\"2\",b=\"x\"} 2\nm 4").expect("parses");
        let check = |text: &str, expected: Option<f64>| {
            assert_eq!(
                sum_counter(&exposition, &selector(text)),
                expected,
                "{text}"
            );
        };
        check("m", Some(7.0));
        check(r#"m{a="1"}"#, Some(1.0));
        check(r#"m{a!="1"}"#, Some(6.0));
        // As in PromQL, a missing label has the value "".
        check(r#"m{b=""}"#, Some(5.0));
        check(r#"m{b!=""}"#, Some(2.0));
        check(r#"m{a=~".*"}"#, Some(7.0));
        check(r#"m{a=~".+"}"#, Some(3.0));
        check(r#"m{__name__="m",a="2"}"#, Some(2.0));
        check(r#"m{a="3"}"#, None);
    }
}

mod patterns {
    use super::*;

    #[track_caller]
    fn check(pattern: &str, expected: PatternError) {
        let err = LabelMatcher::new("l", MatchOp::RegexMatch, pattern).expect_err(pattern);
        assert_eq!(err, expected, "{pattern:?}");
    }

    #[test]
    fn unsupported_syntax() {
        check("(a)", PatternError::Unsupported('('));
        check("a{2}", PatternError::Unsupported('{'));
        check("^a", PatternError::Unsupported('^'));
        check("a$", PatternError::Unsupported('$'));
        check(r"\d+", PatternError::UnsupportedEscape('d'));
        check("a\\", PatternError::TrailingBackslash);
        check("*a", PatternError::MissingRepeatArgument('*'));
        check("a|+", PatternError::MissingRepeatArgument('+'));
        check("a**", PatternError::NestedRepeat('*'));
        check("a*?", PatternError::NestedRepeat('?'));
        check("[a", PatternError::UnterminatedClass);
        check("[]", PatternError::UnterminatedClass);
        check("[a-", PatternError::UnterminatedClass);
        check("[z-a]", PatternError::InvalidRange('z', 'a'));
        check("[[:alpha:]]", PatternError::Unsupported('['));
        check(&"a".repeat(128), PatternError::TooLong);
        assert!(LabelMatcher::new("l", MatchOp::RegexMatch, "a".repeat(127)).is_ok());
        // The literal operators take any string.
        assert!(LabelMatcher::new("l", MatchOp::Equal, "(a").is_ok());
    }
}

mod selectors {
    use super::*;

    /// Parses `text` and compares its Display form, or the error message.
    #[track_caller]
    fn check(text: &str, expected: &str) {
        let got = match Selector::parse(text) {
            Ok(selector) => selector.to_string(),
            Err(err) => format!("error: {err}"),
        };
        assert_eq!(got, expected, "input: {text:?}");
    }

    #[test]
    fn parses() {
        check(
            r#"http_requests_total{code=~"5.."}"#,
            r#"http_requests_total{code=~"5.."}"#,
        );
        check("  up  ", "up");
        check("up{}", "up");
        check(
            r#"x{ a = "1" , b!="2",c=~"3",d!~"4", }"#,
            r#"x{a="1",b!="2",c=~"3",d!~"4"}"#,
        );
        check("x{a='1'}", r#"x{a="1"}"#);
        check(r#"x{a='"\''}"#, r#"x{a="\"'"}"#);
        check(r"x{a=~`a\.b`}", r#"x{a=~"a\\.b"}"#);
        check(r#"x{a=~"a\\.b"}"#, r#"x{a=~"a\\.b"}"#);
        check(r#"x{a="q\"\\\n"}"#, r#"x{a="q\"\\\n"}"#);
        check("ns:x:rate5m{_a=\"\"}", "ns:x:rate5m{_a=\"\"}");
    }

    #[test]
    fn rejects() {
        check(r#"{a="1"}"#, "error: expected metric name at offset 0");
        check("", "error: expected metric name at offset 0");
        check(
            "x{a}",
            "error: expected '=', '!=', '=~' or '!~' at offset 3",
        );
        check(
            "x{a==\"1\"}",
            "error: expected quoted label value at offset 4",
        );
        check("x{a=1}", "error: expected quoted label value at offset 4");
        check(r#"x{a="1}"#, "error: unterminated string at offset 4");
        check("x{a=\"1\n\"}", "error: unterminated string at offset 4");
        check(r#"x{a="\."}"#, "error: unknown escape sequence at offset 5");
        check(r#"x{a='\"'}"#, "error: unknown escape sequence at offset 5");
        check(
            r#"x{a="1" b="2"}"#,
            "error: expected ',' or '}' at offset 8",
        );
        check("x{", "error: expected label name or '}' at offset 2");
        check("x{,}", "error: expected label name or '}' at offset 2");
        check("x y", "error: unexpected text at offset 2");
        check(r#"x{a=~"("}"#, "error: invalid regex for label \"a\"");
        let err = Selector::parse(r#"x{a=~"(a)"}"#).expect_err("group");
        let source = std::error::Error::source(&err).expect("regex error is the source");
        assert!(source
            .to_string()
            .starts_with("unsupported regex syntax '('"));
    }

    #[test]
    fn round_trips_through_display() {
        for text in [
            r#"m{a=~"2..|3..",b!~"[^x]+",c="\"\\\n"}"#,
            "m",
            r#"m{a!=""}"#,
        ] {
            let parsed = selector(text);
            assert_eq!(selector(&parsed.to_string()), parsed);
            assert_eq!(text.parse::<Selector>(), Ok(parsed));
        }
    }
}

mod quantiles {
    use super::*;

    const INF: f64 = f64::INFINITY;

    #[track_caller]
    fn check(q: f64, buckets: &[(f64, f64)], expected: Option<f64>) {
        let got = histogram_quantile(q, buckets);
        match (got, expected) {
            (Some(got), Some(expected)) if got.is_infinite() || expected.is_infinite() => {
                assert_eq!(got, expected, "q={q} {buckets:?}");
            }
            (Some(got), Some(expected)) => {
                assert!(
                    (got - expected).abs() <= 1e-12,
                    "q={q} {buckets:?}: got {got}, expected {expected}"
                );
            }
            _ => assert_eq!(got, expected, "q={q} {buckets:?}"),
        }
    }

    #[test]
    fn interpolation() {
        let buckets = [(0.1, 5.0), (0.5, 10.0), (1.0, 10.0), (INF, 10.0)];
        // Rank 5 fills the first bucket, which starts at 0.
        check(0.5, &buckets, Some(0.1));
        check(0.25, &buckets, Some(0.05));
        // Rank 7.5 is half into (0.1, 0.5].
        check(0.75, &buckets, Some(0.3));
        // Rank 10 is reached at the end of (0.1, 0.5], not in later buckets.
        check(1.0, &buckets, Some(0.5));
        check(0.0, &buckets, Some(0.0));
    }

    #[test]
    fn rank_in_inf_bucket() {
        let buckets = [(1.0, 2.0), (2.0, 4.0), (INF, 10.0)];
        check(0.9, &buckets, Some(2.0));
        check(1.0, &buckets, Some(2.0));
        check(0.4, &buckets, Some(2.0));
        check(0.3, &buckets, Some(1.5));
    }

    #[test]
    fn undefined_cases() {
        check(0.5, &[], None);
        check(0.5, &[(1.0, 0.0), (INF, 0.0)], None);
        check(0.5, &[(INF, 5.0)], None);
        check(0.5, &[(1.0, 1.0), (2.0, 2.0)], None);
        check(f64::NAN, &[(1.0, 1.0), (INF, 2.0)], None);
        // Two +Inf buckets coalesce into one, which is too few.
        check(0.5, &[(INF, 1.0), (INF, 2.0)], None);
        check(0.5, &[(1.0, 1.0), (f64::NAN, 2.0), (INF, 2.0)], None);
        // q = 0 with an empty lowest bucket is 0/0 in Prometheus (NaN).
        check(0.0, &[(1.0, 0.0), (2.0, 5.0), (INF, 5.0)], None);
    }

    #[test]
    fn out_of_range_q() {
        // Prometheus answers these before looking at the buckets.
        check(-0.5, &[(1.0, 1.0)], Some(f64::NEG_INFINITY));
        check(1.5, &[(1.0, 1.0)], Some(INF));
        check(-0.5, &[(1.0, 1.0), (INF, 2.0)], Some(f64::NEG_INFINITY));
    }

    #[test]
    fn non_positive_lowest_bucket() {
        let buckets = [(-1.0, 2.0), (0.0, 4.0), (INF, 4.0)];
        check(0.25, &buckets, Some(-1.0));
        check(0.75, &buckets, Some(-0.5));
        check(0.5, &[(0.0, 2.0), (1.0, 4.0), (INF, 4.0)], Some(0.0));
    }

    #[test]
    fn unsorted_and_duplicate_bounds() {
        // Sorted and coalesced: (0.5, 8), (1, 10), (+Inf, 10).
        let buckets = [(INF, 10.0), (0.5, 4.0), (1.0, 10.0), (0.5, 4.0)];
        check(0.5, &buckets, Some(0.3125));
    }

    #[test]
    fn monotonicity_fixes() {
        // The (2, 3) dip becomes (2, 5).
        let buckets = [(1.0, 5.0), (2.0, 3.0), (3.0, 8.0), (INF, 8.0)];
        check(0.5, &buckets, Some(0.8));
        check(0.7, &buckets, Some(2.2));
        // Counts within 1e-12 of the previous one are float noise: without
        // the fix, q=1 would land in (1, 2] and give 2.
        let buckets = [(1.0, 1.0), (2.0, 1.0 + 2e-13), (INF, 1.0 + 2e-13)];
        check(1.0, &buckets, Some(1.0));
    }
}

mod deltas {
    use super::*;

    fn hist(buckets: &[(f64, f64)], count: f64, sum: f64) -> Histogram {
        Histogram {
            buckets: buckets.to_vec(),
            count,
            sum,
        }
    }

    #[track_caller]
    fn check(current: &Histogram, previous: &Histogram, expected: &Histogram) {
        assert_eq!(&current.delta(previous), expected);
    }

    #[test]
    fn counters() {
        assert_eq!(counter_delta(10.0, 4.0), 6.0);
        assert_eq!(counter_delta(5.0, 5.0), 0.0);
        // Went down: the target restarted, so everything since is new.
        assert_eq!(counter_delta(3.0, 10.0), 3.0);
        assert_eq!(counter_delta(0.0, 10.0), 0.0);
    }

    #[test]
    fn histograms() {
        let inf = f64::INFINITY;
        let previous = hist(&[(0.1, 2.0), (1.0, 5.0), (inf, 6.0)], 6.0, 3.0);

        let current = hist(&[(0.1, 4.0), (1.0, 9.0), (inf, 11.0)], 11.0, 5.5);
        check(
            &current,
            &previous,
            &hist(&[(0.1, 2.0), (1.0, 4.0), (inf, 5.0)], 5.0, 2.5),
        );
        // Nothing new.
        check(
            &previous,
            &previous,
            &hist(&[(0.1, 0.0), (1.0, 0.0), (inf, 0.0)], 0.0, 0.0),
        );

        // One bucket went down: a reset.
        let reset = hist(&[(0.1, 1.0), (1.0, 9.0), (inf, 11.0)], 11.0, 5.5);
        check(&reset, &previous, &reset);
        // The count went down: a reset.
        let reset = hist(&[(0.1, 2.0), (1.0, 5.0), (inf, 6.0)], 1.0, 0.5);
        check(&reset, &previous, &reset);
        // A new bucket layout: a restart with new buckets.
        let relayout = hist(&[(0.5, 1.0), (inf, 1.0)], 1.0, 0.2);
        check(&relayout, &previous, &relayout);
    }

    #[test]
    fn quantile_of_interval() {
        let before = parse(
            "h_bucket{le=\"0.1\"} 10\nh_bucket{le=\"1\"} 10\nh_bucket{le=\"+Inf\"} 10\nh_count 10\nh_sum 0.5",
        )
        .expect("parses");
        let after = parse(
            "h_bucket{le=\"0.1\"} 10\nh_bucket{le=\"1\"} 20\nh_bucket{le=\"+Inf\"} 20\nh_count 20\nh_sum 5.5",
        )
        .expect("parses");
        let before = histogram(&before, "h", &[]).expect("histogram");
        let after = histogram(&after, "h", &[]).expect("histogram");
        let interval = after.delta(&before);
        assert_eq!(interval.count, 10.0);
        assert_eq!(interval.sum, 5.0);
        // All ten new observations are in (0.1, 1]: the median is halfway.
        assert_close(interval.quantile(0.5).expect("p50"), 0.55);
        // Over all time, the median is still in the first bucket.
        assert_close(after.quantile(0.5).expect("p50"), 0.1);
    }

    #[test]
    fn histogram_without_count_or_sum() {
        let exposition = parse(
            "h_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 4\nh_bucket 9\nh_bucket{le=\"x\"} 9",
        )
        .expect("parses");
        let got = histogram(&exposition, "h", &[]).expect("histogram");
        // Buckets without a float `le` are skipped, as PromQL does.
        assert_eq!(got.buckets, vec![(1.0, 3.0), (f64::INFINITY, 4.0)]);
        assert_eq!(got.count, 4.0);
        assert!(got.sum.is_nan());
        assert_eq!(histogram(&exposition, "g", &[]), None);
    }
}
