use super::*;

#[track_caller]
fn check(text: &str, expected: Result<(f64, f64, f64), &str>) {
    match (parse_loadavg(text), expected) {
        (Ok(got), Ok(want)) => assert_eq!(got, want),
        (Err(got), Err(fragment)) => assert!(got.contains(fragment), "{got:?} lacks {fragment:?}"),
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

#[test]
fn real_line() {
    check("0.41 0.79 0.45 2/81 5597\n", Ok((0.41, 0.79, 0.45)));
}

#[test]
fn busy_host() {
    check(
        "123.50 99.01 80.00 140/2048 991\n",
        Ok((123.5, 99.01, 80.0)),
    );
}

#[test]
fn errors() {
    check("", Err("missing load1"));
    check("0.41 0.79\n", Err("missing load15"));
    check("0.41 x 0.45 2/81 5597\n", Err("bad load5 \"x\""));
    check("NaN 0.79 0.45 2/81 5597\n", Err("not a finite"));
}
