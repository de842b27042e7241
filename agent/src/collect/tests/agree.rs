//! The two backends over the same real interval (issue 14): one core kept
//! busy, a file written and fsynced beside the test binary, and bytes sent
//! over loopback while both measure; they must describe the same host.
//!
//! Real time and real IO, unlike the other unit tests: the point is what
//! this machine's kernel and sysinfo report. The only sleep is the
//! measuring interval itself; conditions are polled with a deadline.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rollguard_common::HostSample;

use crate::collect::{Backend, CollectConfig, Collected, Collector};

/// The interval both backends measure.
const INTERVAL: Duration = Duration::from_secs(1);
/// Written and fsynced during the interval.
const DISK_BYTES: usize = 16 << 20;
/// Sent over loopback during the interval.
const NET_BYTES: usize = 8 << 20;

#[test]
fn procfs_and_sysinfo_agree_over_one_interval() {
    let spinner = Spinner::start();
    // Every interface, loopback included, so the test's own traffic counts.
    let config = |backend| CollectConfig {
        backend,
        exclude_interfaces: Vec::new(),
        ..CollectConfig::default()
    };
    let t0 = Instant::now();
    let mut procfs = Collector::new_at(config(Backend::Procfs), t0);
    let mut sysinfo = Collector::new_at(config(Backend::Sysinfo), t0);

    let scratch = ScratchFile::beside_the_test_binary();
    scratch.write_and_sync(DISK_BYTES);
    send_over_loopback(NET_BYTES);
    // The measuring interval (longer if the IO above took longer).
    thread::sleep(INTERVAL.saturating_sub(t0.elapsed()));

    let now = Instant::now();
    let wall = SystemTime::now();
    let Collected {
        sample: from_procfs,
        errors: procfs_errors,
    } = procfs.collect(now, wall);
    let Collected {
        sample: from_sysinfo,
        errors: sysinfo_errors,
    } = sysinfo.collect(now, wall);
    drop(spinner);
    let secs = from_procfs.interval.as_secs_f64();
    assert_eq!(from_procfs.interval, from_sysinfo.interval);
    assert_eq!(
        procfs_errors.len(),
        sysinfo_errors.len(),
        "{procfs_errors:?} / {sysinfo_errors:?}"
    );

    check_cpu(&from_procfs, &from_sysinfo);
    check_memory(&from_procfs, &from_sysinfo);
    check_filesystems(&from_procfs, &from_sysinfo);
    check_interfaces(&from_procfs, &from_sysinfo, secs);
    check_disks(&from_procfs, &from_sysinfo, secs, &scratch.path);
    assert_eq!(
        from_procfs.pressure.is_some(),
        from_sysinfo.pressure.is_some()
    );
    assert_eq!(from_sysinfo.validate(), Ok(()));
}

fn check_cpu(procfs: &HostSample, sysinfo: &HostSample) {
    let n_cores = procfs.cpu_core_percent.len();
    assert_eq!(sysinfo.cpu_core_percent.len(), n_cores);
    // One core of n spun all along (the rest of the machine may add more).
    let least = 100.0 / n_cores as f64 * 0.8;
    for (name, sample) in [("procfs", procfs), ("sysinfo", sysinfo)] {
        assert!(
            sample.cpu_percent >= least,
            "{name}: cpu {} < {least} with one core busy",
            sample.cpu_percent
        );
    }
    assert_close("cpu_percent", procfs.cpu_percent, sysinfo.cpu_percent, 5.0);
    for (core, (a, b)) in procfs
        .cpu_core_percent
        .iter()
        .zip(&sysinfo.cpu_core_percent)
        .enumerate()
    {
        assert_close(&format!("cpu{core}"), *a, *b, 10.0);
    }
}

fn check_memory(procfs: &HostSample, sysinfo: &HostSample) {
    assert_eq!(procfs.memory_total_bytes, sysinfo.memory_total_bytes);
    let used = procfs.memory_used_bytes as f64;
    // Within 3 %, and 8 MiB for what other processes did between the reads.
    let tolerance = used * 0.03 + f64::from(8u32 << 20);
    assert_close(
        "memory_used_bytes",
        used,
        sysinfo.memory_used_bytes as f64,
        tolerance,
    );
}

fn check_filesystems(procfs: &HostSample, sysinfo: &HostSample) {
    let listed = |sample: &HostSample| {
        let mut names: Vec<String> = sample
            .filesystems
            .iter()
            .map(|fs| format!("{} {} {}", fs.mount_point, fs.device, fs.fs_type))
            .collect();
        names.sort();
        names
    };
    assert_eq!(listed(procfs), listed(sysinfo));
    let by_mount_point = |sample: &HostSample| {
        let mut filesystems: Vec<_> = sample.filesystems.clone();
        filesystems.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        filesystems
    };
    for (a, b) in by_mount_point(procfs).iter().zip(&by_mount_point(sysinfo)) {
        assert_eq!(a.total_bytes, b.total_bytes, "{}", a.mount_point);
        assert_close(
            &a.mount_point,
            a.used_bytes as f64,
            b.used_bytes as f64,
            a.total_bytes as f64 * 0.01,
        );
    }
}

fn check_interfaces(procfs: &HostSample, sysinfo: &HostSample, secs: f64) {
    let listed = |sample: &HostSample| {
        let mut names: Vec<String> = sample
            .interfaces
            .iter()
            .map(|io| io.interface.clone())
            .collect();
        names.sort_unstable();
        names
    };
    assert_eq!(listed(procfs), listed(sysinfo));
    let lo = |sample: &HostSample| {
        sample
            .interfaces
            .iter()
            .find(|io| io.interface == "lo")
            .cloned()
            .expect("lo is listed when nothing is excluded")
    };
    let (a, b) = (lo(procfs), lo(sysinfo));
    let least = NET_BYTES as f64 / secs * 0.9;
    for (name, io) in [("procfs", &a), ("sysinfo", &b)] {
        assert!(
            io.rx_bytes_per_sec >= least,
            "{name}: lo rx {} B/s < {least} after {NET_BYTES} B in {secs} s",
            io.rx_bytes_per_sec
        );
    }
    assert_moving_together("lo rx bytes", a.rx_bytes_per_sec, b.rx_bytes_per_sec);
    assert_moving_together("lo tx bytes", a.tx_bytes_per_sec, b.tx_bytes_per_sec);
    assert_moving_together("lo rx packets", a.rx_packets_per_sec, b.rx_packets_per_sec);
    assert_moving_together(
        "net rx sum",
        procfs.net_rx_bytes_per_sec,
        sysinfo.net_rx_bytes_per_sec,
    );
}

fn check_disks(procfs: &HostSample, sysinfo: &HostSample, secs: f64, written: &Path) {
    for io in &sysinfo.disks {
        assert!(
            procfs.disks.iter().any(|p| p.device == io.device),
            "sysinfo lists {}, procfs does not: {:?}",
            io.device,
            procfs.disks
        );
    }
    let Some(device) = device_of(procfs, written) else {
        eprintln!(
            "SKIPPED (disk part): {} is on no filesystem procfs lists (tmpfs, overlay?)",
            written.display()
        );
        return;
    };
    let find = |sample: &HostSample| {
        sample
            .disks
            .iter()
            .find(|io| io.device == device)
            .cloned()
            .unwrap_or_else(|| panic!("{device} is not listed: {:?}", sample.disks))
    };
    let (a, b) = (find(procfs), find(sysinfo));
    let least = DISK_BYTES as f64 / secs * 0.9;
    for (name, io) in [("procfs", &a), ("sysinfo", &b)] {
        assert!(
            io.write_bytes_per_sec >= least,
            "{name}: {device} wrote {} B/s < {least} after an fsync of {DISK_BYTES} B",
            io.write_bytes_per_sec
        );
    }
    assert_moving_together(
        &format!("{device} write bytes"),
        a.write_bytes_per_sec,
        b.write_bytes_per_sec,
    );
}

/// Returns the statistics name of the device holding `path`: the device of
/// the listed filesystem with the longest mount point above it.
fn device_of(sample: &HostSample, path: &Path) -> Option<String> {
    let fs = sample
        .filesystems
        .iter()
        .filter(|fs| path.starts_with(&fs.mount_point))
        .max_by_key(|fs| fs.mount_point.len())?;
    let resolved = fs::canonicalize(&fs.device).unwrap_or_else(|_| PathBuf::from(&fs.device));
    let name = resolved.strip_prefix("/dev").ok()?;
    Some(name.to_string_lossy().into_owned())
}

#[track_caller]
fn assert_close(what: &str, a: f64, b: f64, tolerance: f64) {
    assert!(
        (a - b).abs() <= tolerance,
        "{what}: procfs {a} and sysinfo {b} differ by more than {tolerance}"
    );
}

/// Two rates of the same counter over the same interval: within 10 %, plus
/// what others may have moved in the milliseconds between the two reads.
#[track_caller]
fn assert_moving_together(what: &str, a: f64, b: f64) {
    assert_close(what, a, b, a.max(b) * 0.1 + f64::from(1u32 << 20));
}

/// A thread that keeps one core busy until dropped.
struct Spinner {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Spinner {
    /// Starts the thread and returns once it spins.
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicBool::new(false));
        let handle = {
            let (stop, started) = (Arc::clone(&stop), Arc::clone(&started));
            thread::spawn(move || {
                started.store(true, Ordering::Release);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            })
        };
        wait_until(|| started.load(Ordering::Acquire), Duration::from_secs(10));
        Self {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[track_caller]
fn wait_until(mut pred: impl FnMut() -> bool, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(
            Instant::now() < deadline,
            "condition not met in {timeout:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// A file beside the test binary (on a disk, unlike a tmpfs /tmp); removed on drop.
struct ScratchFile {
    path: PathBuf,
}

impl ScratchFile {
    fn beside_the_test_binary() -> Self {
        let exe = std::env::current_exe().expect("the test binary's path");
        let dir = exe.parent().expect("the test binary has a directory");
        Self {
            path: dir.join(format!("rollguard-agree-{}.tmp", std::process::id())),
        }
    }

    /// Writes `n_bytes` of noise (nothing a filesystem could compress away) and fsyncs.
    fn write_and_sync(&self, n_bytes: usize) {
        let mut file = File::create(&self.path).expect("create the scratch file");
        let mut chunk = vec![0u8; 1 << 20];
        let mut left = n_bytes;
        while left > 0 {
            fastrand::fill(&mut chunk);
            let n = left.min(chunk.len());
            file.write_all(&chunk[..n]).expect("write the scratch file");
            left -= n;
        }
        file.sync_all().expect("fsync the scratch file");
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Sends `n_bytes` over a loopback TCP connection and returns once all arrived.
fn send_over_loopback(n_bytes: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let reader = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut received = Vec::with_capacity(n_bytes);
        stream.read_to_end(&mut received).expect("read");
        received.len()
    });
    let mut stream = TcpStream::connect(addr).expect("connect over loopback");
    stream
        .write_all(&vec![7u8; n_bytes])
        .expect("write over loopback");
    drop(stream);
    assert_eq!(reader.join().expect("the reader thread"), n_bytes);
}
