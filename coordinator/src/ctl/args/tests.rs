use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use super::*;

#[track_caller]
fn check_wants_json(args: &str, expected: bool) {
    let args = args.split_whitespace().map(str::to_owned);
    assert_eq!(wants_json(args), expected);
}

#[test]
fn wants_json_reads_every_spelling_of_output_json() {
    check_wants_json("rollguardctl -o json status", true);
    check_wants_json("rollguardctl status --output json", true);
    check_wants_json("rollguardctl -ojson status", true);
    check_wants_json("rollguardctl -o=json status", true);
    check_wants_json("rollguardctl --output=json bogus", true);
    check_wants_json("rollguardctl -o table status", false);
    check_wants_json("rollguardctl -o", false);
    // A positional `json` (here a deployment name) is not the format.
    check_wants_json("rollguardctl why json", false);
    check_wants_json("rollguardctl -o table why json", false);
}

/// Parses `args` and compares the command, and the format, with `expected`
/// as `Debug` prints them.
#[track_caller]
fn check_parse(args: &str, expected: &str) {
    let cli = Cli::try_parse_from(args.split_whitespace())
        .unwrap_or_else(|err| panic!("`{args}` should parse: {err}"));
    assert_eq!(format!("{:?} {:?}", cli.output, cli.command), expected);
}

#[track_caller]
fn check_rejected(args: &str, expected: ErrorKind) {
    match Cli::try_parse_from(args.split_whitespace()) {
        Ok(cli) => panic!("`{args}` should be rejected, parsed {cli:?}"),
        Err(err) => assert_eq!(err.kind(), expected, "`{args}`: {err}"),
    }
}

#[test]
fn cli_is_well_formed() {
    Cli::command().debug_assert();
}

#[test]
fn commands_parse_with_their_defaults() {
    check_parse(
        "rollguardctl status",
        "Table Status { deployment: None, watch: false }",
    );
    check_parse(
        "rollguardctl status --deployment web --watch -o json",
        r#"Json Status { deployment: Some("web"), watch: true }"#,
    );
    check_parse(
        "rollguardctl rollback web --reason bad",
        r#"Table Rollback { deployment: "web", reason: "bad", wait: false, timeout: 120s }"#,
    );
    check_parse(
        "rollguardctl results c-1 --wait --timeout 5s",
        r#"Table Results { command_id: "c-1", wait: true, timeout: 5s }"#,
    );
    check_parse(
        "rollguardctl history",
        "Table History { deployment: None, limit: 100 }",
    );
    check_parse(
        "rollguardctl why web",
        r#"Table Why { deployment: "web", rounds: 10 }"#,
    );
    check_parse(
        "rollguardctl rearm web",
        r#"Table Rearm { deployment: "web", reason: "re-armed by an operator" }"#,
    );
    check_parse(
        "rollguardctl report web --window 30m",
        r#"Table Report { deployment: "web", window: 1800s }"#,
    );
    check_parse(
        "rollguardctl demo",
        r#"Table Demo(DemoArgs { beta: 2, baseline: 1, keep_running: false, keep_data: false, fail_after: "12s", scenario: None })"#,
    );
    check_parse(
        "rollguardctl demo rollout",
        r#"Table Demo(DemoArgs { beta: 2, baseline: 1, keep_running: false, keep_data: false, fail_after: "12s", scenario: Some(Rollout { hosts: 20 }) })"#,
    );
    check_parse(
        "rollguardctl -o json rollout start cache --version 2.4.1 --phases 10,50,100 --accept-risk ok",
        r#"Json Rollout(RolloutArgs { command: Start { plan: RolloutPlan { deployment: "cache", version: "2.4.1", phases: [10, 50, 100], accept_risk: "ok" }, at: None } })"#,
    );
    check_parse(
        "rollguardctl rollout abort cache --reason stop",
        r#"Table Rollout(RolloutArgs { command: Abort { deployment: "cache", reason: "stop" } })"#,
    );
}

#[test]
fn only_an_operator_takes_p12_and_only_with_its_password_file() {
    check_parse(
        "rollguardctl pki issue operator alice --dir pki",
        r#"Table Pki(PkiArgs { command: Issue(Operator { name: "alice", flags: IssueFlags { dir: "pki", valid_for: None, force: false, expired: false }, bundle: BundleFlags { p12: false, p12_password_file: None } }) })"#,
    );
    check_parse(
        "rollguardctl pki issue operator alice --dir pki --p12 --p12-password-file pw --force",
        r#"Table Pki(PkiArgs { command: Issue(Operator { name: "alice", flags: IssueFlags { dir: "pki", valid_for: None, force: true, expired: false }, bundle: BundleFlags { p12: true, p12_password_file: Some("pw") } }) })"#,
    );
    // Each flag needs the other.
    check_rejected(
        "rollguardctl pki issue operator alice --dir pki --p12",
        ErrorKind::MissingRequiredArgument,
    );
    check_rejected(
        "rollguardctl pki issue operator alice --dir pki --p12-password-file pw",
        ErrorKind::MissingRequiredArgument,
    );
    // A browser presents an operator's certificate; agents and the
    // coordinator read PEM.
    check_rejected(
        "rollguardctl pki issue agent web-1 --dir pki --p12 --p12-password-file pw",
        ErrorKind::UnknownArgument,
    );
    check_rejected(
        "rollguardctl pki issue coordinator c --dir pki --san 127.0.0.1 --p12 --p12-password-file pw",
        ErrorKind::UnknownArgument,
    );
}

#[test]
fn bad_arguments_are_rejected_before_any_call() {
    check_rejected(
        "rollguardctl",
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand,
    );
    check_rejected(
        "rollguardctl rollback web",
        ErrorKind::MissingRequiredArgument,
    );
    check_rejected(
        "rollguardctl rollout start cache",
        ErrorKind::MissingRequiredArgument,
    );
    check_rejected(
        "rollguardctl rollout abort cache",
        ErrorKind::MissingRequiredArgument,
    );
    check_rejected(
        "rollguardctl rollback --reason bad",
        ErrorKind::MissingRequiredArgument,
    );
    check_rejected(
        "rollguardctl results c-1 --timeout soon",
        ErrorKind::ValueValidation,
    );
    check_rejected(
        "rollguardctl history --limit -1",
        ErrorKind::UnknownArgument,
    );
    check_rejected("rollguardctl status -o yaml", ErrorKind::InvalidValue);
    check_rejected("rollguardctl bogus", ErrorKind::InvalidSubcommand);
}
