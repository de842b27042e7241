use std::time::{Duration, SystemTime};

use prost::Message;
use rollguard_common::sample::{AppHealth, DiskIo, FilesystemUsage, NetIo};

use super::*;

const BOUNDS: [f64; 4] = [0.01, 0.1, 1.0, f64::INFINITY];

fn bucket_list(counts: [f64; 4]) -> Vec<Bucket> {
    BOUNDS
        .iter()
        .zip(counts)
        .map(|(&upper_bound, cumulative_count)| Bucket {
            upper_bound,
            cumulative_count,
        })
        .collect()
}

/// A whole sample as the agent makes it; `n` moves every figure.
fn sample(n: u32) -> HostSample {
    let f = f64::from(n);
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + u64::from(n));
    HostSample {
        cpu_percent: 10.0 + f,
        cpu_core_percent: vec![5.0 + f, 15.0],
        memory_used_bytes: 1 << 30,
        memory_total_bytes: 4 << 30,
        filesystems: vec![FilesystemUsage {
            mount_point: "/".to_owned(),
            device: "/dev/nvme0n1p2".to_owned(),
            fs_type: "ext4".to_owned(),
            used_bytes: 100 + u64::from(n),
            total_bytes: 1000,
        }],
        disks: vec![DiskIo {
            device: "nvme0n1".to_owned(),
            read_bytes_per_sec: 4096.0 * f,
            ..Default::default()
        }],
        interfaces: ["eth0", "eth1"]
            .iter()
            .map(|name| NetIo {
                interface: (*name).to_owned(),
                rx_bytes_per_sec: 1e6 + f,
                ..Default::default()
            })
            .collect(),
        app: Some(AppHealth {
            requests: 200.0 + f,
            errors: 2.0,
            latency_buckets: bucket_list([10.0 + f, 150.0, 199.0, 200.0 + f]),
            latency_count: 200.0 + f,
            probe_latency_buckets: bucket_list([1.0, 1.0, 1.0, 1.0]),
            // Sorted by name, as the agent makes them.
            gauges: vec![
                ("cache_hit_ratio".to_owned(), 0.93),
                ("queue_depth".to_owned(), 12.0 + f),
            ],
            scrape_enabled: true,
            scrapes: 1,
            probe_error: "timed out".to_owned(),
            ..Default::default()
        }),
        ..HostSample::empty(at, Duration::from_secs(1))
    }
}

/// Sends `samples` through one stream's compactor and expander.
fn through_stream(samples: &[HostSample]) -> Vec<pb::HostSample> {
    let mut compactor = Compactor::new();
    let mut expander = Expander::new();
    samples
        .iter()
        .map(|whole| {
            let sent = compactor.encode(whole);
            let received = expander.decode(&sent).expect("decodes");
            assert_eq!(&received, whole, "the coordinator sees the whole sample");
            sent
        })
        .collect()
}

#[test]
fn first_sample_is_whole_and_later_ones_are_compact() {
    let samples: Vec<_> = (0..3).map(sample).collect();
    let sent = through_stream(&samples);
    assert!(!sent[0].same_layout);
    assert_eq!(sent[0], pb::HostSample::from(&samples[0]));
    for compact in &sent[1..] {
        assert!(compact.same_layout);
        assert!(compact.filesystems[0].mount_point.is_empty());
        assert!(compact.interfaces.iter().all(|i| i.interface.is_empty()));
        let app = compact.app.as_ref().expect("app");
        assert!(app.latency_buckets.is_empty() && app.gauges.is_empty());
        assert_eq!(app.probe_latency_counts, vec![1, 1, 1, 1]);
        // Gauge values follow the byte order of their names.
        assert_eq!(app.gauge_values[0], 0.93);
    }
}

#[test]
fn compact_sample_is_less_than_half_the_bytes() {
    let sent = through_stream(&[sample(1), sample(2)]);
    let (whole, compact) = (sent[0].encoded_len(), sent[1].encoded_len());
    assert!(compact * 2 < whole, "compact {compact} B, whole {whole} B");
}

#[test]
fn a_changed_layout_is_sent_whole_and_becomes_the_new_one() {
    let mut renamed = sample(2);
    renamed.interfaces[1].interface = "eth2".to_owned();
    let mut fewer_gauges = sample(4);
    fewer_gauges.interfaces[1].interface = "eth2".to_owned();
    fewer_gauges
        .app
        .as_mut()
        .expect("app")
        .gauges
        .retain(|(name, _)| name != "queue_depth");
    let mut no_app = sample(6);
    no_app.app = None;
    let mut back_to_eth2 = sample(7);
    back_to_eth2.interfaces[1].interface = "eth2".to_owned();
    let stream = [
        sample(1),
        renamed.clone(),
        {
            let mut s = sample(3);
            s.interfaces[1].interface = "eth2".to_owned();
            s
        },
        fewer_gauges,
        no_app,
        back_to_eth2,
    ];
    let layout_sent: Vec<bool> = through_stream(&stream)
        .iter()
        .map(|sent| !sent.same_layout)
        .collect();
    assert_eq!(layout_sent, [true, true, false, true, true, true]);
}

#[test]
fn fractional_counts_go_whole_without_losing_the_layout() {
    let mut fractional = sample(2);
    fractional.app.as_mut().expect("app").latency_buckets[0].cumulative_count = 0.5;
    let sent = through_stream(&[sample(1), fractional, sample(3)]);
    assert!(!sent[1].same_layout);
    assert!(sent[2].same_layout);
}

#[test]
fn a_reset_compactor_sends_the_layout_again() {
    let mut compactor = Compactor::new();
    compactor.encode(&sample(1));
    compactor.reset();
    assert!(!compactor.encode(&sample(2)).same_layout);
    assert!(compactor.encode(&sample(3)).same_layout);
}

#[test]
fn a_gauge_named_twice_goes_whole_and_never_out_of_step() {
    let mut twice = sample(2);
    let app = twice.app.as_mut().expect("app");
    // The layout has cache_hit_ratio and queue_depth: as many names, all found.
    app.gauges = vec![
        ("cache_hit_ratio".to_owned(), 0.5),
        ("cache_hit_ratio".to_owned(), 0.6),
    ];
    let mut compactor = Compactor::new();
    assert!(!compactor.encode(&sample(1)).same_layout);
    assert!(!compactor.encode(&twice).same_layout);
}

#[test]
fn compact_sample_without_an_app_expands() {
    let mut first = sample(1);
    first.app = None;
    let mut second = sample(2);
    second.app = None;
    let sent = through_stream(&[first, second]);
    assert!(sent[1].same_layout);
}

fn expect_rejected(expander: &mut Expander, bad: pb::HostSample, field: &str) {
    match expander.decode(&bad) {
        Err(WireError::Invalid { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected `{field}` rejected, got {other:?}"),
    }
}

#[test]
fn hostile_compact_samples_are_rejected() {
    let compact = {
        let mut compactor = Compactor::new();
        compactor.encode(&sample(1));
        compactor.encode(&sample(2))
    };
    assert!(compact.same_layout);

    // No layout on the stream yet.
    expect_rejected(&mut Expander::new(), compact.clone(), "same_layout");

    let mut expander = Expander::new();
    expander
        .decode(&pb::HostSample::from(&sample(1)))
        .expect("whole sample");
    let mut extra_disk = compact.clone();
    extra_disk.disks.push(pb::DiskIo::default());
    expect_rejected(&mut expander, extra_disk, "disks");
    let mut named = compact.clone();
    named.interfaces[0].interface = "eth9".to_owned();
    expect_rejected(&mut expander, named, "interfaces");
    let mut short_counts = compact.clone();
    short_counts.app.as_mut().expect("app").latency_counts.pop();
    expect_rejected(&mut expander, short_counts, "app.latency_counts");
    let mut extra_gauge = compact.clone();
    extra_gauge
        .app
        .as_mut()
        .expect("app")
        .gauge_values
        .push(1.0);
    expect_rejected(&mut expander, extra_gauge, "app.gauge_values");
    let mut with_buckets = compact.clone();
    with_buckets.app.as_mut().expect("app").latency_buckets = pb::HostSample::from(&sample(2))
        .app
        .expect("app")
        .latency_buckets;
    expect_rejected(&mut expander, with_buckets, "app");
    let mut whole_with_counts = pb::HostSample::from(&sample(3));
    whole_with_counts.app.as_mut().expect("app").latency_counts = vec![1];
    expect_rejected(&mut expander, whole_with_counts, "app");

    // The stream's layout survived every rejection.
    assert_eq!(expander.decode(&compact).expect("decodes"), sample(2));
}

/// `sample(n)` with `extra` more interfaces named `name_len` bytes each.
fn with_interfaces(n: u32, extra: usize, name_len: usize) -> pb::HostSample {
    let mut whole = sample(n);
    whole.interfaces.extend((0..extra).map(|idx| NetIo {
        interface: format!("{idx:0>name_len$}"),
        ..Default::default()
    }));
    pb::HostSample::from(&whole)
}

// Issue 10: a 4 MiB layout was copied into each of a batch's 256 compact
// samples, ~1 GiB for one message.
#[test]
fn a_layout_past_the_limits_is_rejected_and_the_old_one_kept() {
    let mut expander = Expander::new();
    expander
        .decode(&pb::HostSample::from(&sample(1)))
        .expect("whole sample");
    // sample() names 6 devices and gauges.
    let at_name_limit = with_interfaces(2, MAX_LAYOUT_NAMES - 6, 4);
    let mut at_limit = Expander::new();
    at_limit.decode(&at_name_limit).expect("at the name limit");
    expect_rejected(
        &mut expander,
        with_interfaces(2, MAX_LAYOUT_NAMES - 5, 4),
        "sample",
    );
    // 17 names of 4 KiB each (the longest a name may be) pass 64 KiB.
    expect_rejected(
        &mut expander,
        with_interfaces(2, MAX_LAYOUT_BYTES / 4096 + 1, 4096),
        "sample",
    );
    let compact = {
        let mut compactor = Compactor::new();
        compactor.encode(&sample(1));
        compactor.encode(&sample(2))
    };
    assert_eq!(expander.decode(&compact).expect("decodes"), sample(2));
}

/// A whole sample whose latency bounds are `BOUNDS` scaled by `scale`.
fn with_bounds(scale: f64) -> pb::HostSample {
    let mut whole = sample(1);
    let app = whole.app.as_mut().expect("app");
    for bucket in &mut app.latency_buckets {
        bucket.upper_bound *= scale;
    }
    pb::HostSample::from(&whole)
}

// Issue 10: bounds that differ sample to sample made a round's bucket merge
// quadratic under the fleet lock.
#[test]
fn a_stream_has_at_most_max_bound_sets_per_histogram() {
    let mut expander = Expander::new();
    let scales = (1..=MAX_BOUND_SETS).map(|n| n as f64);
    for scale in scales.clone().chain(scales.rev()) {
        expander
            .decode(&with_bounds(scale))
            .expect("a set the stream may have");
    }
    // The probe histogram has one set, which does not count against latency's.
    expect_rejected(
        &mut expander,
        with_bounds(MAX_BOUND_SETS as f64 + 1.0),
        "app.latency_buckets",
    );
    expander.decode(&with_bounds(1.0)).expect("a known set");
}
