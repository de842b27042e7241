//! Compact samples on one agent stream (`HostSample.same_layout`).
//!
//! A host's layout (the names of its filesystems, disks, interfaces and
//! gauges, and its histogram bounds) hardly ever changes, yet it was more than
//! half of every sample's bytes. The agent's [`Compactor`] sends the layout in
//! a stream's first sample and again only when it changes; the coordinator's
//! [`Expander`] fills it back in. Both convert in one step, domain sample to
//! wire and wire to domain, and hold the state of one stream: a new stream
//! starts over with a whole sample, so a resend after a reconnect needs
//! nothing special.
//!
//! The expander bounds what a peer can make it hold and copy (issue 10): a
//! layout's number of names and their bytes, and how many distinct bound
//! sets each histogram may have on one stream. A sample past them is
//! rejected, which ends the stream.

use rollguard_common::sample::Bucket;
use rollguard_common::HostSample;

use crate::convert::{fields_from_pb, sample_to_pb, Names};
use crate::v1 as pb;
use crate::WireError;

/// Counts at or below this are exact in an `f64`, so they survive the trip to
/// `u64` and back.
const MAX_EXACT_COUNT: f64 = 9_007_199_254_740_992.0; // 2^53

/// Most names (filesystems, disks, interfaces and gauges together) in a
/// stream's layout. A real agent leaves out pseudo, overlay and network
/// filesystems, virtual interfaces and loop devices and sends tens; a big
/// storage host with every partition listed stays in the low hundreds.
const MAX_LAYOUT_NAMES: usize = 1024;
/// Most bytes of names in a stream's layout. Every compact sample gets its
/// own copy of them, so this bounds what one batch expands to
/// (`MAX_BATCH_SAMPLES` x this: 16 MiB at 256 samples), where the 4 MiB a
/// gRPC message may hold made ~1 GiB. A real agent's layout is a few KiB.
const MAX_LAYOUT_BYTES: usize = 64 * 1024;
/// Most distinct bound sets each histogram (latency, probe latency) may have
/// on one stream. A histogram's bounds change when the app restarts with
/// other buckets, a few times in a stream's life; every distinct set widens
/// the union a round merges the host's buckets into.
const MAX_BOUND_SETS: usize = 4;

/// What a compact sample leaves out.
#[derive(Debug, Clone, Default, PartialEq)]
struct Layout {
    /// (mount_point, device, fs_type) per filesystem.
    filesystems: Vec<(String, String, String)>,
    disks: Vec<String>,
    interfaces: Vec<String>,
    /// Bounds as bits: +Inf and every other bound compare exactly.
    latency_bounds: Vec<u64>,
    probe_bounds: Vec<u64>,
    /// Sorted, without repeats: the order of a compact sample's values.
    gauge_names: Vec<String>,
}

impl Layout {
    fn of(sample: &HostSample) -> Layout {
        let app = sample.app.as_ref();
        let mut gauge_names: Vec<String> = app
            .map(|a| a.gauges.iter().map(|(name, _)| name.clone()).collect())
            .unwrap_or_default();
        gauge_names.sort_unstable();
        gauge_names.dedup();
        Layout {
            filesystems: sample
                .filesystems
                .iter()
                .map(|f| (f.mount_point.clone(), f.device.clone(), f.fs_type.clone()))
                .collect(),
            disks: sample.disks.iter().map(|d| d.device.clone()).collect(),
            interfaces: sample
                .interfaces
                .iter()
                .map(|n| n.interface.clone())
                .collect(),
            latency_bounds: app.map(|a| bounds(&a.latency_buckets)).unwrap_or_default(),
            probe_bounds: app
                .map(|a| bounds(&a.probe_latency_buckets))
                .unwrap_or_default(),
            gauge_names,
        }
    }

    /// Checks the layout's size against [`MAX_LAYOUT_NAMES`] and [`MAX_LAYOUT_BYTES`].
    fn check_size(&self) -> Result<(), WireError> {
        let names = self
            .filesystems
            .iter()
            .flat_map(|(m, d, t)| [m, d, t])
            .chain(&self.disks)
            .chain(&self.interfaces)
            .chain(&self.gauge_names);
        let n_names = self.filesystems.len()
            + self.disks.len()
            + self.interfaces.len()
            + self.gauge_names.len();
        if n_names > MAX_LAYOUT_NAMES {
            return Err(WireError::invalid(
                "sample",
                format!(
                    "the layout names {n_names} devices and gauges, at most {MAX_LAYOUT_NAMES}"
                ),
            ));
        }
        let n_bytes: usize = names.map(String::len).sum();
        if n_bytes > MAX_LAYOUT_BYTES {
            return Err(WireError::invalid(
                "sample",
                format!("the layout's names are {n_bytes} bytes, at most {MAX_LAYOUT_BYTES}"),
            ));
        }
        Ok(())
    }

    /// Whether `sample` has this layout (compared without allocating). A
    /// sample with a gauge name twice never has one: it goes whole.
    fn matches(&self, sample: &HostSample) -> bool {
        let same_bounds = |layout: &[u64], buckets: &[Bucket]| {
            layout.len() == buckets.len()
                && layout
                    .iter()
                    .zip(buckets)
                    .all(|(bits, b)| *bits == b.upper_bound.to_bits())
        };
        let app_matches = match &sample.app {
            Some(app) => {
                same_bounds(&self.latency_bounds, &app.latency_buckets)
                    && same_bounds(&self.probe_bounds, &app.probe_latency_buckets)
                    && app.gauges.len() == self.gauge_names.len()
                    && app
                        .gauges
                        .iter()
                        .all(|(name, _)| self.gauge_names.binary_search(name).is_ok())
                    // As many and all found: with every layout name among
                    // them too, no name can be there twice.
                    && self
                        .gauge_names
                        .iter()
                        .all(|name| app.gauges.iter().any(|(g, _)| g == name))
            }
            None => {
                self.latency_bounds.is_empty()
                    && self.probe_bounds.is_empty()
                    && self.gauge_names.is_empty()
            }
        };
        app_matches
            && self.filesystems.len() == sample.filesystems.len()
            && self
                .filesystems
                .iter()
                .zip(&sample.filesystems)
                .all(|((m, d, t), f)| *m == f.mount_point && *d == f.device && *t == f.fs_type)
            && self.disks.len() == sample.disks.len()
            && self
                .disks
                .iter()
                .zip(&sample.disks)
                .all(|(n, d)| *n == d.device)
            && self.interfaces.len() == sample.interfaces.len()
            && self
                .interfaces
                .iter()
                .zip(&sample.interfaces)
                .all(|(n, i)| *n == i.interface)
    }
}

fn bounds(buckets: &[Bucket]) -> Vec<u64> {
    buckets.iter().map(|b| b.upper_bound.to_bits()).collect()
}

/// Whether every count of `buckets` is a whole number that `u64` holds exactly.
fn counts_fit(buckets: &[Bucket]) -> bool {
    buckets.iter().all(|b| {
        let c = b.cumulative_count;
        c.fract() == 0.0 && (0.0..=MAX_EXACT_COUNT).contains(&c)
    })
}

/// The agent's side: makes each sample as small as the stream allows.
#[derive(Debug, Default)]
pub struct Compactor {
    /// The layout of the last sample handed out, if the stream has one.
    layout: Option<Layout>,
}

impl Compactor {
    /// A compactor for a new stream.
    pub fn new() -> Self {
        Compactor::default()
    }

    /// The stream lost a sample this compactor handed out (it was never
    /// sent): the next one must carry the layout again.
    pub fn reset(&mut self) {
        self.layout = None;
    }

    /// The wire form of `sample` to send next on this stream: compact when
    /// the stream has its layout and its counts are whole, else whole.
    pub fn encode(&mut self, sample: &HostSample) -> pb::HostSample {
        let app_counts_fit = sample
            .app
            .as_ref()
            .is_none_or(|a| counts_fit(&a.latency_buckets) && counts_fit(&a.probe_latency_buckets));
        let same = self.layout.as_ref().is_some_and(|l| l.matches(sample));
        if !same {
            self.layout = Some(Layout::of(sample));
        }
        if same && app_counts_fit {
            sample_to_pb(sample, Names::LeftOut)
        } else {
            sample_to_pb(sample, Names::Sent)
        }
    }
}

/// The coordinator's side: turns each sample of one stream into a domain sample.
#[derive(Debug, Default)]
pub struct Expander {
    /// The layout of the stream's last whole sample.
    layout: Option<Layout>,
    /// The distinct non-empty bound sets the stream's latency histograms
    /// have had, at most [`MAX_BOUND_SETS`].
    latency_bound_sets: Vec<Vec<u64>>,
    /// The same for the probe latency histograms.
    probe_bound_sets: Vec<Vec<u64>>,
}

impl Expander {
    /// An expander for a new stream.
    pub fn new() -> Self {
        Expander::default()
    }

    /// The domain form of `sample`: a whole one is checked and its layout
    /// becomes the stream's; a compact one gets its names and bounds from
    /// that layout. Errs, changing nothing, on a sample that is not valid, a
    /// compact one that does not fit the layout, a whole one with compact
    /// parts, or one whose layout is larger than the limits allow
    /// (`MAX_LAYOUT_NAMES`, `MAX_LAYOUT_BYTES`, `MAX_BOUND_SETS`).
    pub fn decode(&mut self, sample: &pb::HostSample) -> Result<HostSample, WireError> {
        if !sample.same_layout {
            if let Some(app) = &sample.app {
                if !app.latency_counts.is_empty()
                    || !app.probe_latency_counts.is_empty()
                    || !app.gauge_values.is_empty()
                {
                    return Err(WireError::invalid(
                        "app",
                        "latency_counts, probe_latency_counts and gauge_values go only with same_layout",
                    ));
                }
            }
            let whole = HostSample::try_from(sample)?;
            let layout = Layout::of(&whole);
            layout.check_size()?;
            let latency_new = new_bound_set(
                "app.latency_buckets",
                &self.latency_bound_sets,
                &layout.latency_bounds,
            )?;
            let probe_new = new_bound_set(
                "app.probe_latency_buckets",
                &self.probe_bound_sets,
                &layout.probe_bounds,
            )?;
            if latency_new {
                self.latency_bound_sets.push(layout.latency_bounds.clone());
            }
            if probe_new {
                self.probe_bound_sets.push(layout.probe_bounds.clone());
            }
            self.layout = Some(layout);
            return Ok(whole);
        }
        let layout = self.layout.as_ref().ok_or_else(|| {
            WireError::invalid("same_layout", "no earlier whole sample on this stream")
        })?;
        check_fits(layout, sample)?;
        let mut decoded = fields_from_pb(sample)?;
        fill_in(layout, sample, &mut decoded);
        decoded
            .validate()
            .map_err(|message| WireError::invalid("sample", message))?;
        Ok(decoded)
    }
}

/// Whether `bounds` is a set the stream has not had yet; errs if it would be
/// one too many. No histogram (empty bounds) never counts.
fn new_bound_set(
    field: &'static str,
    seen: &[Vec<u64>],
    bounds: &[u64],
) -> Result<bool, WireError> {
    if bounds.is_empty() || seen.iter().any(|set| set == bounds) {
        return Ok(false);
    }
    if seen.len() >= MAX_BOUND_SETS {
        return Err(WireError::invalid(
            field,
            format!("a histogram's bounds changed to a set the stream has not had, and it has had {MAX_BOUND_SETS}"),
        ));
    }
    Ok(true)
}

/// Puts the layout's names and bounds into a compact sample's figures.
fn fill_in(layout: &Layout, wire: &pb::HostSample, sample: &mut HostSample) {
    for (f, (mount_point, device, fs_type)) in
        sample.filesystems.iter_mut().zip(&layout.filesystems)
    {
        f.mount_point.clone_from(mount_point);
        f.device.clone_from(device);
        f.fs_type.clone_from(fs_type);
    }
    for (d, name) in sample.disks.iter_mut().zip(&layout.disks) {
        d.device.clone_from(name);
    }
    for (i, name) in sample.interfaces.iter_mut().zip(&layout.interfaces) {
        i.interface.clone_from(name);
    }
    if let (Some(app), Some(wire_app)) = (&mut sample.app, &wire.app) {
        app.latency_buckets = buckets(&layout.latency_bounds, &wire_app.latency_counts);
        app.probe_latency_buckets = buckets(&layout.probe_bounds, &wire_app.probe_latency_counts);
        app.gauges = layout
            .gauge_names
            .iter()
            .cloned()
            .zip(wire_app.gauge_values.iter().copied())
            .collect();
    }
}

/// Checks that a compact `sample` carries exactly the slots of `layout`, and no names.
fn check_fits(layout: &Layout, sample: &pb::HostSample) -> Result<(), WireError> {
    let count = |field: &'static str, want: usize, got: usize| {
        if want == got {
            Ok(())
        } else {
            Err(WireError::invalid(
                field,
                format!("the stream's layout has {want}, the compact sample {got}"),
            ))
        }
    };
    let named = |field: &'static str, has_name: bool| {
        if has_name {
            Err(WireError::invalid(
                field,
                "a same_layout sample leaves names out",
            ))
        } else {
            Ok(())
        }
    };
    count(
        "filesystems",
        layout.filesystems.len(),
        sample.filesystems.len(),
    )?;
    count("disks", layout.disks.len(), sample.disks.len())?;
    count(
        "interfaces",
        layout.interfaces.len(),
        sample.interfaces.len(),
    )?;
    named(
        "filesystems",
        sample
            .filesystems
            .iter()
            .any(|f| !f.mount_point.is_empty() || !f.device.is_empty() || !f.fs_type.is_empty()),
    )?;
    named("disks", sample.disks.iter().any(|d| !d.device.is_empty()))?;
    named(
        "interfaces",
        sample.interfaces.iter().any(|i| !i.interface.is_empty()),
    )?;
    let (latency, probe, gauges) = match &sample.app {
        Some(app) => {
            if !app.latency_buckets.is_empty() || !app.probe_latency_buckets.is_empty() {
                return Err(WireError::invalid(
                    "app",
                    "a same_layout sample sends counts, not buckets",
                ));
            }
            named("app.gauges", !app.gauges.is_empty())?;
            (
                app.latency_counts.len(),
                app.probe_latency_counts.len(),
                app.gauge_values.len(),
            )
        }
        // No app this interval: nothing of the app's layout is used.
        None => return Ok(()),
    };
    count("app.latency_counts", layout.latency_bounds.len(), latency)?;
    count("app.probe_latency_counts", layout.probe_bounds.len(), probe)?;
    count("app.gauge_values", layout.gauge_names.len(), gauges)
}

fn buckets(bounds: &[u64], counts: &[u64]) -> Vec<Bucket> {
    bounds
        .iter()
        .zip(counts)
        .map(|(bits, count)| Bucket {
            upper_bound: f64::from_bits(*bits),
            cumulative_count: *count as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests;
