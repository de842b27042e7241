use std::collections::HashMap;

use super::*;

fn load(file: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let path = file.map(|text| {
        let path = std::env::temp_dir().join(format!(
            "rollguard-agent-config-{}-{}.toml",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&path, text).expect("write temp config");
        path
    });
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let result = RawConfig::load(Sources {
        file: path.as_deref(),
        env_prefix: ENV_PREFIX,
        env: Some(env),
        overrides: Vec::new(),
    })
    .and_then(RawConfig::validate);
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
    result
}

#[track_caller]
fn check_error(file: Option<&str>, env: &[(&str, &str)], needle: &str) {
    match load(file, env) {
        Ok(cfg) => panic!("expected an error naming {needle}, got {cfg:?}"),
        Err(err) => assert!(err.to_string().contains(needle), "`{err}` lacks `{needle}`"),
    }
}

const REQUIRED: &[(&str, &str)] = &[
    ("ROLLGUARD_AGENT__DEPLOYMENT", "cache"),
    ("ROLLGUARD_AGENT__COHORT", "beta"),
];

#[test]
fn required_keys_are_named() {
    check_error(None, &[], "`deployment`");
    check_error(
        None,
        &[("ROLLGUARD_AGENT__DEPLOYMENT", "cache")],
        "`cohort`",
    );
    check_error(
        None,
        &[
            ("ROLLGUARD_AGENT__DEPLOYMENT", "cache"),
            ("ROLLGUARD_AGENT__COHORT", "canary"),
        ],
        "`cohort`",
    );
}

#[test]
fn actions_come_from_the_file() {
    let cfg = load(
        Some(
            "deployment = \"cache\"\ncohort = \"baseline\"\n\
             [actions.rollback]\ncommand = [\"/bin/true\", \"x\"]\ntimeout = \"5s\"\n",
        ),
        &[],
    )
    .expect("valid");
    assert_eq!(cfg.cohort, Cohort::Baseline);
    let action = &cfg.actions["rollback"];
    assert_eq!(action.argv, ["/bin/true", "x"]);
    assert_eq!(action.timeout, Duration::from_secs(5));
    assert_eq!(cfg.interval, Duration::from_secs(1));
}

#[test]
fn env_overrides_the_file() {
    let cfg = load(
        Some("deployment = \"cache\"\ncohort = \"baseline\"\n"),
        &[("ROLLGUARD_AGENT__COHORT", "beta")],
    )
    .expect("valid");
    assert_eq!(cfg.cohort, Cohort::Beta);
}

#[test]
fn bad_values_name_their_key() {
    check_error(Some("interval = \"fast\"\n"), REQUIRED, "`interval`");
    check_error(Some("intervall = \"1s\"\n"), REQUIRED, "intervall");
    check_error(
        Some("[actions.rollback]\ncommand = []\n"),
        REQUIRED,
        "`actions.rollback.command`",
    );
    check_error(
        Some("[actions.rollback]\ncommand = [\"x\"]\ntimeout = \"soon\"\n"),
        REQUIRED,
        "`actions.rollback.timeout`",
    );
    check_error(
        Some("[actions.rollback]\ncomand = [\"x\"]\n"),
        REQUIRED,
        "comand",
    );
    check_error(
        None,
        &[
            ("ROLLGUARD_AGENT__COORDINATOR", "localhost:1"),
            REQUIRED[0],
            REQUIRED[1],
        ],
        "`coordinator`",
    );
}
