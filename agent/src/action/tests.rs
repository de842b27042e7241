use std::collections::BTreeMap;

use super::*;

fn action(argv: &[&str], timeout_ms: u64) -> Action {
    Action {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        timeout: Duration::from_millis(timeout_ms),
        env: BTreeMap::from([("RG_TEST_VALUE".to_owned(), "from-env".to_owned())]),
        working_dir: None,
    }
}

#[track_caller]
fn check(result: RunResult, status: CommandStatus, exit_code: Option<i32>, needle: &str) {
    assert_eq!(result.status, status, "{result:?}");
    assert_eq!(result.exit_code, exit_code, "{result:?}");
    assert!(
        result.output_tail.contains(needle) || result.reason.contains(needle),
        "{result:?} lacks {needle}"
    );
}

#[tokio::test]
async fn outcomes_of_real_processes() {
    let dir = std::env::temp_dir();
    check(
        run(
            &action(&["/bin/sh", "-c", "echo \"$RG_TEST_VALUE\""], 10_000),
            &dir,
        )
        .await,
        CommandStatus::Succeeded,
        Some(0),
        "from-env",
    );
    check(
        run(
            &action(&["/bin/sh", "-c", "echo oops >&2; exit 3"], 10_000),
            &dir,
        )
        .await,
        CommandStatus::Failed,
        Some(3),
        "oops",
    );
    check(
        run(&action(&["/nonexistent/program"], 10_000), &dir).await,
        CommandStatus::Failed,
        None,
        "cannot start",
    );
    check(
        run(&action(&["/bin/sleep", "30"], 200), &dir).await,
        CommandStatus::Failed,
        None,
        "timed out",
    );
}

#[tokio::test]
async fn only_the_tail_of_long_output_is_kept() {
    let dir = std::env::temp_dir();
    let result = run(
        &action(&["/bin/sh", "-c", "seq 1 20000; echo the-end"], 10_000),
        &dir,
    )
    .await;
    assert!(result.output_tail.len() <= OUTPUT_TAIL_BYTES);
    assert!(result.output_tail.ends_with("the-end\n"));
}
