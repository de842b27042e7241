use super::*;

#[test]
fn sample_round_trips() {
    let mut sample = HostSample::empty(
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        Duration::from_secs(1),
    );
    sample.cpu_percent = 12.5;
    sample.cpu_core_percent = vec![10.0, 15.0];
    sample.memory_total_bytes = 100;
    sample.memory_used_bytes = 40;
    sample.pressure = Some(Pressure {
        cpu_some_avg10: 1.0,
        memory_some_avg10: 2.0,
        io_some_avg10: 3.0,
    });
    sample.disks.push(DiskIo {
        device: "sda".to_owned(),
        read_bytes_per_sec: 4096.0,
        ..DiskIo::default()
    });
    let wire = pb::HostSample::from(&sample);
    let back = HostSample::try_from(&wire).expect("valid");
    assert_eq!(back, sample);
}

#[test]
fn hostile_samples_are_rejected() {
    let good = pb::HostSample::from(&HostSample::empty(UNIX_EPOCH, Duration::from_secs(1)));
    let cases: Vec<(&str, pb::HostSample)> = vec![
        (
            "collected_at",
            pb::HostSample {
                collected_at: None,
                ..good.clone()
            },
        ),
        (
            "interval",
            pb::HostSample {
                interval: Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                }),
                ..good.clone()
            },
        ),
        (
            "cpu_percent",
            pb::HostSample {
                cpu_percent: f64::NAN,
                ..good.clone()
            },
        ),
        (
            "cpu_percent",
            pb::HostSample {
                cpu_percent: 250.0,
                ..good.clone()
            },
        ),
        (
            "memory_used_bytes",
            pb::HostSample {
                memory_used_bytes: 5,
                memory_total_bytes: 1,
                ..good.clone()
            },
        ),
        (
            "load1",
            pb::HostSample {
                load1: -1.0,
                ..good.clone()
            },
        ),
        (
            "interfaces has more than",
            pb::HostSample {
                interfaces: vec![pb::NetIo::default(); 1025],
                ..good.clone()
            },
        ),
        (
            "device name is longer",
            pb::HostSample {
                disks: vec![pb::DiskIo {
                    device: "d".repeat(5000),
                    ..Default::default()
                }],
                ..good.clone()
            },
        ),
    ];
    for (needle, wire) in cases {
        let err = HostSample::try_from(&wire).expect_err(needle);
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
}

#[test]
fn unset_enums_are_rejected() {
    assert!(cohort_from_i32(0).is_err());
    assert!(cohort_from_i32(99).is_err());
    assert_eq!(cohort_from_i32(1).expect("beta"), Cohort::Beta);
    let update = pb::CommandUpdate {
        status: pb::CommandStatus::NoAnswer as i32,
        ..Default::default()
    };
    assert!(update.checked_status().is_err());
}
