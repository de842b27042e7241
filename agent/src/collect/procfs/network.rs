//! Per-interface traffic rates from /proc/net/dev, over the interfaces that
//! pass the include/exclude filter of [`CollectConfig`]. Interfaces that do
//! not pass are neither reported nor remembered. Does not read per-namespace
//! or per-process counters, and does not dedupe bond/bridge members.

use std::borrow::Cow;
use std::path::Path;

use rollguard_common::HostSample;

use super::{parse_error, read_file, CollectConfig, CollectError};
use crate::collect::definitions::{NetCounters, NetRates};

#[cfg(test)]
mod tests;

/// Parses /proc/net/dev into `(interface, counters)` per line, skipping the
/// two header lines, without allocating.
pub(super) fn parse_net_dev(
    text: &str,
) -> impl Iterator<Item = Result<(&str, NetCounters), String>> + '_ {
    // Interface names cannot contain ':', and the header lines have none.
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, counters)| parse_counters(name.trim(), counters))
}

fn parse_counters<'a>(name: &'a str, text: &str) -> Result<(&'a str, NetCounters), String> {
    // rx: bytes packets errs drop fifo frame compressed multicast,
    // tx: bytes packets errs drop ...; only the first 12 columns are needed.
    let mut values = [0u64; 12];
    let mut tokens = text.split_ascii_whitespace();
    for slot in &mut values {
        let token = tokens
            .next()
            .ok_or_else(|| format!("short line for {name}"))?;
        *slot = token
            .parse()
            .map_err(|err| format!("bad counter {token:?} for {name}: {err}"))?;
    }
    Ok((
        name,
        NetCounters {
            rx_bytes: values[0],
            rx_packets: values[1],
            rx_errors: values[2],
            rx_drops: values[3],
            tx_bytes: values[8],
            tx_packets: values[9],
            tx_errors: values[10],
            tx_drops: values[11],
        },
    ))
}

/// Previous counters of every counted interface, keyed by name; interfaces
/// that disappear are forgotten.
#[derive(Debug, Default)]
pub(super) struct NetState {
    rates: NetRates,
}

impl NetState {
    /// Reads /proc/net/dev at `path` and fills the network part of `sample`.
    pub(super) fn collect(
        &mut self,
        path: &Path,
        buf: &mut Vec<u8>,
        secs: f64,
        config: &CollectConfig,
        sample: &mut HostSample,
    ) -> Result<(), CollectError> {
        let bytes = read_file(path, buf)?;
        // Interface names are arbitrary bytes; a lossy name still keys its
        // counters consistently, where a strict decode would lose every interface.
        let text: Cow<'_, str> = String::from_utf8_lossy(bytes);
        self.update(&text, secs, config, sample)
            .map_err(|message| parse_error(path, message))
    }

    /// Fills `interfaces` and the host-wide network sums with rates over
    /// `secs` against the previous reading (see [`NetRates`]). A malformed
    /// line is skipped and reported; the other interfaces are still filled.
    pub(super) fn update(
        &mut self,
        text: &str,
        secs: f64,
        config: &CollectConfig,
        sample: &mut HostSample,
    ) -> Result<(), String> {
        self.rates.start();
        let mut first_error = None;
        for item in parse_net_dev(text) {
            match item {
                Ok((name, cur)) => self.rates.add(name, cur, secs, config, sample),
                Err(message) => {
                    first_error.get_or_insert(message);
                }
            }
        }
        self.rates.finish();
        first_error.map_or(Ok(()), Err)
    }
}
