use std::time::{Duration, SystemTime};

use super::*;

/// Head of a real /proc/meminfo.
const REAL: &str = "\
MemTotal:       24683656 kB
MemFree:        23915888 kB
MemAvailable:   24389060 kB
Buffers:            1288 kB
Cached:           666472 kB
SwapCached:            0 kB
Active:           340584 kB
Inactive:         323588 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Dirty:               100 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

/// Parses `text`, fills a sample and compares (total, available, used, swap used).
#[track_caller]
fn check(text: &str, expected: Result<(u64, u64, u64, u64), &str>) {
    let got = parse_meminfo(text).map(|info| {
        let mut sample = HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1));
        info.fill(&mut sample);
        (
            sample.memory_total_bytes,
            sample.memory_available_bytes,
            sample.memory_used_bytes,
            sample.swap_used_bytes,
        )
    });
    match (got, expected) {
        (Ok(got), Ok(want)) => assert_eq!(got, want),
        (Err(got), Err(fragment)) => assert!(got.contains(fragment), "{got:?} lacks {fragment:?}"),
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

#[test]
fn real_host_without_swap() {
    check(
        REAL,
        Ok((
            24683656 * 1024,
            24389060 * 1024,
            (24683656 - 24389060) * 1024,
            0,
        )),
    );
}

#[test]
fn swap_in_use() {
    check(
        "MemTotal: 100 kB\nMemAvailable: 40 kB\nSwapTotal: 50 kB\nSwapFree: 20 kB\n",
        Ok((102400, 40960, 61440, 30720)),
    );
}

#[test]
fn available_above_total_saturates() {
    check(
        "MemTotal: 100 kB\nMemAvailable: 120 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
        Ok((102400, 122880, 0, 0)),
    );
}

#[test]
fn errors() {
    check(
        "MemTotal: 100 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
        Err("missing MemAvailable"),
    );
    check("MemTotal: x kB\n", Err("MemTotal: bad value \"x\""));
    check("MemTotal: 100 MB\n", Err("expected unit kB"));
    check("", Err("missing MemTotal"));
}
