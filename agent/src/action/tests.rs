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
    // Output read before a timeout is kept.
    check(
        run(
            &action(
                &["/bin/sh", "-c", "echo before-the-hang; exec sleep 30"],
                500,
            ),
            &dir,
        )
        .await,
        CommandStatus::Failed,
        None,
        "before-the-hang",
    );
}

#[tokio::test]
async fn a_background_process_holding_the_output_does_not_hold_the_result() {
    // The action starts a daemon-like child that keeps stdout open for 3 s
    // and exits 0 at once: it succeeded, well within its 2 s timeout.
    let result = run(
        &action(&["/bin/sh", "-c", "echo restarted; sleep 3 &"], 2_000),
        &std::env::temp_dir(),
    )
    .await;
    check(result, CommandStatus::Succeeded, Some(0), "restarted");
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
