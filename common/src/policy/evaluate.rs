//! One round's verdict: the rules judged over the beta and baseline cohorts,
//! then the gates (blast radius, blindness, too few hosts) that overrule them.

use super::cohort::{cohort_hosts, figures, pooled};
use super::config::Policy;
use super::round::{HostRound, RoundInput};
use super::rule::judge_rule;
use super::verdict::{Evaluation, RuleOutcome, Verdict};
use crate::Cohort;

/// Judges one round.
pub fn evaluate(policy: &Policy, input: &RoundInput<'_>) -> Evaluation {
    let beta: Vec<&HostRound> = cohort_hosts(input.hosts, Cohort::Beta);
    let baseline: Vec<&HostRound> = cohort_hosts(input.hosts, Cohort::Baseline);
    let beta_app = pooled(&beta);
    let baseline_app = pooled(&baseline);
    let rules: Vec<RuleOutcome> = policy
        .rules
        .iter()
        .map(|rule| {
            judge_rule(
                policy,
                rule,
                input,
                (&beta, &beta_app),
                (&baseline, &baseline_app),
            )
        })
        .collect();
    let mut evaluation = Evaluation {
        verdict: Verdict::Pass,
        reason: String::new(),
        rules,
        beta: figures(&beta, &beta_app),
        baseline: figures(&baseline, &baseline_app),
        blind: false,
        blast_radius_exceeded: false,
    };
    let share = if input.hosts_seen == 0 {
        0.0
    } else {
        f64::from(input.beta_seen) / f64::from(input.hosts_seen)
    };
    let outside: Vec<&str> = beta
        .iter()
        .map(|h| h.host_id.as_str())
        .filter(|h| !policy.allows_beta(h))
        .collect();
    if share > policy.max_beta_share || !outside.is_empty() {
        // Every host stays watched: the rules are judged as usual, and a
        // broken rule is named (and still counts, see `advance`), because an
        // over-wide beta must not become harder to roll back.
        evaluation.blast_radius_exceeded = true;
        evaluation.verdict = Verdict::Error;
        let broken: Vec<&str> = evaluation
            .rules
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
            .map(|r| r.note.as_str())
            .collect();
        let over = if outside.is_empty() {
            format!(
                "{} of {} beta > max_beta_share {}",
                input.beta_seen, input.hosts_seen, policy.max_beta_share
            )
        } else {
            // Named, but a bounded few: the reason is stored with every round.
            const NAMED: usize = 5;
            let more = outside.len().saturating_sub(NAMED);
            format!(
                "beta on {} host(s) outside beta_hosts: {}{}",
                outside.len(),
                outside[..outside.len().min(NAMED)].join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )
        };
        evaluation.reason = format!(
            "blast radius exceeded ({over}){}",
            if broken.is_empty() {
                String::new()
            } else {
                format!("; {}", broken.join("; "))
            }
        );
        return evaluation;
    }
    if beta.is_empty() && baseline.is_empty() {
        evaluation.blind = true;
        evaluation.verdict = Verdict::Inconclusive;
        evaluation.reason =
            "no data from any host: the monitor is blind, not the beta failing".to_owned();
        return evaluation;
    }
    if (beta.len() as u32) < policy.min_hosts {
        evaluation.verdict = Verdict::Inconclusive;
        evaluation.reason = format!(
            "{} beta host(s) reporting < min_hosts {}",
            beta.len(),
            policy.min_hosts
        );
        return evaluation;
    }
    let by = |v: Verdict| evaluation.rules.iter().filter(move |r| r.verdict == v);
    let (verdict, picked): (Verdict, Vec<&RuleOutcome>) = if by(Verdict::Fail).next().is_some() {
        (Verdict::Fail, by(Verdict::Fail).collect())
    } else if by(Verdict::Error).next().is_some() {
        (Verdict::Error, by(Verdict::Error).collect())
    } else if by(Verdict::Inconclusive).next().is_some() {
        (Verdict::Inconclusive, by(Verdict::Inconclusive).collect())
    } else {
        (Verdict::Pass, Vec::new())
    };
    let reason = if verdict == Verdict::Pass {
        if policy.rules.is_empty() {
            "no rules".to_owned()
        } else {
            "every rule holds".to_owned()
        }
    } else {
        picked
            .iter()
            .map(|r| r.note.clone())
            .collect::<Vec<_>>()
            .join("; ")
    };
    evaluation.verdict = verdict;
    evaluation.reason = reason;
    evaluation
}
