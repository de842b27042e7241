//! The expiry rule of [`is_expired`] (issue 11), case by case, on fixed
//! times: minutes from `T0` on the coordinator's clock, and this agent's
//! clock as an offset from the true time.

use std::time::{Duration, SystemTime};

use rollguard_proto::time_to_pb;
use rollguard_proto::v1 as pb;

use super::{covering_local_run, is_expired, LocalDone};

/// The true time the command was decided at.
fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// `T0 + minutes`, on any clock.
fn at(minutes: i64) -> SystemTime {
    let offset = Duration::from_secs(minutes.unsigned_abs() * 60);
    if minutes >= 0 {
        t0() + offset
    } else {
        t0() - offset
    }
}

/// A command with a 10-minute TTL, sent at `sent_min`, when given.
fn command(sent_min: Option<i64>) -> pb::Command {
    pb::Command {
        command_id: "cmd-1".to_owned(),
        action: "rollback".to_owned(),
        not_after: Some(time_to_pb(at(10))),
        sent_at: sent_min.map(|m| time_to_pb(at(m))),
        ..Default::default()
    }
}

/// Checks `is_expired` for `command` on an agent whose clock reads `agent_min`.
#[track_caller]
fn check(command: pb::Command, agent_min: i64, expected: bool) {
    assert_eq!(
        is_expired(&command, at(agent_min)),
        expected,
        "sent_at {:?}, not_after {:?}, agent clock at T0{agent_min:+} min",
        command.sent_at,
        command.not_after,
    );
}

#[test]
fn sent_before_its_deadline_runs_whatever_the_agent_clock_says() {
    // Agent clock right, an hour ahead, an hour behind.
    check(command(Some(0)), 0, false);
    check(command(Some(0)), 60, false);
    check(command(Some(0)), -60, false);
    // A resend on reconnect late in the command's life.
    check(command(Some(9)), 69, false);
    // Sent exactly at the deadline: not past it.
    check(command(Some(10)), 70, false);
}

#[test]
fn sent_after_its_deadline_is_expired_whatever_the_agent_clock_says() {
    check(command(Some(11)), 11, true);
    // An agent an hour behind would have run it by its own clock.
    check(command(Some(11)), -49, true);
    check(command(Some(120)), 0, true);
}

#[test]
fn without_sent_at_the_agent_clock_decides_as_before() {
    // An older coordinator: not_after against this host's clock.
    check(command(None), 0, false);
    check(command(None), 10, false);
    check(command(None), 11, true);
    check(command(None), 60, true);
}

#[test]
fn no_valid_deadline_or_sent_at_is_expired() {
    let mut no_deadline = command(Some(0));
    no_deadline.not_after = None;
    check(no_deadline, 0, true);
    let mut bad_deadline = command(Some(0));
    bad_deadline.not_after = Some(prost_types::Timestamp {
        seconds: -1,
        nanos: 0,
    });
    check(bad_deadline, 0, true);
    let mut bad_sent_at = command(None);
    bad_sent_at.sent_at = Some(prost_types::Timestamp {
        seconds: 1,
        nanos: -1,
    });
    check(bad_sent_at, 0, true);
}

/// A local rollback of `action` that started at `start_min` on this host's clock.
fn local(action: &str, start_min: i64) -> LocalDone {
    LocalDone {
        id: format!("local-h-{start_min}"),
        action: action.to_owned(),
        started_at: at(start_min),
    }
}

/// A command decided at T0 and sent at `sent_min` (coordinator clock).
fn decided_at_t0(sent_min: i64) -> pb::Command {
    pb::Command {
        issued_at: Some(time_to_pb(at(0))),
        ..command(Some(sent_min))
    }
}

#[test]
fn a_local_run_after_the_decision_covers_it_whatever_the_agent_clock_says() {
    // Sent 20 minutes after the decision (the host was away), received on
    // an agent an hour ahead whose tripwire ran 5 minutes after the decision.
    let command = decided_at_t0(20);
    let done = [local("rollback", 65)];
    let covering = covering_local_run(&command, at(80), &done).expect("covered");
    assert_eq!(covering.id, "local-h-65");
}

#[test]
fn a_local_run_before_the_decision_or_of_another_action_does_not_cover_it() {
    let decided = decided_at_t0(20);
    // Ran 5 minutes before the decision (agent clock right).
    assert!(covering_local_run(&decided, at(20), &[local("rollback", -5)]).is_none());
    assert!(covering_local_run(&decided, at(20), &[local("drain", 5)]).is_none());
    assert!(covering_local_run(&decided, at(20), &[]).is_none());
    // Without issued_at there is no age: never covered.
    let no_issue = command(Some(20));
    assert!(covering_local_run(&no_issue, at(20), &[local("rollback", 5)]).is_none());
}
