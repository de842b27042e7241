use std::time::{Duration, SystemTime};

use super::*;
use crate::collect::definitions::interface_counts;

/// Real /proc/net/dev.
const BEFORE: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0
  ifb0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 46266946    2758    0    0    0     0          0         0   235281    2227    0    0    0     0       0          0
";

fn empty_sample() -> HostSample {
    HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1))
}

fn config(include: &[&str]) -> CollectConfig {
    CollectConfig {
        include_interfaces: include.iter().map(|s| (*s).to_owned()).collect(),
        ..CollectConfig::default()
    }
}

#[track_caller]
fn check_counts(name: &str, include: &[&str], expected: bool) {
    let config = config(include);
    assert_eq!(
        interface_counts(name, &config.include_interfaces, &config.exclude_interfaces),
        expected,
        "{name} with include {include:?}"
    );
}

/// Feeds `before` then `after` (`secs` apart) and compares the second sample
/// as "iface rx_B tx_B rx_pkt tx_pkt rx_err tx_err rx_drop tx_drop" lines
/// plus a "sum rx_B tx_B" line.
#[track_caller]
fn check(before: &str, after: &str, secs: f64, include: &[&str], expected: &str) {
    let config = config(include);
    let mut state = NetState::default();
    state
        .update(before, 0.0, &config, &mut empty_sample())
        .expect("before parses");
    let mut sample = empty_sample();
    state
        .update(after, secs, &config, &mut sample)
        .expect("after parses");
    let mut got: Vec<String> = sample
        .interfaces
        .iter()
        .map(|n| {
            format!(
                "{} {} {} {} {} {} {} {} {}",
                n.interface,
                n.rx_bytes_per_sec,
                n.tx_bytes_per_sec,
                n.rx_packets_per_sec,
                n.tx_packets_per_sec,
                n.rx_errors_per_sec,
                n.tx_errors_per_sec,
                n.rx_drops_per_sec,
                n.tx_drops_per_sec
            )
        })
        .collect();
    got.push(format!(
        "sum {} {}",
        sample.net_rx_bytes_per_sec, sample.net_tx_bytes_per_sec
    ));
    assert_eq!(got.join("\n"), expected.trim());
}

#[test]
fn default_filter() {
    check_counts("eth0", &[], true);
    check_counts("ens5", &[], true);
    check_counts("enp0s31f6", &[], true);
    check_counts("wlan0", &[], true);
    check_counts("bond0", &[], true);
    check_counts("br0", &[], true);
    check_counts("lo", &[], false);
    check_counts("veth1a2b3c", &[], false);
    check_counts("docker0", &[], false);
    check_counts("br-0123456789ab", &[], false);
    check_counts("virbr0", &[], false);
    check_counts("cni0", &[], false);
    check_counts("flannel.1", &[], false);
    check_counts("cali12345", &[], false);
    check_counts("vxlan.calico", &[], false);
    check_counts("tun0", &[], false);
    check_counts("tunl0", &[], false);
    check_counts("tap0", &[], false);
    check_counts("wg0", &[], false);
    check_counts("kube-ipvs0", &[], false);
    check_counts("ifb0", &[], false);
}

#[test]
fn include_overrides_exclude() {
    check_counts("lo", &["lo", "eth0"], true);
    check_counts("eth0", &["lo", "eth0"], true);
    check_counts("eth1", &["lo", "eth0"], false);
    // Include names are exact, not prefixes.
    check_counts("eth0.100", &["eth0"], false);
}

#[test]
fn parses_real_file() {
    let parsed: Vec<_> = parse_net_dev(BEFORE)
        .collect::<Result<_, _>>()
        .expect("parses");
    let names: Vec<&str> = parsed.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["lo", "ifb0", "eth0"]);
    assert_eq!(
        parsed[2].1,
        NetCounters {
            rx_bytes: 46266946,
            rx_packets: 2758,
            tx_bytes: 235281,
            tx_packets: 2227,
            ..NetCounters::default()
        }
    );
}

#[test]
fn no_space_after_colon_on_large_counters() {
    let parsed: Vec<_> = parse_net_dev("eth0:4294967296 1 2 3 0 0 0 0 5 6 7 8 0 0 0 0\n")
        .collect::<Result<_, _>>()
        .expect("parses");
    assert_eq!(parsed[0].0, "eth0");
    assert_eq!(parsed[0].1.rx_bytes, 4294967296);
    assert_eq!(parsed[0].1.tx_drops, 8);
}

#[test]
fn rates_over_counted_interfaces() {
    // eth0 over 2s: rx +2048 B, +4 pkts, +2 errs, +2 drops; tx +1024 B, +2 pkts.
    // lo moved too and is excluded.
    let after = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   99193     129    0    0    0     0          0         0    99193     129    0    0    0     0       0          0
  ifb0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 46268994    2762    2    2    0     0          0         0   236305    2229    0    0    0     0       0          0
";
    check(
        BEFORE,
        after,
        2.0,
        &[],
        "
eth0 1024 512 2 1 1 0 1 0
sum 1024 512",
    );
}

#[test]
fn include_list_can_count_loopback() {
    // The same text appears in the rx and tx columns, so both move.
    let after = BEFORE.replace("    3193      29", "    4193      39");
    check(
        BEFORE,
        &after,
        1.0,
        &["lo"],
        "
lo 1000 1000 10 10 0 0 0 0
sum 1000 1000",
    );
}

#[test]
fn counter_wrap_is_zero_for_the_interval() {
    // rx bytes wrapped (32-bit counter); tx kept counting.
    check(
        "eth0: 4294967000 10 0 0 0 0 0 0 100 10 0 0 0 0 0 0\n",
        "eth0: 200 11 0 0 0 0 0 0 300 12 0 0 0 0 0 0\n",
        1.0,
        &[],
        "
eth0 0 200 1 2 0 0 0 0
sum 0 200",
    );
}

#[test]
fn new_interface_is_zero_for_its_first_interval() {
    check(
        "eth0: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
        "eth0: 10 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\neth1: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n",
        1.0,
        &[],
        "
eth0 10 0 0 0 0 0 0 0
eth1 0 0 0 0 0 0 0 0
sum 10 0",
    );
}

#[test]
fn malformed_line_is_reported_and_others_still_filled() {
    let mut state = NetState::default();
    let mut sample = empty_sample();
    let err = state
        .update(
            "eth0: 1 2 3\neth1: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
            1.0,
            &CollectConfig::default(),
            &mut sample,
        )
        .expect_err("short line");
    assert!(err.contains("short line for eth0"), "{err}");
    assert_eq!(sample.interfaces.len(), 1);
    assert_eq!(sample.interfaces[0].interface, "eth1");
}
