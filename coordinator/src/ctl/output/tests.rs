use super::*;

#[track_caller]
fn check_bytes(bytes: f64, expected: &str) {
    assert_eq!(fmt_bytes(bytes), expected);
}

#[test]
fn bytes_use_binary_units() {
    check_bytes(0.0, "0B");
    check_bytes(1023.0, "1023B");
    check_bytes(1536.0, "1.5KiB");
    check_bytes(3.0 * 1024.0 * 1024.0 * 1024.0, "3.0GiB");
}

#[test]
fn table_aligns_columns() {
    let rows = vec![
        vec!["A".to_owned(), "BB".to_owned(), "C".to_owned()],
        vec!["long".to_owned(), "x".to_owned(), "".to_owned()],
    ];
    assert_eq!(table(&rows), "A     BB  C\nlong  x\n");
}

#[track_caller]
fn check_cohort(value: i32, expected: &str) {
    assert_eq!(cohort_name(value), expected);
}

#[test]
fn cohorts_have_lowercase_names() {
    check_cohort(pb::Cohort::Beta as i32, "beta");
    check_cohort(pb::Cohort::Baseline as i32, "baseline");
    check_cohort(pb::Cohort::Unspecified as i32, "unknown");
    check_cohort(99, "unknown");
}

#[test]
fn rates_are_bytes_per_second() {
    assert_eq!(fmt_rate(0.0), "0B/s");
    assert_eq!(fmt_rate(2048.0), "2.0KiB/s");
}
