//! The blast-radius preflight (the essay's "if you can't fill this out with
//! confidence, the beta doesn't belong in production"): a pure checklist
//! over the policy, the hosts and the deployment's rollouts.

use rollguard_common::ids::validate_version;
use rollguard_common::policy::{JudgeState, MetricKind, Policy};
use rollguard_common::rollout::phase_hosts;
use serde::Serialize;

use crate::fleet::AgentView;

/// Hosts named in one check's detail before "and N more".
const NAMED: usize = 10;

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) ok: bool,
    pub(crate) detail: String,
}

/// What the checklist reads.
#[derive(Debug)]
pub(crate) struct Input<'a> {
    pub(crate) version: &'a str,
    pub(crate) phases: &'a [u32],
    pub(crate) accept_risk: &'a str,
    pub(crate) policy: &'a Policy,
    pub(crate) state: JudgeState,
    /// Every host of the deployment the fleet knows.
    pub(crate) hosts: &'a [AgentView],
    pub(crate) notify_configured: bool,
    /// The deployment's rollout that is scheduled or active, if any.
    pub(crate) active: Option<(u64, &'static str)>,
}

/// Every check, in order; the rollout may start only if all pass.
pub(crate) fn run(input: &Input<'_>) -> Vec<Check> {
    let policy = input.policy;
    let mut checks = vec![
        check_version(input.version),
        check_blast_radius(policy),
        check_risk(policy, input.accept_risk),
        check_actions(policy, input.hosts),
        check_rules(policy),
        check_armed(policy, input.state),
        check_app_health(input.hosts),
        check_share(policy, input.phases, input.hosts),
    ];
    checks.push(Check {
        name: "notification",
        ok: input.notify_configured,
        detail: if input.notify_configured {
            "the team is told at every step ([notify])".to_owned()
        } else {
            "no webhook is configured in [notify]: nobody would be told".to_owned()
        },
    });
    checks.push(match input.active {
        None => pass(
            "no_other_rollout",
            "no other rollout of the deployment is active",
        ),
        Some((number, state)) => fail(
            "no_other_rollout",
            format!("rollout #{number} of the deployment is {state}"),
        ),
    });
    checks
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: true,
        detail: detail.into(),
    }
}

fn fail(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: false,
        detail: detail.into(),
    }
}

fn check_version(version: &str) -> Check {
    match validate_version(version) {
        Ok(()) => pass("version", format!("`{version}` may be passed to an action")),
        Err(err) => fail("version", err),
    }
}

fn check_blast_radius(policy: &Policy) -> Check {
    let missing = policy.blast_radius.missing();
    if missing.is_empty() {
        let set: Vec<String> = policy
            .blast_radius
            .fields()
            .iter()
            .map(|(name, value)| format!("{name}={}", value.unwrap_or_default()))
            .collect();
        pass("blast_radius", set.join(", "))
    } else {
        fail(
            "blast_radius",
            format!(
                "[blast_radius] does not set {}: all six are required",
                missing.join(", ")
            ),
        )
    }
}

fn check_risk(policy: &Policy, accept_risk: &str) -> Check {
    let risks = policy.blast_radius.risks();
    match (risks.is_empty(), accept_risk.trim().is_empty()) {
        (true, _) => pass("risk", "non-critical, no data at risk, automatic fallback"),
        (false, true) => fail(
            "risk",
            format!("{}: start with --accept-risk REASON", risks.join("; ")),
        ),
        (false, false) => pass(
            "risk",
            format!("{}: accepted ({})", risks.join("; "), accept_risk.trim()),
        ),
    }
}

/// The hosts a rollout moves (`auto` ones, connected) must all define the
/// promote action and the rollback action.
fn check_actions(policy: &Policy, hosts: &[AgentView]) -> Check {
    let Some(promote) = policy.rollout.promote_action.as_deref() else {
        return fail(
            "actions",
            "[rollout] promote_action is not configured: nothing could install the version",
        );
    };
    let candidates: Vec<&AgentView> = candidates(hosts).collect();
    if candidates.is_empty() {
        return fail(
            "actions",
            "no connected host leaves its cohort to the coordinator (--cohort auto)",
        );
    }
    let lacking: Vec<String> = candidates
        .iter()
        .filter_map(|h| {
            let names = &h.identity.action_names;
            let missing: Vec<&str> = [promote, policy.rollback_action.as_str()]
                .into_iter()
                .filter(|a| !names.iter().any(|n| n == a))
                .collect();
            (!missing.is_empty())
                .then(|| format!("{} (no {})", h.identity.host_id, missing.join(", ")))
        })
        .collect();
    if lacking.is_empty() {
        pass(
            "actions",
            format!(
                "all {} host(s) define `{promote}` and `{}`",
                candidates.len(),
                policy.rollback_action
            ),
        )
    } else {
        fail("actions", named(&lacking))
    }
}

fn check_rules(policy: &Policy) -> Check {
    let app = |pred: &dyn Fn(&str) -> bool| {
        policy
            .rules
            .iter()
            .any(|r| r.metric.kind == MetricKind::App && pred(&r.metric.base))
    };
    let errors = app(&|m| m.ends_with("error_rate"));
    let latency = app(&|m| m.contains("latency_"));
    match (errors, latency) {
        (true, true) => pass("policy_rules", "an error-rate rule and a latency rule"),
        _ => fail(
            "policy_rules",
            format!(
                "the policy needs an error-rate rule{} and a latency rule{}",
                if errors { " (present)" } else { " (missing)" },
                if latency { " (present)" } else { " (missing)" },
            ),
        ),
    }
}

fn check_armed(policy: &Policy, state: JudgeState) -> Check {
    if policy.dry_run {
        fail(
            "policy_armed",
            "the policy is a dry run: it would roll nothing back",
        )
    } else if !state.armed {
        fail(
            "policy_armed",
            "the policy is disarmed after a rollback: `rollguardctl rearm` first",
        )
    } else {
        pass("policy_armed", "armed, not a dry run")
    }
}

/// Every connected host's latest sample carries the app's health.
fn check_app_health(hosts: &[AgentView]) -> Check {
    let connected: Vec<&AgentView> = hosts.iter().filter(|h| h.connected).collect();
    if connected.is_empty() {
        return fail("app_health", "no host of the deployment is connected");
    }
    let silent: Vec<String> = connected
        .iter()
        .filter(|h| h.stale || h.latest.as_ref().is_none_or(|s| s.app.is_none()))
        .map(|h| h.identity.host_id.to_string())
        .collect();
    if silent.is_empty() {
        pass(
            "app_health",
            format!(
                "all {} connected host(s) report app health",
                connected.len()
            ),
        )
    } else {
        fail(
            "app_health",
            format!("no app health from {}", named(&silent)),
        )
    }
}

fn check_share(policy: &Policy, phases: &[u32], hosts: &[AgentView]) -> Check {
    let n = candidates(hosts).count();
    let Some(&first) = phases.first() else {
        return fail("first_phase_share", "no phases");
    };
    let promoted = phase_hosts(n, first);
    let share = if n == 0 {
        0.0
    } else {
        promoted as f64 / n as f64
    };
    let detail = format!(
        "the first phase ({first} %) puts {promoted} of {n} host(s) ({:.0} %) on the new version; max_beta_share is {:.0} %",
        share * 100.0,
        policy.max_beta_share * 100.0
    );
    if share <= policy.max_beta_share + 1e-9 {
        pass("first_phase_share", detail)
    } else {
        fail("first_phase_share", detail)
    }
}

/// The hosts a rollout may promote: connected, cohort left to the coordinator.
pub(crate) fn candidates(hosts: &[AgentView]) -> impl Iterator<Item = &AgentView> {
    hosts.iter().filter(|h| h.connected && h.identity.auto)
}

fn named(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > NAMED {
        text.push_str(&format!(" and {} more", items.len() - NAMED));
    }
    text
}
