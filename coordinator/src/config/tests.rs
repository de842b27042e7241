use std::collections::HashMap;

use super::*;

#[track_caller]
fn check(env: &[(&str, &str)], expected_error: Option<&str>) {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let result = RawConfig::load(Sources {
        env_prefix: ENV_PREFIX,
        env: Some(env),
        ..Sources::default()
    })
    .and_then(RawConfig::validate);
    match (result, expected_error) {
        (Ok(_), None) => {}
        (Err(err), Some(needle)) => {
            assert!(err.to_string().contains(needle), "`{err}` lacks `{needle}`")
        }
        (Ok(cfg), Some(needle)) => panic!("expected an error naming {needle}, got {cfg:?}"),
        (Err(err), None) => panic!("unexpected error: {err}"),
    }
}

#[test]
fn defaults_are_valid() {
    check(&[], None);
}

#[test]
fn non_loopback_listen_needs_insecure_listen() {
    check(
        &[("ROLLGUARD_COORDINATOR__LISTEN", "0.0.0.0:7600")],
        Some("`listen`"),
    );
    check(
        &[
            ("ROLLGUARD_COORDINATOR__LISTEN", "0.0.0.0:7600"),
            ("ROLLGUARD_COORDINATOR__INSECURE_LISTEN", "true"),
        ],
        None,
    );
    check(&[("ROLLGUARD_COORDINATOR__LISTEN", "[::1]:7600")], None);
}

#[test]
fn bad_values_name_their_key() {
    check(
        &[("ROLLGUARD_COORDINATOR__LISTEN", "nowhere")],
        Some("`listen`"),
    );
    check(
        &[("ROLLGUARD_COORDINATOR__COMMAND_TTL", "0s")],
        Some("`command_ttl`"),
    );
    check(
        &[("ROLLGUARD_COORDINATOR__COMMAND_TTL", "later")],
        Some("`command_ttl`"),
    );
    check(&[("ROLLGUARD_COORDINATOR__LISTN", "x")], Some("listn"));
    check(
        &[("ROLLGUARD_COORDINATOR__CONFIG_VERSION", "2")],
        Some("`config_version`"),
    );
}

#[test]
fn deployment_policy_errors_name_the_key() {
    check(
        &[(
            "ROLLGUARD_COORDINATOR__DEPLOYMENTS__WEB__CONSECUTIVE_FAILURES",
            "0",
        )],
        Some("`deployments.web.consecutive_failures`"),
    );
    check(
        &[("ROLLGUARD_COORDINATOR__NOTIFY__WEBHOOK_URL", "ftp://x")],
        Some("`notify.webhook_url`"),
    );
    check(
        &[(
            "ROLLGUARD_COORDINATOR__NOTIFY__WEBHOOK_URL",
            "https://chat.example/hooks/rollguard",
        )],
        None,
    );
    check(
        &[("ROLLGUARD_COORDINATOR__DEPLOYMENTS__WEB__DRY_RUN", "true")],
        None,
    );
}

#[test]
fn host_retention_is_at_least_the_target_window() {
    check(&[("ROLLGUARD_COORDINATOR__HOST_RETENTION", "30d")], None);
    check(
        &[("ROLLGUARD_COORDINATOR__HOST_RETENTION", "12h")],
        Some("host_retention"),
    );
    check(
        &[("ROLLGUARD_COORDINATOR__HOST_RETENTION", "soon")],
        Some("host_retention"),
    );
}

#[test]
fn the_example_config_is_valid() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/coordinator.example.toml");
    let config = RawConfig::load(Sources {
        file: Some(&path),
        env_prefix: ENV_PREFIX,
        env: Some(HashMap::new()),
        overrides: Vec::new(),
    })
    .and_then(RawConfig::validate)
    .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let policy = config
        .deployments
        .get(&DeploymentName::new("cache-service".to_owned()))
        .expect("the example deployment");
    assert_eq!(policy.rules.len(), 3);
    assert!(policy.blast_radius.missing().is_empty());
    assert_eq!(policy.rollout.promote_action.as_deref(), Some("promote"));
    assert_eq!(policy.rollout.phases, vec![5, 25, 90, 100]);
}

/// Loads `toml` as the config file.
fn load_toml(name: &str, toml: &str) -> Result<Config, ConfigError> {
    let path = std::env::temp_dir().join(format!(
        "rollguard-config-{name}-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, toml).expect("write the config");
    let result = RawConfig::load(Sources {
        file: Some(&path),
        env_prefix: ENV_PREFIX,
        env: Some(HashMap::new()),
        overrides: Vec::new(),
    })
    .and_then(RawConfig::validate);
    let _ = std::fs::remove_file(&path);
    result
}

#[test]
fn webhooks_keep_the_old_url_and_check_each_entry_by_key() {
    let config = load_toml(
        "webhooks",
        r#"
[notify]
webhook_url = "http://127.0.0.1:9/all"
[[notify.webhooks]]
url = "http://127.0.0.1:9/chat"
events = ["rollout.*"]
format = "slack"
[[notify.webhooks]]
url = "http://127.0.0.1:9/json"
"#,
    )
    .expect("valid");
    assert_eq!(config.webhooks.len(), 3);
    assert_eq!(config.webhooks[0].events, vec!["*"]);
    assert_eq!(config.webhooks[0].format, WebhookFormat::Json);
    assert_eq!(config.webhooks[1].format, WebhookFormat::Slack);
    assert_eq!(config.webhooks[2].events, vec!["*"]);
    for (toml, key) in [
        (
            "[[notify.webhooks]]\nurl = \"gopher://x\"",
            "notify.webhooks[0].url",
        ),
        (
            "[[notify.webhooks]]\nurl = \"http://x\"\nevents = []",
            "notify.webhooks[0].events",
        ),
        (
            "[[notify.webhooks]]\nurl = \"http://x\"\nevents = [\"Rollout!\"]",
            "notify.webhooks[0].events",
        ),
        (
            "[[notify.webhooks]]\nurl = \"http://x\"\nformat = \"xml\"",
            "format",
        ),
        (
            "[deployments.web.rollout]\nphases = [50, 25, 100]",
            "deployments.web.rollout.phases",
        ),
        (
            "[deployments.web.blast_radius]\nimpact_level = \"meh\"",
            "deployments.web.blast_radius.impact_level",
        ),
        ("[deployments.web.rollout]\nwhen = \"now\"", "when"),
    ] {
        let err = load_toml("bad", toml).expect_err(toml);
        assert!(err.to_string().contains(key), "`{err}` lacks `{key}`");
    }
}

#[test]
fn env_numbers_and_bools_are_parsed_where_fields_want_them() {
    check(
        &[
            ("ROLLGUARD_COORDINATOR__LISTEN", "0.0.0.0:7600"),
            ("ROLLGUARD_COORDINATOR__INSECURE_LISTEN", "true"),
            ("ROLLGUARD_COORDINATOR__CONFIG_VERSION", "1"),
        ],
        None,
    );
    check(
        &[("ROLLGUARD_COORDINATOR__INSECURE_LISTEN", "maybe")],
        Some("insecure_listen"),
    );
}

#[test]
fn command_retention_is_at_least_a_day_and_the_ttl() {
    check(&[("ROLLGUARD_COORDINATOR__COMMAND_RETENTION", "90d")], None);
    check(
        &[("ROLLGUARD_COORDINATOR__COMMAND_RETENTION", "1h")],
        Some("command_retention"),
    );
    check(
        &[
            ("ROLLGUARD_COORDINATOR__COMMAND_TTL", "3d"),
            ("ROLLGUARD_COORDINATOR__COMMAND_RETENTION", "2d"),
        ],
        Some("command_retention"),
    );
}
