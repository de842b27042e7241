//! What holds for every backend: the config, the shared definitions, and
//! (on Linux) the two backends agreeing over one real interval. The procfs backend's own tests are in `procfs/tests.rs`.

use std::path::Path;

use super::definitions::PrevCounters;
use super::*;

#[test]
fn default_config() {
    let config = CollectConfig::default();
    assert_eq!(config.backend, Backend::DEFAULT);
    assert_eq!(config.proc_root, Path::new("/proc"));
    assert_eq!(config.sys_root, Path::new("/sys"));
    assert!(config.include_interfaces.is_empty());
    assert_eq!(
        config.exclude_interfaces.len(),
        DEFAULT_EXCLUDED_INTERFACES.len()
    );
    assert!(config
        .exclude_interfaces
        .iter()
        .any(|prefix| prefix == "lo"));
}

#[track_caller]
fn check_backend(value: &str, expected: Result<&str, &str>) {
    match (Backend::parse(value), expected) {
        (Ok(backend), Ok(name)) => assert_eq!(backend.name(), name),
        (Err(message), Err(needle)) => {
            assert!(message.contains(needle), "`{message}` lacks `{needle}`");
        }
        (got, _) => panic!("{value:?}: expected {expected:?}, got {got:?}"),
    }
}

#[test]
fn backend_names() {
    check_backend("", Err("expected `procfs` or `sysinfo`, got ``"));
    check_backend("proc", Err("expected `procfs` or `sysinfo`, got `proc`"));
    check_backend("Sysinfo", Err("got `Sysinfo`"));
    if cfg!(target_os = "linux") {
        check_backend("procfs", Ok("procfs"));
        assert_eq!(Backend::DEFAULT.name(), "procfs");
    } else {
        check_backend("procfs", Err("only Linux has"));
        assert_eq!(Backend::DEFAULT.name(), "sysinfo");
    }
    check_backend("sysinfo", Ok("sysinfo"));
}

#[test]
fn per_sec_cases() {
    assert_eq!(per_sec(10, 30, 2.0), 10.0);
    assert_eq!(per_sec(30, 10, 2.0), 0.0);
    assert_eq!(per_sec(10, 30, 0.0), 0.0);
    assert_eq!(per_sec(u64::MAX, 0, 1.0), 0.0);
}

#[test]
fn prev_counters_start_afresh_for_a_device_that_came_back() {
    let mut prev = PrevCounters::default();
    prev.start();
    // First sight: the reading itself, so every delta is 0.
    assert_eq!(prev.swap("sda", 10u64), 10);
    assert_eq!(prev.swap("sdb", 5), 5);
    prev.finish();
    prev.start();
    assert_eq!(prev.swap("sda", 30), 10);
    // sdb is not listed: forgotten.
    prev.finish();
    prev.start();
    assert_eq!(prev.swap("sdb", 7), 7);
    assert_eq!(prev.swap("sda", 31), 30);
    prev.finish();
}

/// Plausibility only: the figures depend on this machine.
#[test]
fn real_sysinfo_is_plausible() {
    let config = CollectConfig {
        backend: Backend::Sysinfo,
        ..CollectConfig::default()
    };
    let t0 = Instant::now();
    let mut collector = Collector::new_at(config, t0);
    let Collected { sample, errors } =
        collector.collect(t0 + Duration::from_secs(1), SystemTime::now());
    // A mount this user cannot stat is allowed; sysinfo failing is not.
    assert!(
        !errors
            .iter()
            .any(|err| matches!(err, CollectError::Sysinfo { .. })),
        "{errors:?}"
    );
    assert!((0.0..=100.0).contains(&sample.cpu_percent));
    assert!(!sample.cpu_core_percent.is_empty());
    assert!(sample.memory_total_bytes > 0);
    assert!(sample.memory_used_bytes <= sample.memory_total_bytes);
    assert_eq!(
        sample.pressure.is_some(),
        cfg!(target_os = "linux") && Path::new("/proc/pressure").exists()
    );
    assert_eq!(sample.validate(), Ok(()));
}

#[cfg(target_os = "linux")]
mod agree;
