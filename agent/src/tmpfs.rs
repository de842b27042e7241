//! Test support: a tiny real tmpfs, to run the journal on a full disk
//! (issue 11) with real ENOSPC rather than a mock.
//!
//! Mounting needs root (CAP_SYS_ADMIN). Without it a test prints a
//! `SKIPPED: <reason>` line to stderr and returns; it never skips silently.
//! The mount is undone in `Drop`, also when the test panics.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Size of the file system: two 4 KiB pages, the smallest that lets a test
/// hold a journal in one page and fill the other (a write into the
/// journal's half-used page then fails part-way).
pub(crate) const TINY_FS_BYTES: u64 = 8 * 1024;

/// `ENOSPC` on Linux.
pub(crate) const ENOSPC: i32 = 28;

/// A mounted tmpfs of [`TINY_FS_BYTES`]; unmounted on drop.
#[derive(Debug)]
pub(crate) struct Tmpfs {
    dir: PathBuf,
    filler: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs at `dir` (created if needed); returns `None` after
    /// printing why `test` is skipped when mounting is not possible.
    pub(crate) fn mount_or_skip(test: &str, dir: &Path) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).expect("create the mount point");
        let size = format!("size={TINY_FS_BYTES}");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(dir)
            .output();
        let reason = match output {
            Ok(output) if output.status.success() => {
                return Some(Tmpfs {
                    dir: dir.to_owned(),
                    filler: dir.join("filler"),
                })
            }
            Ok(output) => format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(err) => format!("cannot run mount: {err}"),
        };
        eprintln!(
            "SKIPPED: {test}: cannot mount a tmpfs at {} (needs root): {reason}",
            dir.display()
        );
        let _ = std::fs::remove_dir(dir);
        None
    }

    /// Fills the file system: writes a filler file until ENOSPC.
    pub(crate) fn fill(&self) {
        let mut file = File::create(&self.filler).expect("create the filler");
        let chunk = [0u8; 512];
        loop {
            match file.write(&chunk) {
                Ok(0) => panic!("the filler write returned 0 before ENOSPC"),
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(ENOSPC) => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => panic!("cannot fill the tmpfs: {err}"),
            }
        }
    }

    /// Frees the space [`Tmpfs::fill`] took.
    pub(crate) fn free(&self) {
        std::fs::remove_file(&self.filler).expect("remove the filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so a file a panicking test left open cannot keep it mounted.
        match Command::new("umount").arg("-l").arg(&self.dir).status() {
            Ok(status) if status.success() => {
                let _ = std::fs::remove_dir(&self.dir);
            }
            Ok(status) => eprintln!("cannot unmount {}: umount {status}", self.dir.display()),
            Err(err) => eprintln!("cannot unmount {}: {err}", self.dir.display()),
        }
    }
}
