//! The `procfs` backend (Linux only, the default there): reads procfs (and
//! `/sys/block`) directly.
//!
//! Main type: [`ProcfsSource`] (owns the previous counters, one reusable
//! read buffer and the resolved file paths). One file per collector: `cpu`
//! (/proc/stat), `load` (/proc/loadavg), `memory` (/proc/meminfo), `disk`
//! (/proc/diskstats), `filesystem` (/proc/self/mounts and statvfs),
//! `network` (/proc/net/dev), `pressure` (/proc/pressure). Each file holds a
//! pure parser over the file's text plus the small state it keeps between
//! calls, so tests feed it fixture text.
//!
//! Deliberately NOT done here: no async (every read is a small procfs file
//! and takes microseconds), nothing outside Linux (this whole module is
//! behind `cfg(target_os = "linux")` in `collect/mod.rs`).

mod cpu;
mod disk;
mod filesystem;
mod load;
mod memory;
mod network;
mod pressure;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use rollguard_common::HostSample;

pub(super) use pressure::PressureFiles;

use super::{per_sec, CollectConfig, CollectError};

/// Every figure of a sample, read from procfs.
#[derive(Debug)]
pub(super) struct ProcfsSource {
    config: CollectConfig,
    paths: Paths,
    /// Read buffer reused by every file read, so steady state allocates only
    /// what the sample itself owns.
    buf: Vec<u8>,
    cpu: cpu::CpuState,
    disk: disk::DiskState,
    network: network::NetState,
    pressure: PressureFiles,
}

// === impl ProcfsSource ===

impl ProcfsSource {
    /// Resolves the files under the configured roots; reads nothing yet.
    pub(super) fn new(config: CollectConfig) -> Self {
        Self {
            paths: Paths::new(&config),
            pressure: PressureFiles::new(&config.proc_root),
            config,
            buf: Vec::with_capacity(16 * 1024),
            cpu: cpu::CpuState::default(),
            disk: disk::DiskState::default(),
            network: network::NetState::default(),
        }
    }

    /// Reads the cumulative counters (cpu, disks, network) and fills the rates
    /// over `secs`, then keeps the reading as the next baseline.
    pub(super) fn read_counters(
        &mut self,
        secs: f64,
        sample: &mut HostSample,
        errors: &mut Vec<CollectError>,
    ) {
        let paths = &self.paths;
        let buf = &mut self.buf;
        if let Err(err) = self.cpu.collect(&paths.stat, buf, sample) {
            errors.push(err);
        }
        let sys_block = &paths.sys_block;
        let in_sys_block = |name: &str| sys_block.join(name.replace('/', "!")).exists();
        if let Err(err) = self
            .disk
            .collect(&paths.diskstats, buf, secs, in_sys_block, sample)
        {
            errors.push(err);
        }
        if let Err(err) = self
            .network
            .collect(&paths.net_dev, buf, secs, &self.config, sample)
        {
            errors.push(err);
        }
    }

    /// Reads the instantaneous values (load, memory, filesystems, pressure).
    pub(super) fn read_gauges(&mut self, sample: &mut HostSample, errors: &mut Vec<CollectError>) {
        let paths = &self.paths;
        let buf = &mut self.buf;
        if let Err(err) = load::collect(&paths.loadavg, buf, sample) {
            errors.push(err);
        }
        if let Err(err) = memory::collect(&paths.meminfo, buf, sample) {
            errors.push(err);
        }
        filesystem::collect(&paths.mounts, buf, sample, errors);
        sample.pressure = self.pressure.read(errors);
    }
}

/// Every file the collectors read, resolved once against the configured
/// roots (the pressure files are [`PressureFiles`]'s).
#[derive(Debug)]
struct Paths {
    stat: PathBuf,
    loadavg: PathBuf,
    meminfo: PathBuf,
    diskstats: PathBuf,
    net_dev: PathBuf,
    mounts: PathBuf,
    sys_block: PathBuf,
}

impl Paths {
    fn new(config: &CollectConfig) -> Self {
        let proc_root = &config.proc_root;
        Self {
            stat: proc_root.join("stat"),
            loadavg: proc_root.join("loadavg"),
            meminfo: proc_root.join("meminfo"),
            diskstats: proc_root.join("diskstats"),
            net_dev: proc_root.join("net/dev"),
            mounts: proc_root.join("self/mounts"),
            sys_block: config.sys_root.join("block"),
        }
    }
}

/// Reads the whole file at `path` into `buf` (cleared first) and returns its bytes.
fn read_file<'b>(path: &Path, buf: &'b mut Vec<u8>) -> Result<&'b [u8], CollectError> {
    buf.clear();
    // procfs files report size 0 and are generated on read, so read to EOF
    // rather than trusting metadata.
    File::open(path)
        .and_then(|mut file| file.read_to_end(buf))
        .map_err(|source| CollectError::Read {
            path: path.display().to_string(),
            source,
        })?;
    Ok(buf)
}

/// Reads a file the kernel writes in ASCII; anything else is a parse error.
fn read_text<'b>(path: &Path, buf: &'b mut Vec<u8>) -> Result<&'b str, CollectError> {
    let bytes = read_file(path, buf)?;
    std::str::from_utf8(bytes).map_err(|err| parse_error(path, err.to_string()))
}

fn parse_error(path: &Path, message: String) -> CollectError {
    CollectError::Parse {
        path: path.display().to_string(),
        message,
    }
}
