//! The command journal: at-most-once execution across agent restarts.
//!
//! An append-only file of JSON lines in the state dir. Before an action runs,
//! a `started` line is written and fsynced; when it ends, a `finished` line
//! with the result. On open, a command that started but never finished (the
//! agent crashed or was killed mid-action) is closed as failed (interrupted)
//! and is never run again.
//!
//! It survives a full disk (issue 11). A write that fails part-way (ENOSPC)
//! is cut back to the end of the last whole record, so a `started` line the
//! caller was told failed never survives as a record; when the file may
//! still end in a torn line (a crash mid-append, or a cut that failed too),
//! the next append starts with a newline, so it is never glued onto the torn
//! bytes. Loading reads bytes, not text: a torn, non-UTF-8 or unparseable
//! line is skipped, counted and logged, and never fails the whole load.
//! Opening writes nothing unless a command was left started, and a failed
//! write there is logged, not fatal, so the agent starts on a full disk.
//!
//! A local run (the tripwire's, issue 11) is journalled the same way, its
//! `started` line carrying the trip; a `reported` line follows once the
//! coordinator acknowledged its report. Until then it is unreported: the
//! link resends it on every stream, and the tripwire of a restarted agent
//! stays disarmed (it fired in this outage).
//!
//! It does not compact itself; at one line pair per rollback it grows slowly.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rollguard_common::CommandStatus;
use serde::{Deserialize, Serialize};

use crate::tripwire::Trip;

/// File name inside the state dir.
pub const JOURNAL_FILE: &str = "commands.journal";

/// The final result of a command on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: CommandStatus,
    pub exit_code: Option<i32>,
    pub reason: String,
    pub output_tail: String,
    pub duration_ms: u64,
    pub started_at_unix_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Line {
    Started {
        id: String,
        /// Set for a local run: why the tripwire fired. (Older agents
        /// ignore the field; it is only written for local runs.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        local: Option<Trip>,
    },
    Finished {
        id: String,
        outcome: Outcome,
    },
    /// The coordinator acknowledged the report of local run `id`.
    Reported {
        id: String,
    },
}

/// What the journal knows of one command id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Recorded as started in this process and still running.
    Running,
    /// Finished (or rejected, or interrupted) with this outcome.
    Finished(Outcome),
}

/// The open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    entries: HashMap<String, Entry>,
    /// Local runs not yet acknowledged by the coordinator, oldest first.
    unreported: Vec<(String, Trip)>,
    /// Length of the file after the last append that succeeded (or at open):
    /// where a failed append is cut back to.
    good_len: u64,
    /// The file may end in a torn line, so the next append starts with a
    /// newline. An extra newline only makes an empty line, which loads as nothing.
    torn_tail: bool,
    /// Lines skipped on open because they were torn or unparseable.
    skipped_lines: usize,
}

/// What [`load`] read from the file.
struct Loaded {
    entries: HashMap<String, Entry>,
    unreported: Vec<(String, Trip)>,
    /// Ids whose last line is `started`, in file order.
    started: Vec<String>,
    len: u64,
    ends_torn: bool,
    skipped_lines: usize,
}

impl Journal {
    /// Opens the journal in `state_dir`, creating both if needed; commands left
    /// started by a previous process are closed as failed (interrupted).
    pub fn open(state_dir: &Path, now_unix_ms: u64) -> io::Result<Journal> {
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join(JOURNAL_FILE);
        let loaded = load(&path)?;
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut journal = Journal {
            path,
            file,
            entries: loaded.entries,
            unreported: loaded.unreported,
            good_len: loaded.len,
            torn_tail: loaded.ends_torn,
            skipped_lines: loaded.skipped_lines,
        };
        for id in loaded.started {
            if journal.entries.get(&id) != Some(&Entry::Running) {
                continue;
            }
            tracing::warn!(command_id = %id, "command was interrupted by an agent restart; it will not run again");
            let interrupted = Outcome {
                status: CommandStatus::Failed,
                exit_code: None,
                reason: "interrupted: the agent stopped while the action ran; not rerun".to_owned(),
                output_tail: String::new(),
                duration_ms: 0,
                started_at_unix_ms: now_unix_ms,
            };
            // Its `started` line is durable, so it never runs again whether
            // or not this line is written; a later open retries the write.
            if let Err(err) = journal.finish(&id, interrupted) {
                tracing::warn!(command_id = %id, error = %err, "cannot record the interruption; it is closed in memory");
            }
        }
        Ok(journal)
    }

    /// Returns the file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns how many lines the last open skipped as torn or unparseable.
    pub(crate) fn skipped_lines(&self) -> usize {
        self.skipped_lines
    }

    /// Returns what is known of `id`.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// Durably records that `id` is about to run. Must succeed before the
    /// action starts; on an error `id` stays unknown and the file holds no
    /// `started` line for it.
    pub fn start(&mut self, id: &str) -> io::Result<()> {
        self.append(&Line::Started {
            id: id.to_owned(),
            local: None,
        })?;
        self.entries.insert(id.to_owned(), Entry::Running);
        Ok(())
    }

    /// As [`Journal::start`], for a local run the tripwire fired: the trip
    /// is kept with it, unreported until [`Journal::reported`].
    pub fn start_local(&mut self, id: &str, trip: &Trip) -> io::Result<()> {
        self.append(&Line::Started {
            id: id.to_owned(),
            local: Some(trip.clone()),
        })?;
        self.entries.insert(id.to_owned(), Entry::Running);
        self.unreported.push((id.to_owned(), trip.clone()));
        Ok(())
    }

    /// Records that the coordinator acknowledged the report of local run
    /// `id`. Forgotten in memory even when the write fails: a restart then
    /// only reports it once more, which the coordinator takes as a repeat.
    pub fn reported(&mut self, id: &str) -> io::Result<()> {
        if !self.unreported.iter().any(|(known, _)| known == id) {
            return Ok(());
        }
        self.unreported.retain(|(known, _)| known != id);
        self.append(&Line::Reported { id: id.to_owned() })
    }

    /// Returns the local runs the coordinator has not acknowledged, oldest first.
    pub fn unreported(&self) -> &[(String, Trip)] {
        &self.unreported
    }

    /// Records the final outcome of `id`, durably when the write succeeds.
    /// The outcome is kept in memory even when it fails: the command did
    /// finish, and a repeat must not be told it is still running. Its
    /// `started` line stays, so after a restart it reads as interrupted.
    pub fn finish(&mut self, id: &str, outcome: Outcome) -> io::Result<()> {
        let written = self.append(&Line::Finished {
            id: id.to_owned(),
            outcome: outcome.clone(),
        });
        self.entries.insert(id.to_owned(), Entry::Finished(outcome));
        written
    }

    /// Appends `line` and fsyncs; on an error cuts the file back to the
    /// end of the last whole record.
    fn append(&mut self, line: &Line) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(128);
        if self.torn_tail {
            bytes.push(b'\n');
        }
        serde_json::to_writer(&mut bytes, line).map_err(io::Error::other)?;
        bytes.push(b'\n');
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.good_len += u64::try_from(bytes.len()).expect("a line fits in u64");
                self.torn_tail = false;
                Ok(())
            }
            Err(err) => {
                self.cut_back();
                Err(err)
            }
        }
    }

    /// Drops whatever a failed append left past `good_len`. A shrink needs
    /// no free space, so this works on a full disk; if it fails anyway, the
    /// next append starts with a newline instead.
    fn cut_back(&mut self) {
        let cut = self
            .file
            .set_len(self.good_len)
            .and_then(|()| self.file.sync_all());
        if let Err(err) = cut {
            tracing::warn!(path = %self.path.display(), error = %err, "cannot cut a failed journal append back; the next append starts on a new line");
            self.torn_tail = true;
        }
    }
}

/// Reads the journal at `path` (missing: empty), skipping the lines that
/// do not parse.
fn load(path: &Path) -> io::Result<Loaded> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(err),
    };
    let mut loaded = Loaded {
        entries: HashMap::new(),
        unreported: Vec::new(),
        started: Vec::new(),
        len: u64::try_from(bytes.len()).expect("a file length fits in u64"),
        ends_torn: bytes.last().is_some_and(|&byte| byte != b'\n'),
        skipped_lines: 0,
    };
    for (line_idx, line) in bytes.split(|&byte| byte == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        // Bytes, not text: a line cut inside a multi-byte character is not
        // UTF-8, and must cost only itself.
        match serde_json::from_slice::<Line>(line) {
            Ok(Line::Started { id, local }) => {
                if let Some(trip) = local {
                    loaded.unreported.push((id.clone(), trip));
                }
                loaded.started.push(id.clone());
                loaded.entries.insert(id, Entry::Running);
            }
            Ok(Line::Reported { id }) => {
                loaded.unreported.retain(|(known, _)| *known != id);
            }
            Ok(Line::Finished { id, outcome }) => {
                loaded.entries.insert(id, Entry::Finished(outcome));
            }
            Err(err) => {
                loaded.skipped_lines += 1;
                tracing::warn!(path = %path.display(), line = line_idx + 1, error = %err, "skipping a torn or unparseable journal line");
            }
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests;
