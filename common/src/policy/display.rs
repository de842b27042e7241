//! How figures and limits read in verdict notes, reports and rollguardctl.

use super::config::Rule;

impl Rule {
    /// How the limit reads, e.g. "max 0.05" or "2 × baseline (floor 10)".
    pub fn limit_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(max) = self.max {
            parts.push(format!("max {}", format_value(max)));
        }
        if let Some(min) = self.min {
            parts.push(format!("min {}", format_value(min)));
        }
        if let Some(ratio) = self.max_ratio_to_baseline {
            if self.min_baseline > 0.0 {
                parts.push(format!(
                    "{} × baseline (floor {})",
                    format_value(ratio),
                    format_value(self.min_baseline)
                ));
            } else {
                parts.push(format!("{} × baseline", format_value(ratio)));
            }
        }
        parts.join(", ")
    }
}

/// Formats a figure with up to four significant decimals.
pub fn format_value(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}
