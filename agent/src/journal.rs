//! The command journal: at-most-once execution across agent restarts.
//!
//! An append-only file of JSON lines in the state dir. Before an action runs,
//! a `started` line is written and fsynced; when it ends, a `finished` line
//! with the result. On open, a command that started but never finished (the
//! agent crashed or was killed mid-action) is closed as failed (interrupted)
//! and is never run again. A torn last line from a crash is ignored.
//!
//! It does not compact itself; at one line pair per rollback it grows slowly.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rollguard_common::CommandStatus;
use serde::{Deserialize, Serialize};

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
    Started { id: String },
    Finished { id: String, outcome: Outcome },
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
}

impl Journal {
    /// Opens the journal in `state_dir`, creating both if needed; commands left
    /// started by a previous process are closed as failed (interrupted).
    pub fn open(state_dir: &Path, now_unix_ms: u64) -> io::Result<Journal> {
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join(JOURNAL_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(err),
        };
        let mut entries = HashMap::new();
        let mut started = Vec::new();
        for line in text.lines() {
            // A torn line (crash mid-append) parses as garbage: skip it.
            match serde_json::from_str::<Line>(line) {
                Ok(Line::Started { id }) => {
                    started.push(id.clone());
                    entries.insert(id, Entry::Running);
                }
                Ok(Line::Finished { id, outcome }) => {
                    entries.insert(id, Entry::Finished(outcome));
                }
                Err(_) => tracing::warn!(path = %path.display(), "skipping a torn journal line"),
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut journal = Journal {
            path,
            file,
            entries,
        };
        if !text.is_empty() && !text.ends_with('\n') {
            // Terminate a torn last line so the next append starts clean.
            journal.file.write_all(b"\n")?;
        }
        for id in started {
            if journal.entries.get(&id) == Some(&Entry::Running) {
                tracing::warn!(command_id = %id, "command was interrupted by an agent restart; it will not run again");
                journal.finish(
                    &id,
                    Outcome {
                        status: CommandStatus::Failed,
                        exit_code: None,
                        reason: "interrupted: the agent stopped while the action ran; not rerun"
                            .to_owned(),
                        output_tail: String::new(),
                        duration_ms: 0,
                        started_at_unix_ms: now_unix_ms,
                    },
                )?;
            }
        }
        Ok(journal)
    }

    /// Returns the file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns what is known of `id`.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// Durably records that `id` is about to run. Must succeed before the action starts.
    pub fn start(&mut self, id: &str) -> io::Result<()> {
        self.append(&Line::Started { id: id.to_owned() })?;
        self.entries.insert(id.to_owned(), Entry::Running);
        Ok(())
    }

    /// Durably records the final outcome of `id`.
    pub fn finish(&mut self, id: &str, outcome: Outcome) -> io::Result<()> {
        self.append(&Line::Finished {
            id: id.to_owned(),
            outcome: outcome.clone(),
        })?;
        self.entries.insert(id.to_owned(), Entry::Finished(outcome));
        Ok(())
    }

    fn append(&mut self, line: &Line) -> io::Result<()> {
        let mut bytes = serde_json::to_vec(line).map_err(io::Error::other)?;
        bytes.push(b'\n');
        self.file.write_all(&bytes)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests;
