//! Plain-text formatting for rollguardctl tables, and the names of wire enums
//! that tables and JSON share.

use rollguard_proto::v1 as pb;

/// Formats rows as left-aligned columns separated by two spaces.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let n_columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; n_columns];
    for row in rows {
        for (idx, cell) in row.iter().enumerate() {
            widths[idx] = widths[idx].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (idx, cell) in row.iter().enumerate() {
            if idx + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(
                    ' ',
                    widths[idx] - cell.chars().count() + 2,
                ));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Formats a byte count with a binary unit: `512B`, `1.5KiB`, `3.2GiB`.
pub(crate) fn fmt_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// Formats a rate in bytes per second.
pub(crate) fn fmt_rate(bytes_per_sec: f64) -> String {
    format!("{}/s", fmt_bytes(bytes_per_sec))
}

/// Formats a timestamp as RFC 3339 UTC with second precision.
pub(crate) fn fmt_time(ts: &prost_types::Timestamp) -> String {
    match rollguard_proto::time_from_pb("time", ts) {
        Ok(time) => humantime::format_rfc3339_seconds(time).to_string(),
        Err(_) => "invalid".to_owned(),
    }
}

/// Names a wire cohort: `beta`, `baseline`, or `unknown`.
pub(crate) fn cohort_name(value: i32) -> &'static str {
    match pb::Cohort::try_from(value) {
        Ok(pb::Cohort::Beta) => "beta",
        Ok(pb::Cohort::Baseline) => "baseline",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests;
