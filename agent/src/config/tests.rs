use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn load(file: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    // Tests run in parallel: every call gets its own file.
    static NEXT_FILE: AtomicUsize = AtomicUsize::new(0);
    let path = file.map(|text| {
        let path = std::env::temp_dir().join(format!(
            "rollguard-agent-config-{}-{}.toml",
            std::process::id(),
            NEXT_FILE.fetch_add(1, Ordering::Relaxed)
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
    assert_eq!(cfg.cohort, Some(Cohort::Baseline));
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
    assert_eq!(cfg.cohort, Some(Cohort::Beta));
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

#[test]
fn app_is_off_without_urls() {
    let cfg = load(None, REQUIRED).expect("valid");
    assert!(cfg.app.is_none());
    let cfg = load(
        Some("[app]\nrequests_metric = \"rpc_total\"\nscrape_url = \"\"\n"),
        REQUIRED,
    )
    .expect("valid");
    assert!(cfg.app.is_none());
}

#[test]
fn app_defaults() {
    use crate::app::config::ErrorRule;

    let cfg = load(
        Some("[app]\nscrape_url = \"http://127.0.0.1:9100/metrics\"\n"),
        REQUIRED,
    )
    .expect("valid");
    let app = cfg.app.expect("scrape configured");
    assert!(app.probe.is_none());
    let scrape = app.scrape.expect("scrape configured");
    assert_eq!(scrape.url.to_string(), "http://127.0.0.1:9100/metrics");
    // The agent interval (1s), and the 2s timeout capped at it.
    assert_eq!(scrape.interval, Duration::from_secs(1));
    assert_eq!(scrape.timeout, Duration::from_secs(1));
    let queries = &scrape.queries;
    assert_eq!(queries.requests.to_string(), "http_requests_total");
    let ErrorRule::ServerErrors { by_code, by_status } = &queries.errors else {
        panic!("expected the default 5xx rule, got {:?}", queries.errors);
    };
    assert_eq!(by_code.to_string(), "http_requests_total{code=~\"5..\"}");
    assert_eq!(
        by_status.to_string(),
        "http_requests_total{status=~\"5..\",code!~\"5..\"}"
    );
    assert_eq!(
        queries.latency.as_ref().map(ToString::to_string).as_deref(),
        Some("http_request_duration_seconds")
    );
    let gauges: Vec<&str> = queries.gauges.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(gauges, ["cache_hit_ratio", "queue_depth", "worker_health"]);

    let cfg = load(
        Some("interval = \"10s\"\n[app]\nscrape_url = \"http://app/metrics\"\nprobe_url = \"http://app/healthz\"\n"),
        REQUIRED,
    )
    .expect("valid");
    let app = cfg.app.expect("configured");
    let scrape = app.scrape.expect("scrape configured");
    let probe = app.probe.expect("probe configured");
    assert_eq!(
        (scrape.interval, scrape.timeout),
        (Duration::from_secs(10), Duration::from_secs(2))
    );
    assert_eq!(
        (probe.interval, probe.timeout),
        (Duration::from_secs(10), Duration::from_secs(1))
    );
}

#[test]
fn app_urls_may_be_https_verified_against_app_ca_or_the_system() {
    let roots = |table: &str| {
        let cfg = load(Some(&format!("[app]\n{table}\n")), REQUIRED).expect("valid");
        let app = cfg.app.expect("configured");
        app.roots_opt.map(|roots| roots.n_certificates())
    };
    // Plain http needs no roots.
    assert_eq!(roots("scrape_url = \"http://app/metrics\""), None);
    // https without `app.ca`: this machine's trust store.
    let n_system = roots("scrape_url = \"https://app/metrics\"").expect("system roots");
    assert!(n_system > 1, "{n_system}");
    assert!(roots("probe_url = \"https://app/healthz\"").is_some());
    // With `app.ca`: that CA only, whatever the URLs.
    let key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let ca_file =
        std::env::temp_dir().join(format!("rollguard-agent-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let with_ca = |url: &str| roots(&format!("{url}\nca = \"{}\"", ca_file.display()));
    let found = [
        with_ca("scrape_url = \"https://app/metrics\""),
        with_ca("probe_url = \"https://app/healthz\""),
        with_ca("scrape_url = \"http://app/metrics\""),
    ];
    let _ = std::fs::remove_file(&ca_file);
    assert_eq!(found, [Some(1); 3]);
}

#[test]
fn app_keys_come_from_the_file_and_env() {
    let cfg = load(
        Some(
            "[app]\nscrape_url = \"http://app:8080/metrics\"\nscrape_interval = \"5s\"\n\
             scrape_timeout = \"3s\"\nerrors_metric = 'rpc_total{result=\"error\"}'\n\
             latency_histogram = \"\"\ngauges = [\"b\", \"a\", \"b\"]\n",
        ),
        &[
            REQUIRED[0],
            REQUIRED[1],
            ("ROLLGUARD_AGENT__APP__PROBE_URL", "http://app:8080/healthz"),
            ("ROLLGUARD_AGENT__APP__PROBE_TIMEOUT", "250ms"),
        ],
    )
    .expect("valid");
    let app = cfg.app.expect("configured");
    let scrape = app.scrape.expect("scrape configured");
    assert_eq!(
        (scrape.interval, scrape.timeout),
        (Duration::from_secs(5), Duration::from_secs(3))
    );
    assert!(scrape.queries.latency.is_none());
    let gauges: Vec<&str> = scrape
        .queries
        .gauges
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(gauges, ["a", "b"]);
    let probe = app.probe.expect("probe configured");
    assert_eq!(probe.url.to_string(), "http://app:8080/healthz");
    assert_eq!(probe.timeout, Duration::from_millis(250));
}

#[test]
fn bad_app_values_name_their_key() {
    // A file that is there but holds no certificate: this crate's manifest.
    let no_pem_ca = format!("ca = \"{}/Cargo.toml\"", env!("CARGO_MANIFEST_DIR"));
    let cases: &[(&str, &str)] = &[
        (
            "errors_metric = 'http_requests_total{code=~\"5(..)\"}'",
            "`app.errors_metric`",
        ),
        ("errors_metric = \"{code='500'}\"", "`app.errors_metric`"),
        ("requests_metric = \"\"", "`app.requests_metric`"),
        (
            "requests_metric = \"http_requests_total{code=}\"",
            "`app.requests_metric`",
        ),
        (
            "latency_histogram = \"latency_bucket\"",
            "without `_bucket`",
        ),
        (
            "latency_histogram = 'latency{le=\"1\"}'",
            "`app.latency_histogram`",
        ),
        ("gauges = [\"queue{shard='a'}\"]", "`app.gauges`"),
        ("scrape_url = \"ftp://app/metrics\"", "`app.scrape_url`"),
        (
            "scrape_url = \"ftp://app/metrics\"",
            "not an http:// or https:// URL",
        ),
        ("scrape_url = \"/metrics\"", "`app.scrape_url`"),
        ("probe_url = \"ftps://app/healthz\"", "`app.probe_url`"),
        ("ca = \"/nonexistent/ca.pem\"", "`app.ca`"),
        (
            "ca = \"/nonexistent/ca.pem\"",
            "cannot read /nonexistent/ca.pem",
        ),
        (no_pem_ca.as_str(), "`app.ca`"),
        (no_pem_ca.as_str(), "holds no PEM certificate"),
        ("scrape_interval = \"soon\"", "`app.scrape_interval`"),
        ("scrape_interval = \"10ms\"", "`app.scrape_interval`"),
        ("scrape_timeout = \"2s\"", "`app.scrape_timeout`"),
        (
            "probe_interval = \"2s\"\nprobe_timeout = \"3s\"",
            "`app.probe_timeout`",
        ),
        ("probe_timeout = \"0s\"", "`app.probe_timeout`"),
        ("scrape_urll = \"http://app/\"", "scrape_urll"),
    ];
    for (table, needle) in cases {
        check_error(Some(&format!("[app]\n{table}\n")), REQUIRED, needle);
    }
}

#[test]
fn the_example_config_is_valid() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.example.toml");
    let text = std::fs::read_to_string(&path).expect("the example");
    // Its [tls] names files under /etc/rollguard that this machine lacks:
    // the keys are known, and the error names the file it could not read.
    let err = load(Some(&text), &[]).expect_err("no /etc/rollguard/pki here");
    let message = err.to_string();
    assert!(
        message.contains("tls") && message.contains("/etc/rollguard/pki/"),
        "{message}"
    );
    // The rest is valid as written.
    let (plain, tls) = text.split_once("\n[tls]\n").expect("the example has [tls]");
    assert!(!tls.contains("\n["), "[tls] is the last table");
    let plain = plain.replace(
        "coordinator = \"https://rollguard.example.com:7600\"",
        "coordinator = \"http://rollguard.example.com:7600\"",
    );
    let config = load(Some(&plain), &[]).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    assert!(config.actions.contains_key("rollback"), "{config:?}");
}

#[test]
fn env_values_stay_strings_unless_a_field_wants_a_number() {
    let config = load(
        None,
        &[
            REQUIRED[0],
            REQUIRED[1],
            ("ROLLGUARD_AGENT__APP_VERSION", "1.10"),
            ("ROLLGUARD_AGENT__HOST_ID", "007"),
        ],
    )
    .expect("valid");
    assert!(
        matches!(&config.version, VersionSource::Fixed(v) if v == "1.10"),
        "{:?}",
        config.version
    );
    assert_eq!(config.host_id.as_str(), "007");
}

#[test]
fn the_resend_buffer_is_a_size_from_the_file_or_env() {
    let cfg = load(None, REQUIRED).expect("valid");
    assert_eq!(cfg.resend_buffer_bytes, 4 << 20, "the default");
    let cfg = load(Some("resend_buffer = \"512KiB\"\n"), REQUIRED).expect("valid");
    assert_eq!(cfg.resend_buffer_bytes, 512 << 10);
    let env = [
        REQUIRED[0],
        REQUIRED[1],
        ("ROLLGUARD_AGENT__RESEND_BUFFER", "16MiB"),
    ];
    let cfg = load(Some("resend_buffer = \"512KiB\"\n"), &env).expect("valid");
    assert_eq!(cfg.resend_buffer_bytes, 16 << 20, "env wins");
    for bad in ["lots", "4 MiBs", "-1MiB", "1KiB", "0"] {
        check_error(
            Some(&format!("resend_buffer = \"{bad}\"\n")),
            REQUIRED,
            "`resend_buffer`",
        );
    }
}

#[test]
fn tripwire_is_off_by_default_and_checked_against_the_actions() {
    let config = load(None, REQUIRED).expect("valid");
    assert!(config.tripwire.is_none());
    let actions = "[app]\nscrape_url = \"http://127.0.0.1:9/metrics\"\n\
                   [actions.rollback]\ncommand = [\"/bin/true\"]\n";
    let tripwire = "[tripwire]\nafter = \"60s\"\naction = \"rollback\"\nconsecutive_failures = 5\n\
                    [[tripwire.rules]]\nmetric = \"error_rate\"\nmax = 0.2\n";
    let config = load(Some(&format!("{actions}{tripwire}")), REQUIRED).expect("valid");
    let checked = config.tripwire.expect("on");
    assert_eq!(checked.after, Duration::from_secs(60));
    assert_eq!(checked.policy.consecutive_failures, 5);
    // The action must be one of this agent's own.
    check_error(Some(tripwire), REQUIRED, "`tripwire.action`");
    check_error(
        Some(&format!(
            "{actions}{}",
            tripwire.replace("error_rate", "memory_percent")
        )),
        REQUIRED,
        "`tripwire.rules[0].metric`",
    );
    // Its figures must be read: probe metrics need a probe, the rest a scrape.
    check_error(
        Some(&format!(
            "{actions}{}",
            tripwire.replace("error_rate", "probe_error_rate")
        )),
        REQUIRED,
        "set `app.probe_url`",
    );
    check_error(
        Some(&format!(
            "[actions.rollback]\ncommand = [\"/bin/true\"]\n{tripwire}"
        )),
        REQUIRED,
        "set `app.scrape_url`",
    );
    check_error(
        Some(&format!("{actions}[tripwire]\nafter = \"1m\"\nbogus = 1\n")),
        REQUIRED,
        "bogus",
    );
}

#[test]
fn version_is_a_whole_argument_after_the_program() {
    let config = load(
        Some("[actions.promote]\ncommand = [\"/usr/local/bin/switch-version\", \"{version}\"]\n"),
        REQUIRED,
    )
    .expect("valid");
    let promote = &config.actions["promote"];
    assert!(promote.takes_version());
    assert_eq!(
        promote.for_version("2.4.1").expect("a good version").argv,
        ["/usr/local/bin/switch-version", "2.4.1"]
    );
    for bad in ["", "-rf", "../x", "1 2", "$(id)"] {
        let err = promote.for_version(bad).expect_err(bad);
        assert!(err.contains("version"), "{bad:?}: {err}");
    }
    // An action without the placeholder gets no parameter.
    let plain = load(
        Some("[actions.rollback]\ncommand = [\"/bin/true\", \"stable\"]\n"),
        REQUIRED,
    )
    .expect("valid");
    let rollback = &plain.actions["rollback"];
    assert!(!rollback.takes_version());
    assert_eq!(
        rollback.for_version("2.4.1").expect("ignored").argv,
        ["/bin/true", "stable"]
    );

    for bad in [
        "command = [\"{version}\"]",
        "command = [\"/bin/sw\", \"--to={version}\"]",
        "command = [\"/bin/sw\", \"{version}.tar\"]",
    ] {
        check_error(
            Some(&format!("[actions.promote]\n{bad}\n")),
            REQUIRED,
            "`actions.promote.command`",
        );
    }
}

#[test]
fn the_tripwire_cannot_run_an_action_that_takes_a_version() {
    check_error(
        Some(
            "[app]\nscrape_url = \"http://127.0.0.1:9/metrics\"\n\
             [actions.promote]\ncommand = [\"/bin/sw\", \"{version}\"]\n\
             [tripwire]\naction = \"promote\"\n\
             [[tripwire.rules]]\nmetric = \"error_rate\"\nmax = 0.2\n",
        ),
        REQUIRED,
        "`tripwire.action`",
    );
}

#[test]
fn the_cohort_is_auto_unless_fixed() {
    let only_deployment = [("ROLLGUARD_AGENT__DEPLOYMENT", "cache")];
    let cfg = load(None, &only_deployment).expect("valid");
    assert_eq!(cfg.cohort, None, "auto by default");
    let cfg = load(Some("cohort = \"auto\"\n"), &only_deployment).expect("valid");
    assert_eq!(cfg.cohort, None);
    check_error(
        Some("cohort = \"canary\"\n"),
        &only_deployment,
        "expected `beta`, `baseline` or `auto`",
    );
}

#[test]
fn collect_backend_defaults_to_the_os_and_env_overrides_the_file() {
    let cfg = load(None, REQUIRED).expect("valid");
    assert_eq!(cfg.collect.backend, Backend::DEFAULT);
    if cfg!(target_os = "linux") {
        assert_eq!(cfg.collect.backend.name(), "procfs");
    }
    let env = [
        REQUIRED,
        &[("ROLLGUARD_AGENT__COLLECT__BACKEND", "sysinfo")],
    ]
    .concat();
    let cfg = load(Some("[collect]\nbackend = \"procfs\"\n"), &env).expect("valid");
    assert_eq!(cfg.collect.backend.name(), "sysinfo");
}

#[test]
fn collect_backend_errors_name_the_key() {
    check_error(
        Some("[collect]\nbackend = \"wmi\"\n"),
        REQUIRED,
        "invalid value for `collect.backend`: expected `procfs` or `sysinfo`, got `wmi`",
    );
    if !cfg!(target_os = "linux") {
        check_error(
            Some("[collect]\nbackend = \"procfs\"\n"),
            REQUIRED,
            "`collect.backend`: `procfs` reads /proc, which only Linux has",
        );
    }
    // sysinfo refreshes CPU usage at most every 200 ms.
    check_error(
        Some("interval = \"100ms\"\n[collect]\nbackend = \"sysinfo\"\n"),
        REQUIRED,
        "invalid value for `interval`: must be at least 200ms",
    );
    let env = [
        REQUIRED,
        &[("ROLLGUARD_AGENT__COLLECT__BACKEND", "sysinfo")],
    ]
    .concat();
    let cfg = load(Some("interval = \"200ms\"\n"), &env).expect("valid");
    assert_eq!(cfg.interval, Duration::from_millis(200));
}
