use std::time::Duration;

use rollguard_proto::v1 as pb;

use super::*;

fn host_result(status: pb::CommandStatus, duration_ms: Option<u64>) -> pb::HostResult {
    pb::HostResult {
        host_id: "host-1".to_owned(),
        status: status as i32,
        duration: duration_ms.map(|ms| rollguard_proto::duration_to_pb(Duration::from_millis(ms))),
        ..Default::default()
    }
}

#[track_caller]
fn check_all_succeeded(statuses: &[pb::CommandStatus], expected: bool) {
    let command = pb::GetCommandResponse {
        results: statuses.iter().map(|s| host_result(*s, None)).collect(),
        ..Default::default()
    };
    assert_eq!(all_succeeded(&command), expected, "{statuses:?}");
}

#[test]
fn all_succeeded_needs_a_host_and_every_host_succeeded() {
    use pb::CommandStatus::*;
    check_all_succeeded(&[], false);
    check_all_succeeded(&[Succeeded], true);
    check_all_succeeded(&[Succeeded, Succeeded], true);
    check_all_succeeded(&[Succeeded, Failed], false);
    check_all_succeeded(&[Succeeded, Running], false);
    check_all_succeeded(&[Rejected], false);
    check_all_succeeded(&[NoAnswer], false);
    check_all_succeeded(&[Unspecified], false);
}

#[track_caller]
fn check_duration(status: pb::CommandStatus, duration_ms: Option<u64>, expected: Option<u64>) {
    assert_eq!(
        super::duration_ms(&host_result(status, duration_ms)),
        expected
    );
}

#[test]
fn duration_shows_only_once_an_action_finished() {
    use pb::CommandStatus::*;
    check_duration(Succeeded, Some(1500), Some(1500));
    check_duration(Failed, Some(20), Some(20));
    check_duration(Succeeded, None, None);
    check_duration(Running, Some(5), None);
    check_duration(Accepted, Some(5), None);
    // A rejected command never ran, whatever duration it carries.
    check_duration(Rejected, Some(5), None);
}
