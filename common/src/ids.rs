//! Identities and small enums shared by every part.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest host id or deployment name accepted from the network (a DNS name's limit).
pub const MAX_NAME_LEN: usize = 253;

/// Checks that `value` is usable as a host id, deployment or action name.
///
/// Names are non-empty, at most [`MAX_NAME_LEN`] bytes, and printable with no
/// whitespace, so they are safe in logs, tables and store keys.
pub fn validate_name(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(format!("{what} is longer than {MAX_NAME_LEN} bytes"));
    }
    if let Some(bad) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{what} contains the character {bad:?}"));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string without checking it; use at trusted edges only.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// Returns the id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// The stable identity of one host (by default its hostname).
    HostId
);
string_id!(
    /// The name of a deployment: the unit that is judged and rolled back.
    DeploymentName
);
string_id!(
    /// The unique id of one command, the key of at-most-once execution.
    CommandId
);

/// Which side of the comparison a host is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cohort {
    /// Runs the software under trial; rollbacks go only here.
    Beta,
    /// Runs the stable software; the yardstick for relative rules.
    Baseline,
}

impl Cohort {
    /// Returns the lowercase name used in config, JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Cohort::Beta => "beta",
            Cohort::Baseline => "baseline",
        }
    }
}

impl fmt::Display for Cohort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Cohort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "beta" => Ok(Cohort::Beta),
            "baseline" => Ok(Cohort::Baseline),
            other => Err(format!("expected `beta` or `baseline`, got `{other}`")),
        }
    }
}

/// The reason, exactly, of a command an agent rejected because its
/// `not_after` had passed before it could run: the host never ran it.
pub const REASON_EXPIRED: &str = "expired";

/// The life of one command on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// The agent has the command and will run it.
    Accepted,
    /// The action's process was started.
    Running,
    /// The action exited 0.
    Succeeded,
    /// The action failed, timed out, could not start or was interrupted.
    Failed,
    /// The agent refused the command; nothing ran.
    Rejected,
    /// The host has not answered (coordinator side only).
    NoAnswer,
}

impl CommandStatus {
    /// Returns the snake_case name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Accepted => "accepted",
            CommandStatus::Running => "running",
            CommandStatus::Succeeded => "succeeded",
            CommandStatus::Failed => "failed",
            CommandStatus::Rejected => "rejected",
            CommandStatus::NoAnswer => "no_answer",
        }
    }

    /// Returns true when nothing more will happen to the command on that host.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CommandStatus::Succeeded | CommandStatus::Failed | CommandStatus::Rejected
        )
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
