//! Pressure stall information from /proc/pressure/{cpu,memory,io}: the "some"
//! avg10 value of each, in percent. Kernels without PSI (before 4.20, or
//! booted with psi=0) have no /proc/pressure; that is reported as `None`, not
//! as an error. Does not read the "full" lines or the totals.

use std::io;
use std::path::{Path, PathBuf};

use rollguard_common::sample::Pressure;

use super::{parse_error, read_text, CollectError};

#[cfg(test)]
mod tests;

/// The three pressure files (cpu, memory, io) under `<proc root>/pressure`,
/// with a read buffer of their own. Both backends read pressure through
/// this on Linux: no other OS has it.
#[derive(Debug)]
pub(in crate::collect) struct PressureFiles {
    dir: PathBuf,
    files: [PathBuf; 3],
    buf: Vec<u8>,
}

impl PressureFiles {
    /// Resolves the files under `proc_root` ("/proc" in production).
    pub(in crate::collect) fn new(proc_root: &Path) -> Self {
        let dir = proc_root.join("pressure");
        Self {
            files: [dir.join("cpu"), dir.join("memory"), dir.join("io")],
            dir,
            // Each file is two lines of about 70 bytes.
            buf: Vec::with_capacity(256),
        }
    }

    /// Reads the three files; see [`collect`] for when it returns `None`.
    pub(in crate::collect) fn read(&mut self, errors: &mut Vec<CollectError>) -> Option<Pressure> {
        collect(&self.dir, &self.files, &mut self.buf, errors)
    }
}

/// Parses the `avg10=` value of the `some` line of one /proc/pressure file.
pub(super) fn parse_some_avg10(text: &str) -> Result<f64, String> {
    let line = text
        .lines()
        .find(|line| line.starts_with("some "))
        .ok_or("no \"some\" line")?;
    let token = line
        .split_ascii_whitespace()
        .find_map(|token| token.strip_prefix("avg10="))
        .ok_or_else(|| format!("no avg10 in {line:?}"))?;
    let value: f64 = token
        .parse()
        .map_err(|err| format!("bad avg10 {token:?}: {err}"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "bad avg10 {token:?}: not a finite non-negative number"
        ));
    }
    Ok(value)
}

/// Reads the three pressure files (cpu, memory, io). Returns `None` without
/// an error when `dir` does not exist, and `None` plus errors when it exists
/// but a file cannot be read or parsed.
pub(super) fn collect(
    dir: &Path,
    files: &[PathBuf; 3],
    buf: &mut Vec<u8>,
    errors: &mut Vec<CollectError>,
) -> Option<Pressure> {
    let mut values = [0.0f64; 3];
    let mut failed = false;
    for (value, path) in values.iter_mut().zip(files) {
        let result = read_text(path, buf)
            .and_then(|text| parse_some_avg10(text).map_err(|message| parse_error(path, message)));
        match result {
            Ok(parsed) => *value = parsed,
            // Checking the directory only on failure keeps the common path at one read per file.
            Err(CollectError::Read { ref source, .. })
                if source.kind() == io::ErrorKind::NotFound && !dir.exists() =>
            {
                return None;
            }
            Err(err) => {
                errors.push(err);
                failed = true;
            }
        }
    }
    if failed {
        return None;
    }
    let [cpu_some_avg10, memory_some_avg10, io_some_avg10] = values;
    Some(Pressure {
        cpu_some_avg10,
        memory_some_avg10,
        io_some_avg10,
    })
}
