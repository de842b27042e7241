use clap::Parser;

use super::{Args, Config};

#[track_caller]
fn check(flags: &[&str], expected_error: Option<&str>) {
    let args =
        Args::try_parse_from(std::iter::once("rollguard-loadgen").chain(flags.iter().copied()))
            .expect("the flags parse");
    match (Config::from_args(args), expected_error) {
        (Ok(_), None) => {}
        (Err(err), Some(expected)) => {
            let text = format!("{err:#}");
            assert!(text.contains(expected), "error `{text}` lacks `{expected}`");
        }
        (Ok(_), Some(expected)) => panic!("accepted, expected an error with `{expected}`"),
        (Err(err), None) => panic!("rejected: {err:#}"),
    }
}

#[test]
fn defaults_are_valid() {
    check(&[], None);
}

#[test]
fn interval_bounds() {
    check(&["--interval", "50ms"], Some("--interval"));
    check(&["--interval", "100ms", "--duration", "1s"], None);
    check(
        &["--interval", "2h", "--duration", "3h"],
        Some("--interval"),
    );
    check(
        &["--interval", "10s", "--duration", "5s"],
        Some("--duration"),
    );
}

#[test]
fn agents_and_shares() {
    check(&["--agents", "0"], Some("--agents"));
    check(&["--beta-share", "1.5"], Some("--beta-share"));
    check(&["--beta-share", "0", "--rollback"], Some("--beta-share"));
    check(&["--beta-share", "0"], None);
    check(
        &["--connect-concurrency", "0"],
        Some("--connect-concurrency"),
    );
}

#[test]
fn names_and_urls() {
    check(&["--deployment", "has space"], Some("--deployment"));
    check(&["--action", ""], Some("--action"));
    check(&["--coordinator", "not a url"], Some("--coordinator"));
    check(
        &["--ramp", "--agents", "2000", "--ramp-max", "1000"],
        Some("--ramp-max"),
    );
}

#[test]
fn tls_needs_https_and_own_connections() {
    let https = ["--coordinator", "https://127.0.0.1:7600"];
    check(&[&https[..], &["--tls-dir", "/tmp/pki"]].concat(), None);
    check(&["--tls-dir", "/tmp/pki"], Some("https://"));
    check(&https, Some("--tls-dir"));
    check(
        &[&https[..], &["--tls-dir", "/tmp/pki", "--connections", "4"]].concat(),
        Some("--connections cannot be used with --tls-dir"),
    );
    check(
        &[
            &https[..],
            &["--tls-dir", "/tmp/pki", "--deployment", "a/b"],
        ]
        .concat(),
        Some("--deployment"),
    );
    check(
        &[
            &https[..],
            &["--tls-dir", "/tmp/pki", "--tls-operator", "ca"],
        ]
        .concat(),
        Some("--tls-operator"),
    );
    // Without TLS the names stay as free as before.
    check(&["--deployment", "a/b"], None);
}

#[track_caller]
fn check_beta(share: &str, n: usize, expected_beta: usize) {
    let args = Args::try_parse_from(["rollguard-loadgen", "--beta-share", share])
        .expect("the flags parse");
    let config = Config::from_args(args).expect("valid");
    let beta = (0..n).filter(|&idx| config.is_beta(idx)).count();
    assert_eq!(beta, expected_beta, "share {share} of {n}");
}

#[test]
fn beta_share_splits_the_hosts() {
    check_beta("0.5", 1000, 500);
    check_beta("1", 1000, 1000);
    check_beta("0", 1000, 0);
    check_beta("0.25", 10_000, 2500);
    check_beta("0.5", 3, 1);
}

#[test]
fn cohort_depends_on_the_index_only() {
    // A host keeps its cohort when a ramp step adds hosts after it.
    let args = Args::try_parse_from(["rollguard-loadgen"]).expect("the flags parse");
    let config = Config::from_args(args).expect("valid");
    assert!(!config.is_beta(0));
    assert!(config.is_beta(1));
    assert_eq!(config.host_id(42), "loadgen-000042");
}
