//! rollguardctl's policy commands: why, rearm, report, and the judgement
//! part of status.

use std::time::Duration;

use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use serde_json::{json, Value};
use tonic::transport::Channel;

use super::args::Format;
use super::connect::{actor, request, status_error};
use super::output::{fmt_time, table};

pub(crate) fn verdict_name(value: i32) -> &'static str {
    match pb::Verdict::try_from(value) {
        Ok(pb::Verdict::Pass) => "pass",
        Ok(pb::Verdict::Fail) => "fail",
        Ok(pb::Verdict::Inconclusive) => "inconclusive",
        Ok(pb::Verdict::Error) => "error",
        _ => "unknown",
    }
}

fn fmt_opt(value: Option<f64>) -> String {
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

pub(crate) async fn why(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
    rounds: u32,
) -> anyhow::Result<u8> {
    let response = client
        .why(request(pb::WhyRequest { deployment, rounds }))
        .await
        .map_err(status_error)?
        .into_inner();
    match format {
        Format::Json => println!(
            "{}",
            json!({
                "deployment": response.deployment,
                "rounds": response.rounds.iter().map(judgement_json).collect::<Vec<_>>(),
            })
        ),
        Format::Table => {
            if response.rounds.is_empty() {
                println!("no rounds judged yet for {}", response.deployment);
            }
            for j in &response.rounds {
                let decision = match j.decision.as_str() {
                    "roll_back" => format!("  => ROLLBACK {}", j.command_id),
                    "would_roll_back" => "  => WOULD ROLL BACK (dry run)".to_owned(),
                    _ => String::new(),
                };
                println!(
                    "{}  {}  {}/{}  beta {} host(s), {} req; baseline {} host(s), {} req{decision}",
                    j.at.as_ref().map(fmt_time).unwrap_or_default(),
                    verdict_name(j.verdict).to_uppercase(),
                    j.consecutive,
                    j.consecutive_failures,
                    j.beta_hosts,
                    fmt_opt(Some(j.beta_requests)),
                    j.baseline_hosts,
                    fmt_opt(Some(j.baseline_requests)),
                );
                if !j.reason.is_empty() {
                    println!("  {}", j.reason);
                }
                print_rules(j);
            }
        }
    }
    Ok(0)
}

pub(crate) async fn rearm(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
    reason: String,
) -> anyhow::Result<u8> {
    let response = client
        .rearm(request(pb::RearmRequest {
            deployment: deployment.clone(),
            reason,
            actor: actor(),
        }))
        .await
        .map_err(status_error)?
        .into_inner();
    match format {
        Format::Json => println!(
            "{}",
            json!({ "deployment": deployment, "armed": true, "was_armed": response.was_armed })
        ),
        Format::Table => {
            if response.was_armed {
                println!("{deployment} was already armed; its count is reset");
            } else {
                println!("{deployment} re-armed; the policy may decide a rollback again");
            }
        }
    }
    Ok(0)
}

pub(crate) async fn report(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
    window: Duration,
) -> anyhow::Result<u8> {
    let response = client
        .report(request(pb::ReportRequest {
            deployment,
            window: Some(rollguard_proto::duration_to_pb(window)),
        }))
        .await
        .map_err(status_error)?
        .into_inner();
    match format {
        Format::Json => println!(
            "{}",
            json!({
                "deployment": response.deployment,
                "rounds": response.rounds,
                "from": response.from.as_ref().map(fmt_time),
                "to": response.to.as_ref().map(fmt_time),
                "beta_requests": response.beta_requests,
                "baseline_requests": response.baseline_requests,
                "rows": response.rows.iter().map(|r| json!({
                    "metric": r.metric,
                    "beta": r.beta,
                    "baseline": r.baseline,
                    "change_percent": r.change_percent,
                })).collect::<Vec<_>>(),
            })
        ),
        Format::Table => {
            println!(
                "{}: beta vs baseline, {} round(s) from {} to {} ({} vs {} requests)",
                response.deployment,
                response.rounds,
                response.from.as_ref().map(fmt_time).unwrap_or_default(),
                response.to.as_ref().map(fmt_time).unwrap_or_default(),
                fmt_opt(Some(response.beta_requests)),
                fmt_opt(Some(response.baseline_requests)),
            );
            let mut rows = vec![["METRIC", "BETA", "BASELINE", "CHANGE"]
                .map(str::to_owned)
                .to_vec()];
            for r in &response.rows {
                rows.push(vec![
                    r.metric.clone(),
                    fmt_opt(r.beta),
                    fmt_opt(r.baseline),
                    r.change_percent
                        .map(|c| format!("{c:+.1}%"))
                        .unwrap_or_else(|| "-".to_owned()),
                ]);
            }
            print!("{}", table(&rows));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests;
