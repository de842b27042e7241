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

/// The one placeholder an action's argv may hold, as a whole element: the
/// version a command names (`rollguardctl rollout`'s promote).
pub const VERSION_PLACEHOLDER: &str = "{version}";

/// Longest version a command may name.
pub const MAX_VERSION_LEN: usize = 64;

/// Checks that `value` is a version a command may pass to an action:
/// `^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`. Nothing else reaches an argv: no
/// option (a leading `-`), no path, no shell syntax, no whitespace.
pub fn validate_version(value: &str) -> Result<(), String> {
    let mut chars = value.chars();
    let Some(first) = chars.next() else {
        return Err("the version is empty".to_owned());
    };
    if value.len() > MAX_VERSION_LEN {
        return Err(format!(
            "the version is longer than {MAX_VERSION_LEN} characters"
        ));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(format!(
            "the version `{}` must start with a letter or digit",
            value.escape_debug()
        ));
    }
    if let Some(bad) =
        chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
    {
        return Err(format!(
            "the version `{}` holds {bad:?}: only letters, digits, '.', '_', '+' and '-'",
            value.escape_debug()
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::validate_version;

    #[test]
    fn versions_that_may_reach_an_argv() {
        for good in [
            "2.4.1",
            "v2",
            "1.0.0-beta.3",
            "1.0+build.7",
            "a_b",
            &"9".repeat(64),
        ] {
            assert_eq!(validate_version(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("-rf", "start with"),
            (".hidden", "start with"),
            ("../../etc", "start with"),
            ("1.0/../x", "'/'"),
            ("1.0 2.0", "' '"),
            ("1.0;reboot", "';'"),
            ("$(id)", "start with"),
            ("1.0\n", "'\\n'"),
            ("é1", "start with"),
            ("1é", "'é'"),
            (&"9".repeat(65), "longer than 64"),
        ] {
            let err = validate_version(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
