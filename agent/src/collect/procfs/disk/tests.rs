use std::cell::RefCell;
use std::time::{Duration, SystemTime};

use super::*;

/// Real /proc/diskstats of a VM, plus a partition line.
const BEFORE: &str = "\
   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   7       1 loop1 12 0 40 3 0 0 0 0 0 8 3 0 0 0 0 0 0
 254       0 vda 17881 3847 2866690 32031 2021 16632 1656056 9556 0 4728 42499 3506 56 48672 896 61 14
 254       1 vda1 17000 3800 2800000 32000 2000 16600 1650000 9500 0 4700 42400 3500 56 48672 896 0 0
 253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
";

fn empty_sample() -> HostSample {
    HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1))
}

/// Whole-disk decision: name plus whether /sys/block/<name> exists.
#[track_caller]
fn check_whole(name: &str, in_sys_block: bool, expected: bool) {
    assert_eq!(
        is_whole_disk(name, in_sys_block),
        expected,
        "{name} (in /sys/block: {in_sys_block})"
    );
}

/// Feeds `before` then `after` (`secs` apart) with `sys_block` as the content
/// of /sys/block, and compares the second sample as
/// "device read_B/s write_B/s read_ops/s write_ops/s" lines plus a "sum" line.
#[track_caller]
fn check(before: &str, after: &str, secs: f64, sys_block: &[&str], expected: &str) {
    let mut state = DiskState::default();
    let in_sys_block = |name: &str| sys_block.contains(&name);
    state
        .update(before, 0.0, in_sys_block, &mut empty_sample())
        .expect("before parses");
    let mut sample = empty_sample();
    state
        .update(after, secs, in_sys_block, &mut sample)
        .expect("after parses");
    let mut got: Vec<String> = sample
        .disks
        .iter()
        .map(|d| {
            format!(
                "{} {} {} {} {}",
                d.device,
                d.read_bytes_per_sec,
                d.write_bytes_per_sec,
                d.read_ops_per_sec,
                d.write_ops_per_sec
            )
        })
        .collect();
    got.push(format!(
        "sum {} {} {} {}",
        sample.disk_read_bytes_per_sec,
        sample.disk_write_bytes_per_sec,
        sample.disk_read_ops_per_sec,
        sample.disk_write_ops_per_sec
    ));
    assert_eq!(got.join("\n"), expected.trim());
}

#[test]
fn whole_disk_filter() {
    check_whole("sda", true, true);
    check_whole("sda1", false, false);
    check_whole("nvme0n1", true, true);
    check_whole("nvme0n1p1", false, false);
    check_whole("vda", true, true);
    check_whole("xvda", true, true);
    check_whole("mmcblk0", true, true);
    check_whole("cciss/c0d0", true, true);
    check_whole("dm-0", true, false);
    check_whole("loop0", true, false);
    check_whole("md0", true, false);
    check_whole("md127", true, false);
    check_whole("zram0", true, false);
    check_whole("ram0", true, false);
    check_whole("nbd0", true, false);
    check_whole("sr0", true, false);
    check_whole("fd0", true, false);
    check_whole("sdb", false, false);
}

#[test]
fn parses_real_line() {
    let parsed: Vec<_> = parse_diskstats(BEFORE)
        .collect::<Result<_, _>>()
        .expect("parses");
    assert_eq!(parsed.len(), 5);
    assert_eq!(
        parsed[2],
        (
            "vda",
            DiskCounters {
                reads: 17881,
                sectors_read: 2866690,
                writes: 2021,
                sectors_written: 1656056,
            }
        )
    );
}

#[test]
fn old_kernel_line_with_eleven_fields() {
    let parsed: Vec<_> = parse_diskstats("   8       0 sda 10 0 80 5 20 0 160 9 0 12 14\n")
        .collect::<Result<_, _>>()
        .expect("parses");
    assert_eq!(parsed[0].1.sectors_written, 160);
}

#[test]
fn partitions_are_listed_and_only_whole_disks_are_summed() {
    // vda: +2 reads, +16 sectors read, +4 writes, +64 sectors written over 2s.
    // vda1 (partition) moves as much: listed, not summed again. loop1 (in
    // /sys/block, but a loop device) moves too and is not listed.
    let after = "\
   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   7       1 loop1 112 0 4040 3 0 0 0 0 0 8 3 0 0 0 0 0 0
 254       0 vda 17883 3847 2866706 32031 2025 16632 1656120 9556 0 4728 42499 3506 56 48672 896 61 14
 254       1 vda1 17002 3800 2800016 32000 2004 16600 1650064 9500 0 4700 42400 3500 56 48672 896 0 0
 253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
";
    check(
        BEFORE,
        after,
        2.0,
        &["loop0", "loop1", "vda", "zram0"],
        "
vda 4096 16384 1 2
vda1 4096 16384 1 2
sum 4096 16384 1 2",
    );
}

#[test]
fn sums_cover_every_whole_disk_and_nothing_stacked_on_one() {
    // dm-0 (in /sys/block) stacks on nvme0n1p1: listed, never summed.
    check(
        "8 0 sda 0 0 0 0 0 0 0\n259 0 nvme0n1 0 0 0 0 0 0 0\n259 1 nvme0n1p1 0 0 0 0 0 0 0\n253 0 dm-0 0 0 0 0 0 0 0\n",
        "8 0 sda 1 0 2 0 3 0 4\n259 0 nvme0n1 10 0 20 0 30 0 40\n259 1 nvme0n1p1 10 0 20 0 30 0 40\n253 0 dm-0 10 0 20 0 30 0 40\n",
        1.0,
        &["sda", "nvme0n1", "dm-0"],
        "
sda 1024 2048 1 3
nvme0n1 10240 20480 10 30
nvme0n1p1 10240 20480 10 30
dm-0 10240 20480 10 30
sum 11264 22528 11 33",
    );
}

#[test]
fn counter_decrease_is_zero_for_the_interval() {
    // The disk was replaced: every counter restarted near 0.
    check(
        "8 0 sda 100 0 800 0 100 0 800\n",
        "8 0 sda 5 0 40 0 5 0 40\n",
        1.0,
        &["sda"],
        "
sda 0 0 0 0
sum 0 0 0 0",
    );
}

#[test]
fn new_device_is_zero_for_its_first_interval() {
    check(
        "8 0 sda 0 0 0 0 0 0 0\n",
        "8 0 sda 1 0 1 0 1 0 1\n8 16 sdb 100 0 800 0 100 0 800\n",
        1.0,
        &["sda", "sdb"],
        "
sda 512 512 1 1
sdb 0 0 0 0
sum 512 512 1 1",
    );
}

#[test]
fn no_time_passed_is_zero() {
    check(
        "8 0 sda 0 0 0 0 0 0 0\n",
        "8 0 sda 1 0 1 0 1 0 1\n",
        0.0,
        &["sda"],
        "
sda 0 0 0 0
sum 0 0 0 0",
    );
}

#[test]
fn whole_disk_decision_is_cached_per_name() {
    let calls = RefCell::new(Vec::new());
    let in_sys_block = |name: &str| {
        calls.borrow_mut().push(name.to_owned());
        name == "sda"
    };
    let mut state = DiskState::default();
    for _ in 0..3 {
        state
            .update(BEFORE, 1.0, in_sys_block, &mut empty_sample())
            .expect("parses");
    }
    // Asked once per storage device (vda, vda1), never again; loop and
    // zram devices are not asked about at all.
    assert_eq!(*calls.borrow(), ["vda", "vda1"]);
}

#[test]
fn malformed_line_is_reported_and_others_still_filled() {
    let mut state = DiskState::default();
    let mut sample = empty_sample();
    let err = state
        .update(
            "8 0 sda 0 0 0 0 0 0 0\n8 16 sdb 1 2\n",
            1.0,
            |_: &str| true,
            &mut sample,
        )
        .expect_err("short line");
    assert!(err.contains("short line for sdb"), "{err}");
    assert_eq!(sample.disks.len(), 1);
    assert_eq!(sample.disks[0].device, "sda");
}

#[test]
fn the_list_stops_at_the_coordinators_limit_whole_disks_first() {
    let mut text = String::new();
    // Partitions first in the file, as the kernel may list them.
    for j in 0..10 {
        text.push_str(&format!("8 {j} part{j} 0 0 0 0 0 0 0\n"));
    }
    for i in 0..1020 {
        text.push_str(&format!("8 {i} disk{i} 0 0 0 0 0 0 0\n"));
    }
    let mut state = DiskState::default();
    let in_sys_block = |name: &str| name.starts_with("disk");
    let mut sample = empty_sample();
    let err = state
        .update(&text, 1.0, in_sys_block, &mut sample)
        .expect_err("the overflow is reported");
    assert!(
        err.contains("6 partitions or stacked devices left out"),
        "{err}"
    );
    assert_eq!(sample.disks.len(), MAX_DEVICES);
    assert!(sample.disks[..1020]
        .iter()
        .all(|d| d.device.starts_with("disk")));
    assert!(sample.disks[1020..]
        .iter()
        .all(|d| d.device.starts_with("part")));
    assert!(sample.validate().is_ok(), "the coordinator takes it");
}
