//! How rollguardctl prints a policy judgement: the verdict names, the JSON
//! object, and the header and rule table that `status`, `why` and the demo
//! share.

use rollguard_proto::v1 as pb;
use serde_json::{json, Value};

use super::output::{fmt_time, table};

/// Names a wire verdict: `pass`, `fail`, `inconclusive`, `error`, or `unknown`.
pub(crate) fn verdict_name(value: i32) -> &'static str {
    match pb::Verdict::try_from(value) {
        Ok(pb::Verdict::Pass) => "pass",
        Ok(pb::Verdict::Fail) => "fail",
        Ok(pb::Verdict::Inconclusive) => "inconclusive",
        Ok(pb::Verdict::Error) => "error",
        _ => "unknown",
    }
}

/// Formats a figure as the policy does, or `-` when there is none.
pub(crate) fn fmt_opt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), rollguard_common::policy::format_value)
}

pub(crate) fn judgement_json(j: &pb::Judgement) -> Value {
    json!({
        "at": j.at.as_ref().map(fmt_time),
        "verdict": verdict_name(j.verdict),
        "reason": j.reason,
        "consecutive": j.consecutive,
        "consecutive_failures": j.consecutive_failures,
        "armed": j.armed,
        "dry_run": j.dry_run,
        "blast_radius_exceeded": j.blast_radius_exceeded,
        "decision": j.decision,
        "command_id": j.command_id,
        "beta_hosts": j.beta_hosts,
        "baseline_hosts": j.baseline_hosts,
        "beta_requests": j.beta_requests,
        "baseline_requests": j.baseline_requests,
        "rules": j.rules.iter().map(|r| json!({
            "metric": r.metric,
            "value": r.value,
            "baseline": r.baseline,
            "limit": r.limit,
            "limit_text": r.limit_text,
            "verdict": verdict_name(r.verdict),
            "note": r.note,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn print_judgement_header(deployment: &str, j: &pb::Judgement) {
    let mut flags = Vec::new();
    if !j.armed {
        flags.push("DISARMED (rollguardctl rearm to re-arm)".to_owned());
    }
    if j.dry_run {
        flags.push("dry run".to_owned());
    }
    if j.blast_radius_exceeded {
        flags.push("BLAST RADIUS EXCEEDED".to_owned());
    }
    println!(
        "{deployment}: {} ({}/{} failing rounds){}{}",
        verdict_name(j.verdict).to_uppercase(),
        j.consecutive,
        j.consecutive_failures,
        if flags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", flags.join(", "))
        },
        if j.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", j.reason)
        }
    );
}

pub(crate) fn print_rules(j: &pb::Judgement) {
    if j.rules.is_empty() {
        return;
    }
    let mut rows = vec![
        ["RULE", "BETA", "BASELINE", "LIMIT", "THRESHOLD", "OUTCOME"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for r in &j.rules {
        rows.push(vec![
            r.metric.clone(),
            fmt_opt(r.value),
            fmt_opt(r.baseline),
            r.limit_text.clone(),
            fmt_opt(r.limit),
            verdict_name(r.verdict).to_owned(),
        ]);
    }
    for line in table(&rows).lines() {
        println!("  {line}");
    }
}

#[cfg(test)]
mod tests;
