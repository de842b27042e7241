use super::*;

#[test]
fn a_phase_counts_the_ceiling_of_its_share_and_at_least_one_host() {
    for (hosts, percent, want) in [
        (20, 5, 1),
        (20, 25, 5),
        (20, 90, 18),
        (20, 100, 20),
        (3, 5, 1),
        (3, 25, 1),
        (3, 90, 3),
        (101, 5, 6),
        (1, 5, 1),
        (0, 50, 0),
    ] {
        assert_eq!(
            phase_hosts(hosts, percent),
            want,
            "{hosts} hosts at {percent}%"
        );
    }
}

#[test]
fn host_order_is_stable_and_nested_whoever_joins() {
    let hosts: Vec<String> = (0..40).map(|i| format!("h{i:02}")).collect();
    let all = host_order("cache", hosts.iter().map(String::as_str));
    assert_eq!(all.len(), 40);
    // Not just the ids sorted: the hash spreads them.
    let sorted: Vec<&str> = hosts.iter().map(String::as_str).collect();
    assert_ne!(all, sorted);
    // Fewer hosts keep their relative order: a phase's set grows by appending.
    let some = host_order("cache", hosts.iter().take(25).map(String::as_str));
    let filtered: Vec<&str> = all.iter().copied().filter(|h| some.contains(h)).collect();
    assert_eq!(some, filtered);
    // Another deployment orders the same hosts differently.
    assert_ne!(all, host_order("web", hosts.iter().map(String::as_str)));
    // The same on every run and release: pinned.
    assert_eq!(
        host_order("cache", ["a", "b", "c", "d"]),
        host_order("cache", ["d", "c", "b", "a"])
    );
    assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
}

#[test]
fn phases_must_rise_to_one_hundred() {
    assert_eq!(validate_phases(&[5, 25, 90, 100]), Ok(vec![5, 25, 90, 100]));
    assert_eq!(validate_phases(&[100]), Ok(vec![100]));
    for bad in [
        &[][..],
        &[5, 5, 100],
        &[5, 25, 90],
        &[0, 100],
        &[50, 101],
        &[90, 25, 100],
    ] {
        assert!(validate_phases(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn rollout_keys_are_checked_by_name() {
    let raw = RawRollout {
        phases: vec![10, 5, 100],
        ..RawRollout::default()
    };
    let err = raw.validate("deployments.cache.rollout").unwrap_err();
    assert!(
        err.to_string().contains("deployments.cache.rollout.phases"),
        "{err}"
    );
    let raw = RawRollout {
        status_every: "0s".to_owned(),
        ..RawRollout::default()
    };
    let err = raw.validate("deployments.cache.rollout").unwrap_err();
    assert!(err.to_string().contains("status_every"), "{err}");
    let config = RawRollout::default().validate("r").unwrap();
    assert_eq!(config.phases, DEFAULT_PHASES);
    assert_eq!(config.min_phase_duration, Duration::from_secs(3600));
    assert_eq!(config.promote_action, None);
    assert_eq!(config.approval, Approval::Auto);
}

#[test]
fn blast_radius_names_what_is_missing_and_what_is_risky() {
    let mut radius = BlastRadius {
        impact_level: Some("non-critical".to_owned()),
        affected_users: Some("internal-team-only".to_owned()),
        fallback_strategy: Some("automatic-rollback".to_owned()),
        data_at_risk: Some("none".to_owned()),
        financial_impact: Some("minimal".to_owned()),
        reputation_risk: None,
    };
    assert_eq!(radius.missing(), vec!["reputation_risk"]);
    assert!(radius.risks().is_empty());
    radius.impact_level = Some("critical".to_owned());
    radius.data_at_risk = Some("session tokens".to_owned());
    radius.fallback_strategy = Some("manual".to_owned());
    assert_eq!(radius.risks().len(), 3);
    radius.impact_level = Some("huge".to_owned());
    let err = radius
        .validate("deployments.cache.blast_radius")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("deployments.cache.blast_radius.impact_level"),
        "{err}"
    );
}

#[test]
fn assessments_need_a_real_change() {
    use Assessment::*;
    for (metric, beta, baseline, want) in [
        ("error_rate", Some(0.0002), Some(0.0001), Acceptable),
        ("error_rate", Some(0.05), Some(0.01), Regression),
        ("error_rate", Some(0.001), Some(0.02), Improvement),
        ("latency_p99_ms", Some(52.0), Some(50.0), Acceptable),
        ("latency_p99_ms", Some(120.0), Some(50.0), Regression),
        ("cpu_percent", Some(30.0), Some(40.0), Improvement),
        ("memory_percent", None, Some(40.0), Unknown),
    ] {
        assert_eq!(
            Assessment::of(metric, beta, baseline),
            want,
            "{metric} {beta:?} {baseline:?}"
        );
    }
}
