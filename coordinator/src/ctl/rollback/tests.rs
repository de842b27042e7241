//! The rollback call's idempotency key and its one retry, over a scripted
//! call instead of a coordinator.

use std::cell::RefCell;

use super::*;

/// Runs `call_with_retry` over `script` (one outcome per attempt) and
/// returns its result and how many attempts were made.
fn run(script: Vec<Result<u32, Status>>) -> (Result<u32, Status>, usize) {
    let script = RefCell::new(script.into_iter());
    let attempts = RefCell::new(0);
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("test runtime")
        // No pause: tests take no real time.
        .block_on(call_with_retry(Duration::ZERO, || {
            *attempts.borrow_mut() += 1;
            let outcome = script
                .borrow_mut()
                .next()
                .expect("no more attempts than scripted");
            async move { outcome }
        }));
    (result, attempts.into_inner())
}

#[test]
fn a_lost_answer_is_retried_once() {
    let (result, attempts) = run(vec![Err(Status::unavailable("connection reset")), Ok(7)]);
    assert_eq!(result.expect("the retry answers"), 7);
    assert_eq!(attempts, 2);

    let (result, attempts) = run(vec![
        Err(Status::deadline_exceeded("timeout")),
        Err(Status::unavailable("down")),
    ]);
    assert_eq!(result.expect_err("gives up").code(), Code::Unavailable);
    assert_eq!(attempts, 2, "only one retry");
}

#[test]
fn an_answer_is_never_retried() {
    for status in [
        Status::invalid_argument("bad"),
        Status::not_found("no such deployment"),
        Status::internal("store failure"),
    ] {
        let code = status.code();
        let (result, attempts) = run(vec![Err(status)]);
        assert_eq!(result.expect_err("the answer").code(), code);
        assert_eq!(attempts, 1, "{code:?}");
    }
    let (result, attempts) = run(vec![Ok(1)]);
    assert_eq!((result.expect("ok"), attempts), (1, 1));
}

#[test]
fn each_invocation_has_its_own_128_bit_key() {
    let first = new_request_id();
    assert_eq!(first.len(), 32);
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
    assert_ne!(first, new_request_id());
}
