//! One round's verdict: the rules judged over the beta and baseline cohorts,
//! then the gates (blast radius, blindness, too few hosts) that overrule them.

use super::cohort::CohortRound;
use super::config::Policy;
use super::gate::Gate;
use super::round::RoundInput;
use super::rule::judge_rule;
use super::verdict::{Evaluation, RuleOutcome, Verdict};
use crate::Cohort;

/// Judges one round.
pub fn evaluate(policy: &Policy, input: &RoundInput<'_>) -> Evaluation {
    let beta = CohortRound::of(input.hosts, Cohort::Beta);
    let baseline = CohortRound::of(input.hosts, Cohort::Baseline);
    let rules: Vec<RuleOutcome> = policy
        .rules
        .iter()
        .map(|rule| judge_rule(policy, rule, input.round_secs, &beta, &baseline))
        .collect();
    let mut evaluation = Evaluation {
        verdict: Verdict::Pass,
        reason: String::new(),
        rules,
        beta: beta.figures(),
        baseline: baseline.figures(),
        blind: false,
        blast_radius_exceeded: false,
    };
    match Gate::check(policy, input, &beta, &baseline, &evaluation.rules) {
        Some(gate) => gate.apply(&mut evaluation),
        None => {
            let (verdict, reason) = rules_verdict(policy, &evaluation.rules);
            evaluation.verdict = verdict;
            evaluation.reason = reason;
        }
    }
    evaluation
}

/// Returns the worst verdict among the rules (fail, then error, then
/// inconclusive) and the notes of the rules that gave it.
fn rules_verdict(policy: &Policy, rules: &[RuleOutcome]) -> (Verdict, String) {
    let by = |v: Verdict| rules.iter().filter(move |r| r.verdict == v);
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
    (verdict, reason)
}
