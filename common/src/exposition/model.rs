//! The parsed scrape: families of samples that borrow from the scrape body.

use std::borrow::Cow;
use std::fmt;

use super::selector::Selector;

/// One parsed scrape: its metric families in the order they appeared.
///
/// Names and label values borrow from the scrape body (`'a`); only label values
/// and HELP texts with escape sequences are copied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition<'a> {
    /// Families in input order. A name may appear in several families when
    /// the exposition does not keep a family's lines together.
    pub families: Vec<MetricFamily<'a>>,
}

/// A group of samples introduced by `# HELP` / `# TYPE` lines, or by a sample
/// whose name does not belong to the previous family.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily<'a> {
    /// The family name (for histograms and summaries, without `_bucket`,
    /// `_sum` or `_count`).
    pub name: &'a str,
    /// The unescaped HELP text, if the family had a `# HELP` line.
    pub help: Option<Cow<'a, str>>,
    /// The declared type; [`MetricType::Untyped`] without a `# TYPE` line.
    pub metric_type: MetricType,
    /// The samples of the family in input order.
    pub samples: Vec<Sample<'a>>,
}

/// One line of data: a series (name plus labels) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The sample name, e.g. `http_request_duration_seconds_bucket`.
    pub name: &'a str,
    /// Labels in input order; names are unique within a sample.
    pub labels: Vec<Label<'a>>,
    /// The value; may be `+Inf`, `-Inf` or NaN.
    pub value: f64,
    /// The optional timestamp in milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

/// One `name="value"` pair of a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label<'a> {
    /// The label name.
    pub name: &'a str,
    /// The unescaped label value.
    pub value: Cow<'a, str>,
}

/// The type a `# TYPE` line declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// A monotonically increasing count that resets to zero on restart.
    Counter,
    /// A value that can go up and down.
    Gauge,
    /// Cumulative `_bucket{le=..}` series plus `_sum` and `_count`.
    Histogram,
    /// Precomputed `{quantile=..}` series plus `_sum` and `_count`.
    Summary,
    /// No `# TYPE` line, or `# TYPE name untyped`.
    Untyped,
}

// === impl Exposition ===

impl<'a> Exposition<'a> {
    /// Returns every sample of every family, in input order.
    pub fn samples(&self) -> impl Iterator<Item = &Sample<'a>> + '_ {
        self.families
            .iter()
            .flat_map(|family| family.samples.iter())
    }

    /// Returns the first family called `name`.
    pub fn family(&self, name: &str) -> Option<&MetricFamily<'a>> {
        self.families.iter().find(|family| family.name == name)
    }

    /// Returns the samples that `selector` matches, in input order.
    pub fn select<'e, 's>(
        &'e self,
        selector: &'s Selector,
    ) -> impl Iterator<Item = &'e Sample<'a>> + use<'e, 's, 'a> {
        self.samples_named(&selector.name)
            .filter(move |sample| selector.matches_labels(sample))
    }

    /// Returns the samples called `name`.
    fn samples_named<'e, 's>(
        &'e self,
        name: &'s str,
    ) -> impl Iterator<Item = &'e Sample<'a>> + use<'e, 's, 'a> {
        // A sample's name always starts with its family's name (the parser
        // only groups `foo_bucket`, `foo_sum` and `foo_count` under `foo`), so
        // other families can be skipped without looking at their samples.
        self.families
            .iter()
            .filter(move |family| name.starts_with(family.name))
            .flat_map(|family| family.samples.iter())
            .filter(move |sample| sample.name == name)
    }
}

// === impl MetricFamily ===

impl<'a> MetricFamily<'a> {
    pub(super) fn new(name: &'a str) -> Self {
        MetricFamily {
            name,
            help: None,
            metric_type: MetricType::Untyped,
            samples: Vec::new(),
        }
    }

    /// Returns whether a sample called `sample_name` belongs to this family.
    pub(super) fn accepts(&self, sample_name: &str) -> bool {
        let Some(suffix) = sample_name.strip_prefix(self.name) else {
            return false;
        };
        match self.metric_type {
            _ if suffix.is_empty() => true,
            MetricType::Histogram => matches!(suffix, "_bucket" | "_sum" | "_count"),
            MetricType::Summary => matches!(suffix, "_sum" | "_count"),
            MetricType::Counter | MetricType::Gauge | MetricType::Untyped => false,
        }
    }
}

// === impl Sample ===

impl Sample<'_> {
    /// Returns the value of label `name`, or `None` if the sample lacks it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|label| label.name == name)
            .map(|label| label.value.as_ref())
    }
}

// === impl MetricType ===

impl MetricType {
    /// Parses the word of a `# TYPE` line.
    pub(super) fn from_keyword(keyword: &str) -> Option<Self> {
        Some(match keyword {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Untyped,
            _ => return None,
        })
    }

    /// Returns the word a `# TYPE` line uses for this type.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
