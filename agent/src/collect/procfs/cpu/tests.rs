use rollguard_common::HostSample;
use std::time::{Duration, SystemTime};

use super::*;

/// Real lines from a 2-core host.
const BEFORE: &str = "\
cpu  49261 0 4134 90177 302 0 54 178 0 0
cpu0 24307 0 1894 45704 63 0 16 86 0 0
cpu1 24954 0 2239 44473 239 0 37 92 0 0
intr 259069 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
ctxt 223790
btime 1795824834
processes 5596
procs_running 2
procs_blocked 0
softirq 96271 0 18020 4 3739 8155 0 73 32713 0 33567
";

fn empty_sample() -> HostSample {
    HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1))
}

/// Feeds `before` then `after` to one state and compares the second sample's
/// cpu percent and per-core percents.
#[track_caller]
fn check(before: &str, after: &str, expected_all: f64, expected_cores: &[f64]) {
    let mut state = CpuState::default();
    state
        .update(before, &mut empty_sample())
        .expect("before parses");
    let mut sample = empty_sample();
    state.update(after, &mut sample).expect("after parses");
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(
        close(sample.cpu_percent, expected_all),
        "cpu_percent {} != {expected_all}",
        sample.cpu_percent
    );
    assert_eq!(
        sample.cpu_core_percent.len(),
        expected_cores.len(),
        "{:?}",
        sample.cpu_core_percent
    );
    for (got, want) in sample.cpu_core_percent.iter().zip(expected_cores) {
        assert!(
            close(*got, *want),
            "cores {:?} != {expected_cores:?}",
            sample.cpu_core_percent
        );
    }
}

#[track_caller]
fn check_parse_error(text: &str, expected_fragment: &str) {
    let err = parse_stat(text, &mut CpuReading::default()).expect_err("must fail");
    assert!(
        err.contains(expected_fragment),
        "{err:?} lacks {expected_fragment:?}"
    );
}

#[test]
fn busy_over_all_cores_and_each_core() {
    // cpu0: user+30 system+10 idle+10 -> 80%; cpu1: user+20 idle+20 iowait+10 -> 40%;
    // all: user+50 system+10 idle+30 iowait+10 -> 60%.
    let after = "\
cpu  49311 0 4144 90207 312 0 54 178 0 0
cpu0 24337 0 1904 45714 63 0 16 86 0 0
cpu1 24974 0 2239 44493 249 0 37 92 0 0
intr 259069 0 0 0
";
    check(BEFORE, after, 60.0, &[80.0, 40.0]);
}

#[test]
fn guest_ticks_are_not_counted_twice() {
    // The kernel adds guest time to user too: user+50 guest+50 idle+50 is 50% busy.
    check(
        "cpu  100 0 0 100 0 0 0 0 0 0\ncpu0 100 0 0 100 0 0 0 0 0 0\n",
        "cpu  150 0 0 150 0 0 0 0 50 0\ncpu0 150 0 0 150 0 0 0 0 50 0\n",
        50.0,
        &[50.0],
    );
}

#[test]
fn irq_softirq_and_steal_are_busy() {
    check(
        "cpu  0 0 0 0 0 0 0 0 0 0\n",
        "cpu  0 0 0 50 0 10 20 20 0 0\n",
        50.0,
        &[],
    );
}

#[test]
fn no_tick_passed_is_zero() {
    check(BEFORE, BEFORE, 0.0, &[0.0, 0.0]);
}

#[test]
fn counters_going_backwards_are_zero() {
    check(
        "cpu  500 0 0 500 0 0 0 0 0 0\n",
        "cpu  100 0 0 100 0 0 0 0 0 0\n",
        0.0,
        &[],
    );
}

#[test]
fn iowait_going_backwards_stays_within_100() {
    check(
        "cpu  100 0 0 100 50 0 0 0 0 0\n",
        "cpu  200 0 0 100 40 0 0 0 0 0\n",
        100.0,
        &[],
    );
}

#[test]
fn core_without_previous_reading_is_zero() {
    // cpu1 went offline and cpu2 came online between the readings.
    check(
        "cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0 0 0\n",
        "cpu  50 0 0 50 0 0 0 0 0 0\ncpu0 25 0 0 75 0 0 0 0 0 0\ncpu2 90 0 0 10 0 0 0 0 0 0\n",
        50.0,
        &[25.0, 0.0],
    );
}

#[test]
fn old_kernel_with_four_columns() {
    check("cpu  0 0 0 0\n", "cpu  30 0 10 60\n", 40.0, &[]);
}

#[test]
fn first_reading_without_baseline_is_zero() {
    let mut state = CpuState::default();
    let mut sample = empty_sample();
    state.update(BEFORE, &mut sample).expect("parses");
    assert_eq!(sample.cpu_percent, 0.0);
    assert_eq!(sample.cpu_core_percent, vec![0.0, 0.0]);
}

#[test]
fn parses_real_lines() {
    let mut reading = CpuReading::default();
    parse_stat(BEFORE, &mut reading).expect("parses");
    let total = 49261 + 4134 + 90177 + 302 + 54 + 178;
    assert_eq!(
        reading.all,
        CpuTicks {
            idle: 90177 + 302,
            total
        }
    );
    assert_eq!(reading.cores.len(), 2);
    assert_eq!(reading.cores[1].0, 1);
    assert_eq!(reading.cores[1].1.idle, 44473 + 239);
}

#[test]
fn cores_are_sorted_by_number() {
    let mut reading = CpuReading::default();
    parse_stat("cpu  1 0 0 1\ncpu10 1 0 0 1\ncpu2 1 0 0 1\n", &mut reading).expect("parses");
    let ids: Vec<u32> = reading.cores.iter().map(|c| c.0).collect();
    assert_eq!(ids, [2, 10]);
}

#[test]
fn parse_errors() {
    check_parse_error("", "no aggregate cpu line");
    check_parse_error("intr 1 2 3\n", "no aggregate cpu line");
    check_parse_error("cpu  1 2 x 4\n", "bad tick count \"x\"");
    check_parse_error("cpu  1 2 3\n", "at least 4");
    check_parse_error("cpu  1 2 3 4\ncpux 1 2 3 4\n", "unexpected cpu label");
}
