//! `rollguardctl why`: the last rounds' verdicts of a deployment, rule by
//! rule.

use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use super::args::Format;
use super::connect::{request, status_error};
use super::judgement::{fmt_opt, judgement_json, print_rules, verdict_name};
use super::output::fmt_time;

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
