use std::time::Duration;

use super::{median_u64, summarize, Summary};

#[track_caller]
fn check(ms: &[u64], expected: Option<(f64, f64, f64)>) {
    let mut values: Vec<Duration> = ms.iter().map(|&m| Duration::from_millis(m)).collect();
    let expected = expected.map(|(p50_ms, p99_ms, max_ms)| Summary {
        p50_ms,
        p99_ms,
        max_ms,
    });
    assert_eq!(summarize(&mut values), expected);
}

#[test]
fn percentiles_are_nearest_rank() {
    check(&[], None);
    check(&[7], Some((7.0, 7.0, 7.0)));
    check(&[3, 1, 2], Some((2.0, 3.0, 3.0)));
    let hundred: Vec<u64> = (1..=100).rev().collect();
    check(&hundred, Some((50.0, 99.0, 100.0)));
    let thousand: Vec<u64> = (1..=1000).collect();
    check(&thousand, Some((500.0, 990.0, 1000.0)));
}

#[test]
fn median() {
    assert_eq!(median_u64(&mut []), None);
    assert_eq!(median_u64(&mut [5]), Some(5));
    assert_eq!(median_u64(&mut [9, 1, 5]), Some(5));
    assert_eq!(median_u64(&mut [4, 1, 3, 2]), Some(2));
}
