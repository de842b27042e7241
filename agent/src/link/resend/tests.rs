use std::time::{Duration, SystemTime};

use rollguard_common::sample::{AppHealth, Bucket, DiskIo, FilesystemUsage, NetIo};
use rollguard_common::HostSample;

use super::*;

fn seqs(buffer: &mut ResendBuffer, max_batch: usize) -> Vec<Vec<u64>> {
    buffer
        .chunks(max_batch)
        .map(|chunk| chunk.iter().map(|u| u.seq).collect())
        .collect()
}

fn empty() -> HostSample {
    HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1))
}

/// A host as they come: 8 cores, 6 mounts, 4 block devices, 4
/// interfaces, and an app scraped (12 latency buckets, 3 gauges) and probed
/// (12 buckets).
fn typical() -> HostSample {
    let buckets = |n: usize| {
        (0..n)
            .map(|i| Bucket {
                upper_bound: 0.005 * 2f64.powi(i as i32),
                cumulative_count: i as f64,
            })
            .collect::<Vec<_>>()
    };
    let mut sample = empty();
    sample.cpu_core_percent = vec![12.5; 8];
    sample.filesystems = [
        "/",
        "/boot",
        "/var",
        "/var/lib/docker",
        "/home",
        "/srv/data",
    ]
    .iter()
    .map(|mount| FilesystemUsage {
        mount_point: (*mount).to_owned(),
        device: "/dev/mapper/vg0-root".to_owned(),
        fs_type: "ext4".to_owned(),
        used_bytes: 1 << 30,
        total_bytes: 1 << 34,
    })
    .collect();
    sample.disks = ["nvme0n1", "nvme0n1p1", "nvme0n1p2", "dm-0"]
        .iter()
        .map(|device| DiskIo {
            device: (*device).to_owned(),
            ..DiskIo::default()
        })
        .collect();
    sample.interfaces = ["eth0", "eth1", "bond0", "docker0"]
        .iter()
        .map(|interface| NetIo {
            interface: (*interface).to_owned(),
            ..NetIo::default()
        })
        .collect();
    sample.app = Some(AppHealth {
        requests: 400.0,
        latency_buckets: buckets(12),
        gauges: vec![
            ("cache_hit_ratio".to_owned(), 0.9),
            ("queue_depth".to_owned(), 3.0),
            ("worker_threads_busy".to_owned(), 7.0),
        ],
        scrape_enabled: true,
        scrapes: 1,
        probe_enabled: true,
        probes: 1,
        probe_latency_buckets: buckets(12),
        ..AppHealth::default()
    });
    sample
}

#[test]
fn acks_forget_and_batches_keep_the_order() {
    let mut buffer = ResendBuffer::new(1 << 20);
    assert!(buffer.newest().is_none());
    for _ in 0..5 {
        buffer.push(&empty());
    }
    assert_eq!(buffer.newest().map(|(seq, _)| seq), Some(4));
    buffer.ack(1);
    assert_eq!(seqs(&mut buffer, 2), [vec![2, 3], vec![4]]);
    // A zero batch size from the coordinator still sends one at a time.
    assert_eq!(seqs(&mut buffer, 0), [vec![2], vec![3], vec![4]]);
    assert_eq!(buffer.len_and_bytes(), (3, 3 * footprint(&empty())));
    buffer.ack(4);
    assert_eq!(buffer.len_and_bytes(), (0, 0));
    assert_eq!(buffer.dropped(), 0);
}

#[test]
fn the_byte_bound_drops_the_oldest() {
    let one = footprint(&typical());
    // Room for ten and a half samples: ten are kept.
    let mut buffer = ResendBuffer::new(10 * one + one / 2);
    for _ in 0..25 {
        buffer.push(&typical());
    }
    let kept: Vec<u64> = seqs(&mut buffer, usize::MAX).concat();
    assert_eq!(kept, (15..25).collect::<Vec<u64>>());
    assert_eq!(buffer.len_and_bytes(), (10, 10 * one));
    assert_eq!(buffer.take_dropped(), 15);
    assert_eq!(buffer.dropped(), 0, "taken");

    // Smaller samples: more of them fit in the same bytes.
    let small = footprint(&empty());
    assert!(small < one / 2, "{small} vs {one}");
    for _ in 0..40 {
        buffer.push(&empty());
    }
    let (n_kept, bytes) = buffer.len_and_bytes();
    assert!(n_kept > 20, "{n_kept}");
    assert!(bytes <= 10 * one + one / 2, "{bytes}");
}

#[test]
fn the_newest_sample_is_kept_even_over_the_bound() {
    let mut buffer = ResendBuffer::new(1);
    buffer.push(&typical());
    buffer.push(&typical());
    assert_eq!(seqs(&mut buffer, 10), [vec![1]]);
    assert_eq!(buffer.take_dropped(), 1);
}

#[test]
fn a_typical_sample_costs_a_few_kib_so_the_default_holds_a_ten_minute_cut() {
    let one = footprint(&typical());
    // The figures the README and the default's doc give.
    assert!((2_000..3_200).contains(&one), "{one} bytes");
    let default = crate::config::DEFAULT_RESEND_BUFFER;
    let bytes = rollguard_common::config::parse_bytes("resend_buffer", default).expect("default");
    let ten_minutes = 600 * one as u64;
    assert!(ten_minutes * 2 < bytes, "{ten_minutes} of {bytes}");
}
