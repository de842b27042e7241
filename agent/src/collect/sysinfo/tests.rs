use std::time::{Duration, SystemTime};

use super::*;

/// Real sysinfo: what the backend refreshes, and what it never touches.
#[test]
fn refreshes_no_process() {
    let mut source = SysinfoSource::new(CollectConfig::default());
    let mut errors = Vec::new();
    for _ in 0..2 {
        let mut sample = HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1));
        source.read_counters(1.0, &mut sample, &mut errors);
        source.read_gauges(&mut sample, &mut errors);
        assert!(!sample.cpu_core_percent.is_empty());
    }
    let system = source.system.as_ref().expect("sysinfo supports this OS");
    assert!(system.processes().is_empty(), "a process list was read");
    assert!(
        !errors
            .iter()
            .any(|err| matches!(err, CollectError::Sysinfo { .. })),
        "{errors:?}"
    );
}

#[test]
fn stats_name_resolves_device_paths() {
    // Not a path: kept as sysinfo gives it (a macOS volume name, a ZFS dataset).
    assert_eq!(stats_name(OsStr::new("Macintosh HD")), "Macintosh HD");
    assert_eq!(stats_name(OsStr::new("zroot/ROOT")), "zroot/ROOT");
    // A path that does not exist: only `/dev/` is dropped.
    assert_eq!(
        stats_name(OsStr::new("/dev/no-such-disk9")),
        "no-such-disk9"
    );
}
