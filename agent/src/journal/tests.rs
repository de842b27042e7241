use super::*;

fn temp_state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rollguard-journal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn outcome(status: CommandStatus) -> Outcome {
    Outcome {
        status,
        exit_code: Some(0),
        reason: String::new(),
        output_tail: "ok".to_owned(),
        duration_ms: 5,
        started_at_unix_ms: 1,
    }
}

#[test]
fn finished_commands_survive_a_reopen() {
    let dir = temp_state_dir("reopen");
    {
        let mut journal = Journal::open(&dir, 0).expect("open");
        journal.start("cmd-1").expect("start");
        journal
            .finish("cmd-1", outcome(CommandStatus::Succeeded))
            .expect("finish");
    }
    let journal = Journal::open(&dir, 0).expect("reopen");
    assert_eq!(
        journal.get("cmd-1"),
        Some(&Entry::Finished(outcome(CommandStatus::Succeeded)))
    );
    assert_eq!(journal.get("cmd-2"), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn started_but_unfinished_is_closed_as_interrupted() {
    let dir = temp_state_dir("crash");
    {
        let mut journal = Journal::open(&dir, 0).expect("open");
        journal.start("cmd-crash").expect("start");
        // The process "crashes" here: no finish line.
    }
    let journal = Journal::open(&dir, 42).expect("reopen");
    match journal.get("cmd-crash") {
        Some(Entry::Finished(outcome)) => {
            assert_eq!(outcome.status, CommandStatus::Failed);
            assert!(outcome.reason.contains("interrupted"), "{}", outcome.reason);
        }
        other => panic!("expected an interrupted outcome, got {other:?}"),
    }
    // And it stays closed on the next open, without a second line.
    drop(journal);
    let text = std::fs::read_to_string(dir.join(JOURNAL_FILE)).expect("read");
    let journal = Journal::open(&dir, 99).expect("reopen again");
    assert!(matches!(journal.get("cmd-crash"), Some(Entry::Finished(_))));
    assert_eq!(
        std::fs::read_to_string(dir.join(JOURNAL_FILE)).expect("read"),
        text
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_last_line_is_ignored_and_appends_stay_parseable() {
    let dir = temp_state_dir("torn");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join(JOURNAL_FILE),
        "{\"state\":\"started\",\"id\":\"a\"}\n{\"state\":\"fini",
    )
    .expect("write");
    {
        let mut journal = Journal::open(&dir, 0).expect("open");
        assert!(matches!(journal.get("a"), Some(Entry::Finished(_))));
        journal.start("b").expect("start");
    }
    let journal = Journal::open(&dir, 0).expect("reopen");
    assert!(
        matches!(journal.get("b"), Some(Entry::Finished(o)) if o.status == CommandStatus::Failed)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
