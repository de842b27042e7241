//! Load averages from /proc/loadavg. Does not read the running/total task
//! counts or the last pid that follow them.

use std::path::Path;

use rollguard_common::HostSample;

use super::{parse_error, read_text, CollectError};

#[cfg(test)]
mod tests;

/// Parses the 1, 5 and 15 minute load averages from the text of /proc/loadavg.
pub(super) fn parse_loadavg(text: &str) -> Result<(f64, f64, f64), String> {
    let mut tokens = text.split_ascii_whitespace();
    let mut next = |what: &str| -> Result<f64, String> {
        let token = tokens.next().ok_or_else(|| format!("missing {what}"))?;
        let value: f64 = token
            .parse()
            .map_err(|err| format!("bad {what} {token:?}: {err}"))?;
        if !value.is_finite() || value < 0.0 {
            return Err(format!(
                "bad {what} {token:?}: not a finite non-negative number"
            ));
        }
        Ok(value)
    };
    Ok((next("load1")?, next("load5")?, next("load15")?))
}

/// Reads /proc/loadavg at `path` and fills `load1`, `load5` and `load15`.
pub(super) fn collect(
    path: &Path,
    buf: &mut Vec<u8>,
    sample: &mut HostSample,
) -> Result<(), CollectError> {
    let text = read_text(path, buf)?;
    let (load1, load5, load15) =
        parse_loadavg(text).map_err(|message| parse_error(path, message))?;
    sample.load1 = load1;
    sample.load5 = load5;
    sample.load15 = load15;
    Ok(())
}
