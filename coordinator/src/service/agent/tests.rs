//! `check_hello` and `check_update` as tables: each case changes one field
//! of a good message and names the field the error must blame (or none).

use super::*;

fn good_hello() -> pb::Hello {
    pb::Hello {
        host_id: "web-1".to_owned(),
        deployment: "shop".to_owned(),
        cohort: pb::Cohort::Beta as i32,
        app_version: "2.0".to_owned(),
        agent_version: "0.1.0".to_owned(),
        action_names: vec!["rollback".to_owned()],
        interval: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        labels: [("region".to_owned(), "eu".to_owned())].into(),
        session_id: 7,
    }
}

fn blamed(err: &WireError) -> &'static str {
    match err {
        WireError::Missing(field) | WireError::Invalid { field, .. } => field,
    }
}

#[test]
fn check_hello_accepts_good_and_blames_the_bad_field() {
    type Case = (&'static str, fn(&mut pb::Hello), Option<&'static str>);
    let cases: &[Case] = &[
        ("as sent", |_| {}, None),
        ("no interval means 1 s", |h| h.interval = None, None),
        ("empty host id", |h| h.host_id.clear(), Some("host_id")),
        (
            "host id with a space",
            |h| h.host_id = "web 1".to_owned(),
            Some("host_id"),
        ),
        (
            "host id too long",
            |h| h.host_id = "h".repeat(300),
            Some("host_id"),
        ),
        (
            "empty deployment",
            |h| h.deployment.clear(),
            Some("deployment"),
        ),
        // Unset is `auto` (issue 12): admitted, in the baseline.
        ("cohort auto", |h| h.cohort = 0, None),
        ("cohort unknown", |h| h.cohort = 9, Some("cohort")),
        (
            "65 actions",
            |h| h.action_names = (0..65).map(|n| format!("a{n}")).collect(),
            Some("action_names"),
        ),
        (
            "action with a newline",
            |h| h.action_names = vec!["roll\nback".to_owned()],
            Some("action_names"),
        ),
        (
            "app version too long",
            |h| h.app_version = "v".repeat(257),
            Some("app_version"),
        ),
        (
            "agent version too long",
            |h| h.agent_version = "v".repeat(257),
            Some("app_version"),
        ),
        (
            "33 labels",
            |h| h.labels = (0..33).map(|n| (format!("k{n}"), String::new())).collect(),
            Some("labels"),
        ),
        (
            "label name with a space",
            |h| h.labels = [("a b".to_owned(), String::new())].into(),
            Some("labels"),
        ),
        (
            "label value too long",
            |h| h.labels = [("k".to_owned(), "v".repeat(257))].into(),
            Some("labels"),
        ),
        (
            "interval 50 ms",
            |h| {
                h.interval = Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 50_000_000,
                })
            },
            Some("interval"),
        ),
        (
            "interval 2 h",
            |h| {
                h.interval = Some(prost_types::Duration {
                    seconds: 7200,
                    nanos: 0,
                })
            },
            Some("interval"),
        ),
        (
            "negative interval",
            |h| {
                h.interval = Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                })
            },
            Some("interval"),
        ),
    ];
    for (name, change, want) in cases {
        let mut hello = good_hello();
        change(&mut hello);
        match (check_hello(&hello), want) {
            (Ok(identity), None) => {
                assert_eq!(identity.host_id.as_str(), hello.host_id, "{name}");
                let want = if hello.cohort == 0 {
                    Cohort::Baseline
                } else {
                    Cohort::Beta
                };
                assert_eq!(identity.cohort, want, "{name}");
                assert!(identity.interval >= Duration::from_millis(100), "{name}");
            }
            (Ok(_), Some(field)) => panic!("{name}: accepted, want an error on `{field}`"),
            (Err(err), None) => panic!("{name}: rejected: {err}"),
            (Err(err), Some(field)) => assert_eq!(blamed(&err), *field, "{name}: {err}"),
        }
    }
}

fn good_update() -> pb::CommandUpdate {
    pb::CommandUpdate {
        command_id: "cmd-1".to_owned(),
        status: pb::CommandStatus::Succeeded as i32,
        exit_code: Some(0),
        reason: String::new(),
        output_tail: "done\n".to_owned(),
        started_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        duration: Some(prost_types::Duration {
            seconds: 2,
            nanos: 0,
        }),
    }
}

#[test]
fn check_update_accepts_good_and_blames_the_bad_field() {
    type Case = (
        &'static str,
        fn(&mut pb::CommandUpdate),
        Option<&'static str>,
    );
    let cases: &[Case] = &[
        ("as sent", |_| {}, None),
        (
            "no times",
            |u| (u.started_at, u.duration) = (None, None),
            None,
        ),
        (
            "running",
            |u| u.status = pb::CommandStatus::Running as i32,
            None,
        ),
        (
            "empty command id",
            |u| u.command_id.clear(),
            Some("command_id"),
        ),
        ("status unset", |u| u.status = 0, Some("status")),
        ("status unknown", |u| u.status = 42, Some("status")),
        (
            "status no answer",
            |u| u.status = pb::CommandStatus::NoAnswer as i32,
            Some("status"),
        ),
        (
            "nanos out of range",
            |u| {
                u.started_at = Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -5,
                })
            },
            Some("started_at"),
        ),
        (
            "negative duration",
            |u| {
                u.duration = Some(prost_types::Duration {
                    seconds: -3,
                    nanos: 0,
                })
            },
            Some("duration"),
        ),
    ];
    for (name, change, want) in cases {
        let mut update = good_update();
        change(&mut update);
        match (check_update(&update), want) {
            (Ok(result), None) => assert_eq!(result.command_id, "cmd-1", "{name}"),
            (Ok(_), Some(field)) => panic!("{name}: accepted, want an error on `{field}`"),
            (Err(err), None) => panic!("{name}: rejected: {err}"),
            (Err(err), Some(field)) => assert_eq!(blamed(&err), *field, "{name}: {err}"),
        }
    }
}

#[test]
fn check_update_keeps_the_end_of_a_long_output_and_cuts_on_a_char_boundary() {
    let mut update = good_update();
    // 'é' is two bytes: a cut at MAX_OUTPUT_TAIL from the end would split one.
    update.output_tail = format!("{}{}end", "é".repeat(MAX_OUTPUT_TAIL), "x");
    update.reason = "ü".repeat(1000);
    let result = check_update(&update).expect("accepted");
    assert!(result.output_tail.len() <= MAX_OUTPUT_TAIL);
    assert!(result.output_tail.ends_with("xend"));
    assert!(result.reason.len() <= 1024);
    assert!(result.reason.chars().all(|c| c == 'ü'));
}

fn good_local() -> pb::LocalRollback {
    pb::LocalRollback {
        command_id: "local-web-1-1700000000000".to_owned(),
        action: "rollback".to_owned(),
        reason: "error_rate 0.5 > max 0.2".to_owned(),
        figures: vec![pb::TrippedRule {
            metric: "error_rate".to_owned(),
            value: Some(0.5),
            limit: Some(0.2),
            limit_text: "max 0.2".to_owned(),
        }],
        consecutive_failures: 5,
        unreachable_for: Some(prost_types::Duration {
            seconds: 62,
            nanos: 0,
        }),
        status: pb::CommandStatus::Succeeded as i32,
        exit_code: Some(0),
        result_reason: String::new(),
        output_tail: "rolled back".to_owned(),
        started_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        duration: Some(prost_types::Duration {
            seconds: 0,
            nanos: 5_000_000,
        }),
    }
}

#[test]
fn check_local_accepts_good_and_blames_the_bad_field() {
    type Case = (
        &'static str,
        fn(&mut pb::LocalRollback),
        Option<&'static str>,
    );
    let cases: &[Case] = &[
        ("as sent", |_| {}, None),
        (
            "failed is reported too",
            |r| r.status = pb::CommandStatus::Failed as i32,
            None,
        ),
        ("empty id", |r| r.command_id.clear(), Some("command_id")),
        (
            "a coordinator's id",
            |r| r.command_id = "cmd-1".to_owned(),
            Some("command_id"),
        ),
        (
            "an id too long",
            |r| r.command_id = format!("local-{}", "x".repeat(300)),
            Some("command_id"),
        ),
        ("empty action", |r| r.action.clear(), Some("action")),
        (
            "action with a newline",
            |r| r.action = "roll\nback".to_owned(),
            Some("action"),
        ),
        (
            "too many figures",
            |r| r.figures = vec![r.figures[0].clone(); 33],
            Some("figures"),
        ),
        (
            "a NaN figure",
            |r| r.figures[0].value = Some(f64::NAN),
            Some("figures"),
        ),
        (
            "an infinite limit",
            |r| r.figures[0].limit = Some(f64::INFINITY),
            Some("figures"),
        ),
        (
            "a huge limit text",
            |r| r.figures[0].limit_text = "x".repeat(10_000),
            Some("figures"),
        ),
        (
            "still running",
            |r| r.status = pb::CommandStatus::Running as i32,
            Some("status"),
        ),
        ("unset status", |r| r.status = 0, Some("status")),
        ("unknown status", |r| r.status = 99, Some("status")),
        (
            "a negative duration",
            |r| {
                r.duration = Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                })
            },
            Some("duration"),
        ),
    ];
    for (name, edit, blame) in cases {
        let mut report = good_local();
        edit(&mut report);
        match (local::check_local(&report, MAX_OUTPUT_TAIL), blame) {
            (Ok(_), None) => {}
            (Err(err), Some(field)) => assert_eq!(blamed(&err), *field, "{name}: {err}"),
            (other, _) => panic!("{name}: expected {blame:?}, got {other:?}"),
        }
    }
}

#[test]
fn check_local_cuts_long_text_on_char_boundaries() {
    let mut report = good_local();
    report.reason = "é".repeat(2000);
    report.output_tail = "é".repeat(10_000);
    let run = local::check_local(&report, MAX_OUTPUT_TAIL).expect("valid");
    assert!(run.reason.len() <= 1024);
    assert!(run.output_tail.len() <= MAX_OUTPUT_TAIL);
}

#[test]
fn a_local_run_is_recorded_as_a_local_command_by_its_host_with_its_figures() {
    let hello = good_hello();
    let identity = check_hello(&hello).expect("good hello");
    let run = local::check_local(&good_local(), MAX_OUTPUT_TAIL).expect("valid");
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100);
    let (record, result, audit) = run.records(&identity, now);
    assert!(record.local && record.closed);
    assert_eq!(record.targets, vec!["web-1".to_owned()]);
    assert_eq!(record.deployment, "shop");
    assert!(record.not_after_unix_ms <= unix_ms(now), "never live");
    assert_eq!(result.host_id, "web-1");
    assert_eq!(result.status, CommandStatus::Succeeded);
    assert_eq!(audit.action, "local_rollback");
    assert_eq!(audit.actor, "host web-1");
    assert!(
        audit
            .reason
            .contains("local tripwire on web-1: error_rate 0.5 > max 0.2")
            && audit.reason.contains("5 local round(s)")
            && audit.reason.contains("unreachable for 62s"),
        "{}",
        audit.reason
    );
    assert!(
        audit.detail.contains("error_rate 0.5 (max 0.2)"),
        "{}",
        audit.detail
    );
    let event = run.event(&identity);
    assert_eq!(event["event"], "local_rollback");
    assert_eq!(event["host_id"], "web-1");
    assert_eq!(event["figures"][0]["value"], 0.5);
}
