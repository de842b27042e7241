use super::*;
use crate::tmpfs::{Tmpfs, ENOSPC};

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

/// Returns the journal line of `line`, newline included.
fn line_bytes(line: &Line) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(line).expect("serialize");
    bytes.push(b'\n');
    bytes
}

fn finished_line(id: &str, reason: &str) -> Vec<u8> {
    let mut outcome = outcome(CommandStatus::Succeeded);
    outcome.reason = reason.to_owned();
    line_bytes(&Line::Finished {
        id: id.to_owned(),
        outcome,
    })
}

fn is_interrupted(entry: Option<&Entry>) -> bool {
    matches!(entry, Some(Entry::Finished(o)) if o.status == CommandStatus::Failed && o.reason.starts_with("interrupted"))
}

// Issue 11: a torn line costs only itself, and the next append is a line of its own.
#[test]
fn a_torn_last_line_is_skipped_and_the_next_append_is_not_glued_to_it() {
    let dir = temp_state_dir("torn-glue");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut bytes = finished_line("a", "");
    let torn = line_bytes(&Line::Started {
        id: "b".to_owned(),
        local: None,
    });
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(dir.join(JOURNAL_FILE), &bytes).expect("write");
    {
        let mut journal = Journal::open(&dir, 0).expect("open");
        assert_eq!(journal.skipped_lines(), 1);
        assert_eq!(journal.get("b"), None);
        journal.start("c").expect("start");
    }
    let journal = Journal::open(&dir, 0).expect("reopen");
    assert_eq!(
        journal.get("a"),
        Some(&Entry::Finished(outcome(CommandStatus::Succeeded)))
    );
    assert!(is_interrupted(journal.get("c")), "{:?}", journal.get("c"));
    assert_eq!(journal.get("b"), None);
    assert_eq!(journal.skipped_lines(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

// Issue 11: a file cut inside a multi-byte character is not UTF-8; it still loads.
#[test]
fn a_line_cut_inside_a_multibyte_character_is_skipped_and_the_rest_loads() {
    let dir = temp_state_dir("utf8");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let kept = finished_line("a", "rolled back → v1, café");
    let cut = finished_line("b", "é");
    let cut_at = cut
        .iter()
        .position(|&byte| byte == "é".as_bytes()[0])
        .expect("an é")
        + 1;
    let mut bytes = kept.clone();
    bytes.extend_from_slice(&cut[..cut_at]);
    std::fs::write(dir.join(JOURNAL_FILE), &bytes).expect("write");
    {
        let mut journal = Journal::open(&dir, 0).expect("a cut file opens");
        assert_eq!(journal.skipped_lines(), 1);
        assert!(
            matches!(journal.get("a"), Some(Entry::Finished(o)) if o.reason == "rolled back → v1, café")
        );
        assert_eq!(journal.get("b"), None);
        journal.start("c").expect("start");
    }
    // The cut line now sits in the middle of the file, still costing only itself.
    let journal = Journal::open(&dir, 0).expect("reopen");
    assert_eq!(journal.skipped_lines(), 1);
    assert!(matches!(journal.get("a"), Some(Entry::Finished(_))));
    assert!(is_interrupted(journal.get("c")), "{:?}", journal.get("c"));
    let _ = std::fs::remove_dir_all(&dir);
}

// Issue 11, on a real full disk: a write that fails part-way leaves nothing
// behind, and the next append after space is back reads back whole.
#[test]
fn a_start_that_fails_part_way_on_a_full_disk_is_cut_back() {
    let dir = temp_state_dir("enospc-torn");
    let Some(fs) = Tmpfs::mount_or_skip(
        "a_start_that_fails_part_way_on_a_full_disk_is_cut_back",
        &dir,
    ) else {
        return;
    };
    let path = dir.join(JOURNAL_FILE);
    let file_len = || std::fs::metadata(&path).expect("stat").len();
    // A journal that ends 96 bytes short of its page: a longer line can only
    // be written part-way once the rest of the disk is full.
    const JOURNAL_LEN: u64 = 4000;
    let mut journal = Journal::open(&dir, 0).expect("open");
    journal.start("pad").expect("start");
    let finished_len = u64::try_from(finished_line("pad", "").len()).expect("len");
    let pad = usize::try_from(JOURNAL_LEN - file_len() - finished_len).expect("pad");
    let mut padded = outcome(CommandStatus::Succeeded);
    padded.output_tail = "p".repeat(pad + padded.output_tail.len());
    journal.finish("pad", padded.clone()).expect("finish");
    assert_eq!(file_len(), JOURNAL_LEN);
    fs.fill();

    let long_id = "x".repeat(200);
    let err = journal.start(&long_id).expect_err("the disk is full");
    assert_eq!(err.raw_os_error(), Some(ENOSPC), "{err}");
    assert_eq!(journal.get(&long_id), None);
    assert_eq!(file_len(), JOURNAL_LEN, "the torn bytes are cut back");

    fs.free();
    journal.start("after").expect("start once space is back");
    drop(journal);
    let journal = Journal::open(&dir, 0).expect("reopen");
    assert_eq!(journal.skipped_lines(), 0);
    assert_eq!(journal.get("pad"), Some(&Entry::Finished(padded)));
    assert_eq!(journal.get(&long_id), None);
    assert!(
        is_interrupted(journal.get("after")),
        "{:?}",
        journal.get("after")
    );
    drop(journal);
    drop(fs);
}

// Issue 11, on a real full disk: an agent restarting with a torn tail and an
// unfinished command opens its journal (nothing to write for the tail), and
// closes the command in memory until a write succeeds.
#[test]
fn a_journal_on_a_full_disk_opens_and_closes_interrupted_commands() {
    let dir = temp_state_dir("enospc-open");
    let Some(fs) = Tmpfs::mount_or_skip(
        "a_journal_on_a_full_disk_opens_and_closes_interrupted_commands",
        &dir,
    ) else {
        return;
    };
    // Exactly one full page: not a byte more fits once the disk is full.
    let mut bytes = line_bytes(&Line::Started {
        id: "crashed".to_owned(),
        local: None,
    });
    bytes.resize(4096, b'{');
    std::fs::write(dir.join(JOURNAL_FILE), &bytes).expect("write");
    fs.fill();
    {
        let journal = Journal::open(&dir, 0).expect("a full disk does not stop the open");
        assert_eq!(journal.skipped_lines(), 1);
        assert!(is_interrupted(journal.get("crashed")));
    }
    fs.free();
    // This open writes the interruption; the next one only reads it.
    drop(Journal::open(&dir, 0).expect("reopen"));
    let text = std::fs::read(dir.join(JOURNAL_FILE)).expect("read");
    let journal = Journal::open(&dir, 0).expect("reopen again");
    assert!(is_interrupted(journal.get("crashed")));
    assert_eq!(journal.skipped_lines(), 1);
    assert_eq!(std::fs::read(dir.join(JOURNAL_FILE)).expect("read"), text);
    drop(journal);
    drop(fs);
}

fn trip() -> Trip {
    Trip {
        action: "rollback".to_owned(),
        reason: "error_rate 0.5 > max 0.2".to_owned(),
        figures: Vec::new(),
        consecutive: 3,
        unreachable_ms: 2500,
    }
}

#[test]
fn a_local_run_stays_unreported_across_reopens_until_reported() {
    let dir = temp_state_dir("local");
    {
        let mut journal = Journal::open(&dir, 0).expect("open");
        journal.start("cmd-1").expect("start");
        journal
            .start_local("local-web-1-5", &trip())
            .expect("start local");
        journal
            .finish("local-web-1-5", outcome(CommandStatus::Succeeded))
            .expect("finish");
        assert_eq!(journal.unreported().len(), 1);
    }
    let mut journal = Journal::open(&dir, 0).expect("reopen");
    assert_eq!(
        journal.unreported(),
        &[("local-web-1-5".to_owned(), trip())],
        "a coordinator-sent command is never a local run"
    );
    assert_eq!(
        journal.get("local-web-1-5"),
        Some(&Entry::Finished(outcome(CommandStatus::Succeeded)))
    );
    journal.reported("local-web-1-5").expect("reported");
    // A repeated ack writes nothing.
    let len = std::fs::metadata(journal.path()).expect("stat").len();
    journal.reported("local-web-1-5").expect("reported again");
    assert_eq!(std::fs::metadata(journal.path()).expect("stat").len(), len);
    drop(journal);
    let journal = Journal::open(&dir, 0).expect("reopen");
    assert!(journal.unreported().is_empty());
    assert!(journal.get("local-web-1-5").is_some(), "still never rerun");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_local_run_interrupted_by_a_restart_is_reported_as_failed() {
    let dir = temp_state_dir("local-crash");
    {
        let mut journal = Journal::open(&dir, 0).expect("open");
        journal
            .start_local("local-web-1-7", &trip())
            .expect("start local");
    }
    let journal = Journal::open(&dir, 0).expect("reopen");
    assert_eq!(journal.unreported().len(), 1);
    assert!(is_interrupted(journal.get("local-web-1-7")));
    let _ = std::fs::remove_dir_all(&dir);
}
