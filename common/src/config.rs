//! Layered config loading shared by every binary, and the value parsers that
//! turn raw strings into checked types with an error that names the key.
//!
//! Layers, lowest to highest: the serialized defaults of the raw config type,
//! the TOML file (when given), the environment (`PREFIX__SECTION__KEY`), then
//! command-line flags. Each binary owns its own `Config`; this module only
//! knows how to stack the layers.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;

/// The `[telemetry]` table shared by the agent and coordinator configs.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetry {
    /// OTLP/gRPC endpoint for traces, e.g. `http://127.0.0.1:4317`; empty
    /// means `OTEL_EXPORTER_OTLP_ENDPOINT`, and without it nothing is exported.
    pub otlp_endpoint: String,
}

impl RawTelemetry {
    /// Returns the configured endpoint, if any.
    pub fn endpoint(&self) -> Option<&str> {
        Some(self.otlp_endpoint.trim()).filter(|s| !s.is_empty())
    }
}

/// A config that could not be loaded; the message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, env or flags did not deserialize (unknown key, wrong type).
    #[error("{0}")]
    Load(#[from] config::ConfigError),
    /// A key had a value of the right type that is not acceptable.
    #[error("invalid value for `{key}`: {message}")]
    Invalid {
        /// Dotted path of the key, e.g. `actions.rollback.timeout`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A required key was set nowhere.
    #[error("missing required key `{key}` (set it in the config file, the environment or a flag)")]
    Missing {
        /// Dotted path of the key.
        key: String,
    },
}

impl ConfigError {
    /// Builds an [`ConfigError::Invalid`] for `key`.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Where the layers come from.
#[derive(Debug, Default)]
pub struct Sources<'a> {
    /// Optional TOML file; absent means defaults only.
    pub file: Option<&'a Path>,
    /// Env prefix such as `ROLLGUARD_AGENT`; keys are `PREFIX__SECTION__KEY`.
    pub env_prefix: &'a str,
    /// Env to read instead of the process environment (tests inject it here).
    pub env: Option<HashMap<String, String>>,
    /// Flag values, highest priority, as (dotted key, value).
    pub overrides: Vec<(&'a str, String)>,
}

/// Loads a raw config type through every layer.
///
/// `T` should be `#[serde(deny_unknown_fields)]` with `#[serde(default)]`, so
/// that a typo is an error naming the key rather than a silently ignored line.
pub fn load<T: DeserializeOwned>(sources: Sources<'_>) -> Result<T, ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(path) = sources.file {
        builder = builder.add_source(
            config::File::from(path)
                .format(config::FileFormat::Toml)
                .required(true),
        );
    }
    let env = config::Environment::with_prefix(sources.env_prefix)
        .prefix_separator("__")
        .separator("__")
        // Values stay strings until a field asks for a number or a bool:
        // parsing up front turned APP_VERSION=1.10 into "1.1".
        .source(sources.env);
    builder = builder.add_source(env);
    for (key, value) in sources.overrides {
        builder = builder.set_override(key, value)?;
    }
    Ok(builder.build()?.try_deserialize()?)
}

/// Parses a human duration such as `1s`, `500ms` or `1h 30m` for `key`.
pub fn parse_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.trim())
        .map_err(|err| ConfigError::invalid(key, format!("`{value}` is not a duration ({err})")))
}

/// Parses a duration that must be positive.
pub fn parse_positive_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    let duration = parse_duration(key, value)?;
    if duration.is_zero() {
        return Err(ConfigError::invalid(key, "must be greater than zero"));
    }
    Ok(duration)
}

/// Parses a size in bytes such as `4MiB`, `512 KiB`, `2MB` or `65536` for
/// `key`. Units: `B`, `KiB`, `MiB`, `GiB` (powers of 1024) and `KB`, `MB`,
/// `GB` (powers of 1000), in any case; none means bytes.
pub fn parse_bytes(key: &str, value: &str) -> Result<u64, ConfigError> {
    let not_a_size = || {
        ConfigError::invalid(
            key,
            format!("`{value}` is not a size (a whole number and B, KiB, MiB, GiB, KB, MB or GB)"),
        )
    };
    let trimmed = value.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(not_a_size()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(not_a_size)
}

#[cfg(test)]
mod tests;
