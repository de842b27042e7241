use std::time::Duration;

use super::{
    cpu_percent, listening_inodes, parse_cpu_ticks, parse_machine_busy, parse_rss_kib, ProcSample,
};

#[test]
fn stat_fields_count_after_the_command_name() {
    // A command name with spaces and a parenthesis must not shift the fields.
    let stat = "4242 (rollguard (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                250 50 0 0 20 0 3 0 12345 1000000 1200 18446744073709551615";
    assert_eq!(parse_cpu_ticks(stat), Some(300));
    assert_eq!(parse_cpu_ticks("garbage"), None);
}

#[test]
fn rss_from_status() {
    let status = "Name:\tcoordinator\nVmPeak:\t  90000 kB\nVmRSS:\t   51234 kB\nThreads:\t3\n";
    assert_eq!(parse_rss_kib(status), Some(51234));
    assert_eq!(parse_rss_kib("Name:\tx\n"), None);
}

#[test]
fn cpu_percent_of_one_core() {
    let before = ProcSample {
        cpu_ticks: 100,
        rss_kib: 0,
    };
    let after = ProcSample {
        cpu_ticks: 150,
        rss_kib: 0,
    };
    // 50 ticks = 0.5 s of CPU over 2 s.
    let percent = cpu_percent(before, after, Duration::from_secs(2));
    assert!((percent - 25.0).abs() < 1e-9, "{percent}");
}

#[test]
fn listening_sockets_by_port() {
    let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1DB0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:1DB0 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 100 0 0 10 0
";
    // 0x1DB0 = 7600: the listener, not the connection to it.
    assert_eq!(listening_inodes(table, 7600), vec![111]);
    assert_eq!(listening_inodes(table, 22), vec![333]);
    assert!(listening_inodes(table, 40000).is_empty());
}

#[test]
fn machine_busy_leaves_out_idle_and_iowait() {
    let stat = "cpu  100 5 50 1000 20 3 2 0 7 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
    assert_eq!(parse_machine_busy(stat), Some(160));
    assert_eq!(parse_machine_busy("intr 1 2 3\n"), None);
}
