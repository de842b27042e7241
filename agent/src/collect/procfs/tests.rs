//! The procfs backend end to end, through [`Collector`]: fixture files
//! under a scratch proc root, and once the real /proc.

use std::fs;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::collect::{Backend, Collected, Collector};

/// A scratch proc root and sys root under the temp dir, removed on drop.
struct Fixture {
    root: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "rollguard-collect-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(root.join("proc")).expect("create proc root");
        fs::create_dir_all(root.join("sys/block")).expect("create sys root");
        Self { root }
    }

    fn config(&self) -> CollectConfig {
        CollectConfig {
            backend: Backend::Procfs,
            proc_root: self.root.join("proc"),
            sys_root: self.root.join("sys"),
            ..CollectConfig::default()
        }
    }

    /// Writes `text` to `<proc root>/<rel>`, creating parent directories.
    fn write(&self, rel: &str, text: &str) {
        let path = self.root.join("proc").join(rel);
        fs::create_dir_all(path.parent().expect("has parent")).expect("create parent");
        fs::write(&path, text).expect("write fixture");
    }

    fn whole_disks(&self, names: &[&str]) {
        for name in names {
            fs::create_dir_all(self.root.join("sys/block").join(name))
                .expect("create /sys/block entry");
        }
    }

    /// Writes one consistent set of every file the collector reads.
    fn write_all(&self, stat: &str, diskstats: &str, net_dev: &str) {
        self.write("stat", stat);
        self.write("diskstats", diskstats);
        self.write("net/dev", net_dev);
        self.write("loadavg", "0.41 0.79 0.45 2/81 5597\n");
        self.write(
            "meminfo",
            "MemTotal: 1000 kB\nMemFree: 300 kB\nMemAvailable: 400 kB\nSwapTotal: 100 kB\nSwapFree: 75 kB\n",
        );
        let mounts = format!(
            "proc /proc proc rw 0 0\n/dev/vda {} ext4 rw 0 0\n/dev/vdb /no/such/dir ext4 rw 0 0\n",
            self.root.display()
        );
        self.write("self/mounts", &mounts);
        self.write(
            "pressure/cpu",
            "some avg10=1.50 avg60=0.00 avg300=0.00 total=0\n",
        );
        self.write(
            "pressure/memory",
            "some avg10=2.25 avg60=0.00 avg300=0.00 total=0\nfull avg10=9.00 avg60=0.00 avg300=0.00 total=0\n",
        );
        self.write(
            "pressure/io",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

const NET_HEADER: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
";

fn net_dev(lo_rx: u64, eth0_rx: u64, eth0_tx: u64) -> String {
    format!(
        "{NET_HEADER}    lo: {lo_rx} 1 0 0 0 0 0 0 {lo_rx} 1 0 0 0 0 0 0\n  eth0: {eth0_rx} 10 0 0 0 0 0 0 {eth0_tx} 10 0 0 0 0 0 0\n"
    )
}

fn error_strings(errors: &[CollectError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn two_scripted_readings_give_exact_rates() {
    let fixture = Fixture::new("scripted");
    fixture.whole_disks(&["vda", "loop0"]);
    fixture.write_all(
        "cpu  100 0 0 100 0 0 0 0 0 0\ncpu0 50 0 0 50 0 0 0 0 0 0\ncpu1 50 0 0 50 0 0 0 0 0 0\nintr 1\n",
        "254 0 vda 10 0 100 0 20 0 200 0 0 0 0\n254 1 vda1 10 0 100 0 20 0 200 0 0 0 0\n7 0 loop0 0 0 0 0 0 0 0 0 0 0 0\n",
        &net_dev(1000, 5000, 7000),
    );
    let t0 = Instant::now();
    let mut collector = Collector::new_at(fixture.config(), t0);

    // Two seconds later: cpu0 fully busy, cpu1 half busy; vda did 8 reads
    // (16 sectors) and 4 writes (64 sectors); eth0 moved 4096 B in, 2048 B out.
    // vda1 (partition) moved too: listed, not summed again; loop0 is not listed.
    fixture.write_all(
        "cpu  400 0 0 200 0 0 0 0 0 0\ncpu0 250 0 0 50 0 0 0 0 0 0\ncpu1 150 0 0 150 0 0 0 0 0 0\nintr 1\n",
        "254 0 vda 18 0 116 0 24 0 264 0 0 0 0\n254 1 vda1 18 0 116 0 24 0 264 0 0 0 0\n7 0 loop0 100 0 800 0 0 0 0 0 0 0 0\n",
        &net_dev(9000, 9096, 9048),
    );
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let Collected { sample, errors } = collector.collect(t0 + Duration::from_secs(2), wall);

    assert_eq!(
        error_strings(&errors),
        ["failed to stat filesystem mounted at /no/such/dir"]
    );
    assert_eq!(sample.collected_at, wall);
    assert_eq!(sample.interval, Duration::from_secs(2));
    assert_eq!(sample.cpu_percent, 75.0);
    assert_eq!(sample.cpu_core_percent, [100.0, 50.0]);
    assert_eq!(
        (sample.load1, sample.load5, sample.load15),
        (0.41, 0.79, 0.45)
    );
    assert_eq!(sample.memory_total_bytes, 1000 * 1024);
    assert_eq!(sample.memory_available_bytes, 400 * 1024);
    assert_eq!(sample.memory_used_bytes, 600 * 1024);
    assert_eq!(sample.swap_used_bytes, 25 * 1024);

    let names: Vec<&str> = sample.disks.iter().map(|d| d.device.as_str()).collect();
    assert_eq!(names, ["vda", "vda1"]);
    let vda = &sample.disks[0];
    assert_eq!(vda.device, "vda");
    assert_eq!(
        (
            vda.read_ops_per_sec,
            vda.write_ops_per_sec,
            vda.read_bytes_per_sec,
            vda.write_bytes_per_sec
        ),
        (4.0, 2.0, 8.0 * 512.0, 32.0 * 512.0)
    );
    assert_eq!(
        (
            sample.disk_read_ops_per_sec,
            sample.disk_write_ops_per_sec,
            sample.disk_read_bytes_per_sec,
            sample.disk_write_bytes_per_sec
        ),
        (4.0, 2.0, 8.0 * 512.0, 32.0 * 512.0)
    );

    let names: Vec<&str> = sample
        .interfaces
        .iter()
        .map(|n| n.interface.as_str())
        .collect();
    assert_eq!(names, ["eth0"]);
    assert_eq!(
        (sample.net_rx_bytes_per_sec, sample.net_tx_bytes_per_sec),
        (2048.0, 1024.0)
    );
    assert_eq!(sample.interfaces[0].rx_packets_per_sec, 0.0);

    assert_eq!(sample.filesystems.len(), 1);
    let fs = &sample.filesystems[0];
    assert_eq!(fs.mount_point, fixture.root.display().to_string());
    assert_eq!(
        (fs.device.as_str(), fs.fs_type.as_str()),
        ("/dev/vda", "ext4")
    );
    assert!(
        fs.total_bytes > 0 && fs.used_bytes <= fs.total_bytes,
        "{fs:?}"
    );

    assert_eq!(
        sample.pressure,
        Some(rollguard_common::sample::Pressure {
            cpu_some_avg10: 1.5,
            memory_some_avg10: 2.25,
            io_some_avg10: 0.0,
        })
    );
    assert_eq!(sample.validate(), Ok(()));

    // A third reading where vda was replaced (counters restarted) and eth0's
    // counters reset: rates are 0, never an underflow.
    fixture.write_all(
        "cpu  400 0 0 200 0 0 0 0 0 0\ncpu0 250 0 0 50 0 0 0 0 0 0\ncpu1 150 0 0 150 0 0 0 0 0 0\n",
        "254 0 vda 1 0 8 0 1 0 8 0 0 0 0\n",
        &net_dev(9000, 10, 10),
    );
    let Collected { sample, .. } = collector.collect(t0 + Duration::from_secs(3), wall);
    assert_eq!(sample.interval, Duration::from_secs(1));
    assert_eq!(sample.cpu_percent, 0.0);
    assert_eq!(
        sample.disk_read_bytes_per_sec + sample.disk_write_ops_per_sec,
        0.0
    );
    assert_eq!(
        sample.net_rx_bytes_per_sec + sample.net_tx_bytes_per_sec,
        0.0
    );
    assert_eq!(sample.validate(), Ok(()));
}

#[test]
fn failing_collectors_are_reported_and_the_rest_still_filled() {
    let fixture = Fixture::new("failing");
    fixture.write_all("cpu  1 0 0 1 0 0 0 0 0 0\n", "", &net_dev(0, 0, 0));
    fs::remove_file(fixture.root.join("proc/diskstats")).expect("remove diskstats");
    fixture.write("meminfo", "MemTotal: 1000 kB\n");
    fixture.write("pressure/io", "garbage\n");
    let t0 = Instant::now();
    let mut collector = Collector::new_at(fixture.config(), t0);
    let Collected { sample, errors } =
        collector.collect(t0 + Duration::from_secs(1), SystemTime::UNIX_EPOCH);

    let proc_root = fixture.root.join("proc");
    let expected = [
        format!("failed to read {}", proc_root.join("diskstats").display()),
        format!(
            "failed to parse {}: missing MemAvailable",
            proc_root.join("meminfo").display()
        ),
        "failed to stat filesystem mounted at /no/such/dir".to_owned(),
        format!(
            "failed to parse {}: no \"some\" line",
            proc_root.join("pressure/io").display()
        ),
    ];
    assert_eq!(error_strings(&errors), expected);
    assert!(
        matches!(&errors[0], CollectError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    );
    // The failed parts keep their empty values; the others are filled.
    assert_eq!(sample.memory_total_bytes, 0);
    assert!(sample.disks.is_empty());
    assert_eq!(sample.pressure, None);
    assert_eq!(sample.load1, 0.41);
    assert_eq!(sample.interfaces.len(), 1);
    assert_eq!(sample.filesystems.len(), 1);
}

#[test]
fn missing_pressure_dir_is_none_without_error() {
    let fixture = Fixture::new("no-psi");
    fixture.write_all("cpu  1 0 0 1 0 0 0 0 0 0\n", "", &net_dev(0, 0, 0));
    fixture.write("self/mounts", "");
    fs::remove_dir_all(fixture.root.join("proc/pressure")).expect("remove pressure");
    let mut collector = Collector::new(fixture.config());
    let Collected { sample, errors } = collector.collect(Instant::now(), SystemTime::now());
    assert_eq!(error_strings(&errors), Vec::<String>::new());
    assert_eq!(sample.pressure, None);
}

#[test]
fn no_time_passed_gives_zero_rates() {
    let fixture = Fixture::new("same-instant");
    fixture.whole_disks(&["vda"]);
    fixture.write_all(
        "cpu  1 0 0 1 0 0 0 0 0 0\n",
        "254 0 vda 0 0 0 0 0 0 0\n",
        &net_dev(0, 0, 0),
    );
    let t0 = Instant::now();
    let mut collector = Collector::new_at(fixture.config(), t0);
    fixture.write_all(
        "cpu  1 0 0 1 0 0 0 0 0 0\n",
        "254 0 vda 5 0 5 0 5 0 5\n",
        &net_dev(0, 50, 50),
    );
    let Collected { sample, .. } = collector.collect(t0, SystemTime::UNIX_EPOCH);
    assert_eq!(sample.interval, Duration::ZERO);
    assert_eq!(sample.disk_read_ops_per_sec, 0.0);
    assert_eq!(sample.net_rx_bytes_per_sec, 0.0);
}

/// Plausibility only: the figures depend on this machine.
#[test]
fn real_proc_is_plausible() {
    let config = CollectConfig {
        backend: Backend::Procfs,
        ..CollectConfig::default()
    };
    let mut collector = Collector::new(config);
    let _ = collector.collect(Instant::now(), SystemTime::now());
    let Collected { sample, errors } = collector.collect(Instant::now(), SystemTime::now());
    assert!(
        (0.0..=100.0).contains(&sample.cpu_percent),
        "cpu_percent {}",
        sample.cpu_percent
    );
    assert!(sample.memory_total_bytes > 0);
    assert!(sample.memory_used_bytes <= sample.memory_total_bytes);
    let stat = fs::read_to_string("/proc/stat").expect("read /proc/stat");
    let n_cores = stat
        .lines()
        .filter(|line| {
            line.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    assert_eq!(sample.cpu_core_percent.len(), n_cores);
    assert!(sample
        .cpu_core_percent
        .iter()
        .all(|p| (0.0..=100.0).contains(p)));
    assert_eq!(sample.validate(), Ok(()));
    // Errors are allowed (e.g. a mount this user cannot stat), but none may be a parse error.
    assert!(
        !errors
            .iter()
            .any(|err| matches!(err, CollectError::Parse { .. })),
        "{errors:?}"
    );
}
