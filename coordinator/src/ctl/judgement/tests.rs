use rollguard_proto::v1 as pb;

use super::*;

#[track_caller]
fn check_verdict(value: i32, expected: &str) {
    assert_eq!(verdict_name(value), expected);
}

#[test]
fn verdicts_have_lowercase_names() {
    check_verdict(pb::Verdict::Pass as i32, "pass");
    check_verdict(pb::Verdict::Fail as i32, "fail");
    check_verdict(pb::Verdict::Inconclusive as i32, "inconclusive");
    check_verdict(pb::Verdict::Error as i32, "error");
    check_verdict(pb::Verdict::Unspecified as i32, "unknown");
    check_verdict(99, "unknown");
}
