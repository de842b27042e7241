//! Per-interface traffic rates from /proc/net/dev, over the interfaces that
//! pass the include/exclude filter of [`CollectConfig`]. Interfaces that do
//! not pass are neither reported nor remembered. Does not read per-namespace
//! or per-process counters, and does not dedupe bond/bridge members.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use rollguard_common::sample::NetIo;
use rollguard_common::HostSample;

use super::{parse_error, per_sec, read_file, CollectConfig, CollectError};

#[cfg(test)]
mod tests;

/// Returns whether an interface counts: one of `include` when that is
/// non-empty, otherwise any name that starts with none of the `exclude` prefixes.
pub(super) fn interface_counts(name: &str, include: &[String], exclude: &[String]) -> bool {
    if !include.is_empty() {
        return include.iter().any(|included| included == name);
    }
    !exclude
        .iter()
        .any(|prefix| name.starts_with(prefix.as_str()))
}

/// The cumulative counters of one /proc/net/dev line that the sample needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct NetCounters {
    pub(super) rx_bytes: u64,
    pub(super) rx_packets: u64,
    pub(super) rx_errors: u64,
    pub(super) rx_drops: u64,
    pub(super) tx_bytes: u64,
    pub(super) tx_packets: u64,
    pub(super) tx_errors: u64,
    pub(super) tx_drops: u64,
}

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

/// Returns the per-second rates between two readings of one interface.
pub(super) fn net_io(interface: &str, prev: &NetCounters, cur: &NetCounters, secs: f64) -> NetIo {
    NetIo {
        interface: interface.to_owned(),
        rx_bytes_per_sec: per_sec(prev.rx_bytes, cur.rx_bytes, secs),
        tx_bytes_per_sec: per_sec(prev.tx_bytes, cur.tx_bytes, secs),
        rx_packets_per_sec: per_sec(prev.rx_packets, cur.rx_packets, secs),
        tx_packets_per_sec: per_sec(prev.tx_packets, cur.tx_packets, secs),
        rx_errors_per_sec: per_sec(prev.rx_errors, cur.rx_errors, secs),
        tx_errors_per_sec: per_sec(prev.tx_errors, cur.tx_errors, secs),
        rx_drops_per_sec: per_sec(prev.rx_drops, cur.rx_drops, secs),
        tx_drops_per_sec: per_sec(prev.tx_drops, cur.tx_drops, secs),
    }
}

/// Previous counters of every counted interface, keyed by name; interfaces
/// that disappear are forgotten.
#[derive(Debug, Default)]
pub(super) struct NetState {
    /// Counters and the generation of the last reading that listed the interface.
    entries: HashMap<String, (NetCounters, u64)>,
    generation: u64,
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
    /// `secs` against the previous reading. An interface seen for the first
    /// time, or whose counter went backwards, gets rate 0 for this interval. A
    /// malformed line is skipped and reported; the other interfaces are still filled.
    pub(super) fn update(
        &mut self,
        text: &str,
        secs: f64,
        config: &CollectConfig,
        sample: &mut HostSample,
    ) -> Result<(), String> {
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let mut first_error = None;
        let mut n_seen = 0usize;
        for item in parse_net_dev(text) {
            let (name, cur) = match item {
                Ok(parsed) => parsed,
                Err(message) => {
                    first_error.get_or_insert(message);
                    continue;
                }
            };
            if !interface_counts(name, &config.include_interfaces, &config.exclude_interfaces) {
                continue;
            }
            n_seen += 1;
            let prev = match self.entries.get_mut(name) {
                Some((counters, seen)) => {
                    *seen = generation;
                    std::mem::replace(counters, cur)
                }
                None => {
                    self.entries.insert(name.to_owned(), (cur, generation));
                    // No previous reading: every delta is 0.
                    cur
                }
            };
            let io = net_io(name, &prev, &cur, secs);
            sample.net_rx_bytes_per_sec += io.rx_bytes_per_sec;
            sample.net_tx_bytes_per_sec += io.tx_bytes_per_sec;
            sample.interfaces.push(io);
        }
        if self.entries.len() > n_seen {
            self.entries.retain(|_, (_, seen)| *seen == generation);
        }
        first_error.map_or(Ok(()), Err)
    }
}
