use super::*;

#[track_caller]
fn check(text: &str, expected: Result<f64, &str>) {
    match (parse_some_avg10(text), expected) {
        (Ok(got), Ok(want)) => assert_eq!(got, want),
        (Err(got), Err(fragment)) => assert!(got.contains(fragment), "{got:?} lacks {fragment:?}"),
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

#[test]
fn real_files() {
    check(
        "some avg10=0.90 avg60=1.12 avg300=1.76 total=15458224\n\
         full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        Ok(0.90),
    );
    check(
        "some avg10=12.37 avg60=0.05 avg300=0.11 total=2558912\n\
         full avg10=3.00 avg60=0.05 avg300=0.08 total=2189660\n",
        Ok(12.37),
    );
}

#[test]
fn cpu_file_of_older_kernels_has_only_some() {
    check("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", Ok(0.0));
}

#[test]
fn full_line_is_never_read() {
    check(
        "full avg10=5.00 avg60=0.00 avg300=0.00 total=0\n",
        Err("no \"some\" line"),
    );
}

#[test]
fn errors() {
    check("", Err("no \"some\" line"));
    check("some avg60=1.00 total=0\n", Err("no avg10"));
    check("some avg10=abc avg60=1.00\n", Err("bad avg10 \"abc\""));
    check("some avg10=-1.0 avg60=1.00\n", Err("not a finite"));
}
