use std::time::{Duration, SystemTime};

use prost::Message;
use rollguard_common::HostSample;

use super::SampleGen;

#[test]
fn a_sample_passes_the_coordinators_checks() {
    let mut samples = SampleGen::new(7, Duration::from_secs(1));
    for _ in 0..100 {
        let made = samples.next(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        // Through the wire and back, as the coordinator takes it.
        let wire = rollguard_proto::v1::HostSample::from(&made);
        let sample = HostSample::try_from(&wire).expect("a valid sample");
        assert_eq!(sample, made);
        assert_eq!(sample.cpu_core_percent.len(), 4);
        assert_eq!(sample.filesystems.len(), 2);
        assert_eq!(sample.disks.len(), 2);
        assert_eq!(sample.interfaces.len(), 2);
        assert!(sample.pressure.is_some());
        let app = sample.app.expect("app health");
        assert_eq!(app.latency_buckets.len(), 12);
        assert!(app.errors <= app.requests);
    }
}

#[test]
fn figures_move_and_hosts_differ() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut a = SampleGen::new(1, Duration::from_secs(1));
    let mut b = SampleGen::new(2, Duration::from_secs(1));
    let (a1, a2, b1) = (a.next(at), a.next(at), b.next(at));
    assert_ne!(a1.cpu_percent, a2.cpu_percent);
    assert_ne!(a1.cpu_percent, b1.cpu_percent);
}

#[test]
fn the_encoded_size_is_that_of_a_busy_host() {
    // Every figure is non-zero, so none is left out of the encoding: a
    // sample is several hundred bytes. A change here changes the wire figures.
    let mut samples = SampleGen::new(0, Duration::from_secs(1));
    let wire = rollguard_proto::v1::HostSample::from(&samples.next(SystemTime::now()));
    let len = wire.encoded_len();
    assert!((600..1500).contains(&len), "encoded length {len}");
}
