//! The policy loop: every deployment's rounds at its `check_interval`, each
//! judged by the pure engine in `rollguard_common::policy`, stored with the
//! figures it used, and acted on.
//!
//! Rounds are windowed by the coordinator's receive time: a round holds what
//! arrived since the previous round of that deployment (less a resent
//! backlog's older part, see `Fleet::record_samples`). Configured
//! deployments are judged always (hearing from no host is a blind round,
//! never a rollback); others only while they have connected hosts, with no
//! rules.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rollguard_common::policy::{evaluate, Evaluation, RoundInput, Verdict};
use rollguard_common::DeploymentName;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::counters::Counters;
use crate::decisions::{Decisions, Recorded};
use crate::fleet::Fleet;
use crate::notify::Notifier;
use crate::outbound::AgentTx;

/// How often the loop looks for due rounds.
const TICK: Duration = Duration::from_millis(100);

/// The policy loop and what it reads and tells.
#[derive(Debug)]
pub(crate) struct Judge {
    pub(crate) config: Arc<Config>,
    pub(crate) fleet: Arc<Fleet<AgentTx>>,
    pub(crate) decisions: Arc<Decisions>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) notifier: Notifier,
}

impl Judge {
    /// Runs rounds until `shutdown`.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut next_due: HashMap<DeploymentName, Instant> = HashMap::new();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let now = Instant::now();
            let mut deployments: Vec<DeploymentName> =
                self.config.deployments.keys().cloned().collect();
            deployments.extend(self.fleet.connected_deployments());
            deployments.sort();
            deployments.dedup();
            for deployment in deployments {
                let policy = self.config.deployment(&deployment);
                let due = next_due
                    .entry(deployment.clone())
                    .or_insert(now + policy.check_interval);
                if now < *due {
                    continue;
                }
                // Keep the cadence; after a stall, start afresh rather than burst.
                *due += policy.check_interval;
                if *due <= now {
                    *due = now + policy.check_interval;
                }
                self.round(&deployment, policy.check_interval).await;
            }
        }
    }

    /// Judges one round of `deployment` and hands it to the decisions.
    async fn round(&self, deployment: &DeploymentName, round_len: Duration) {
        let policy = self.config.deployment(deployment);
        let now = SystemTime::now();
        let (hosts, beta_seen, hosts_seen) = self.fleet.take_round(deployment, now);
        let evaluation = evaluate(
            &policy,
            &RoundInput {
                hosts: &hosts,
                round_secs: round_len.as_secs_f64(),
                beta_seen,
                hosts_seen,
            },
        );
        let span = evaluation_span(deployment, &evaluation);
        let recorded = self
            .decisions
            .record_round(deployment, &policy, evaluation, now, &span)
            .await;
        self.tell(deployment, &recorded);
    }

    /// Counts the round's verdict, and tells the team when it changed.
    fn tell(&self, deployment: &DeploymentName, recorded: &Recorded) {
        let record = &recorded.record;
        let verdict = record.evaluation.verdict;
        self.counters.verdict(deployment.as_str(), verdict.as_str());
        if recorded.previous == Some(verdict) {
            return;
        }
        tracing::info!(%deployment, %verdict, reason = %record.evaluation.reason, "verdict changed");
        self.notifier.send(json!({
            "event": "verdict_changed",
            "deployment": deployment.as_str(),
            "from": recorded.previous.map(|v| v.as_str()),
            "to": verdict.as_str(),
            "reason": record.evaluation.reason,
            "consecutive": record.state.consecutive,
            "blast_radius_exceeded": record.evaluation.blast_radius_exceeded,
        }));
    }
}

/// Rounds that pass are not traced; a round that fails (or errs) starts a
/// `policy.evaluate` trace with each rule's figures, and a decision's
/// broadcast and every agent's action join it.
fn evaluation_span(deployment: &DeploymentName, evaluation: &Evaluation) -> tracing::Span {
    if evaluation.verdict == Verdict::Pass {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "policy.evaluate",
        deployment = %deployment,
        verdict = evaluation.verdict.as_str(),
        reason = %evaluation.reason,
        consecutive = tracing::field::Empty,
        decision = tracing::field::Empty,
    );
    for rule in &evaluation.rules {
        let prefix = format!("rule.{}", rule.metric);
        if let Some(v) = rule.value {
            rollguard_proto::otel::set_attribute(&span, format!("{prefix}.value"), v);
        }
        if let Some(v) = rule.baseline {
            rollguard_proto::otel::set_attribute(&span, format!("{prefix}.baseline"), v);
        }
        if let Some(v) = rule.limit {
            rollguard_proto::otel::set_attribute(&span, format!("{prefix}.limit"), v);
        }
        rollguard_proto::otel::set_attribute(
            &span,
            format!("{prefix}.outcome"),
            rule.verdict.as_str(),
        );
    }
    span
}
