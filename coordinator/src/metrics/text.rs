//! The exposition text: `prometheus-client` encodes every family, and two
//! small fix-ups make its OpenMetrics text the Prometheus 0.0.4 format the
//! families have always had.
//!
//! The crate names a counter family without `_total` in `# HELP` and
//! `# TYPE` and adds the suffix to its samples only (OpenMetrics); a 0.0.4
//! parser then sees samples of an untyped family, and `promtool check
//! metrics` asks for the suffix. So the families are declared without it
//! and their `# HELP`/`# TYPE` lines get it back here; the OpenMetrics
//! `# EOF` line is dropped; and an infinite value, which the crate writes
//! `inf`, is written `+Inf` (`-Inf`) as before. Nothing else is rewritten.

use std::collections::HashSet;

use prometheus_client::registry::Registry;

use super::families::FleetCollector;
use super::Scrape;

/// Renders every family.
pub(crate) fn render(scrape: &Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(FleetCollector::new(scrape.clone())));
    let mut open_metrics = String::with_capacity(8192);
    // Writing to a String cannot fail, and the collector's only errors are
    // the writer's.
    if let Err(err) =
        prometheus_client::encoding::text::encode_registry(&mut open_metrics, &registry)
    {
        tracing::error!(error = %err, "cannot encode the metrics");
    }
    to_text_format(&open_metrics)
}

/// OpenMetrics text as the 0.0.4 text format: counter families keep
/// `_total` in `# HELP` and `# TYPE`, and there is no `# EOF`.
pub(crate) fn to_text_format(open_metrics: &str) -> String {
    let counters: HashSet<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + 16 * counters.len());
    for line in open_metrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let retitled = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match retitled {
            Some(line) => out.push_str(&line),
            // The crate writes infinities as `inf`; the format spells them `+Inf`.
            None => match line.strip_suffix(" inf") {
                Some(head) if !line.starts_with('#') => {
                    out.push_str(head);
                    out.push_str(" +Inf");
                }
                _ => match line.strip_suffix(" -inf") {
                    Some(head) if !line.starts_with('#') => {
                        out.push_str(head);
                        out.push_str(" -Inf");
                    }
                    _ => out.push_str(line),
                },
            },
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_keep_total_in_help_and_type_and_eof_goes() {
        let open_metrics = "# HELP a_things Things.\n# TYPE a_things counter\na_things_total 3\n\
                            # HELP b_level Level.\n# TYPE b_level gauge\nb_level 1.5\n# EOF\n";
        assert_eq!(
            to_text_format(open_metrics),
            "# HELP a_things_total Things.\n# TYPE a_things_total counter\na_things_total 3\n\
             # HELP b_level Level.\n# TYPE b_level gauge\nb_level 1.5\n"
        );
    }

    #[test]
    fn infinities_are_spelled_as_the_text_format_spells_them() {
        let open_metrics =
            "# HELP p P99 inf\n# TYPE p gauge\np{c=\"a\"} inf\np{c=\"b\"} -inf\np 1.0\n";
        assert_eq!(
            to_text_format(open_metrics),
            "# HELP p P99 inf\n# TYPE p gauge\np{c=\"a\"} +Inf\np{c=\"b\"} -Inf\np 1.0\n"
        );
    }

    #[test]
    fn a_gauge_whose_help_mentions_counter_is_left_alone() {
        let text = "# HELP c_x Not a counter\n# TYPE c_x gauge\nc_x 1\n";
        assert_eq!(to_text_format(text), text);
    }
}
