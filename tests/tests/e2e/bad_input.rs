//! Bad input: config errors name the key; protocol violations get a gRPC
//! error and the coordinator keeps serving everyone else.

use std::process::Command;
use std::time::Duration;

use rollguard_proto::v1 as pb;
use rollguard_tests::{agent, binaries, test_dir, Agent, AgentSpec, Coordinator};
use tokio_stream::StreamExt;

#[track_caller]
fn check_config_error(command: &mut Command, needle: &str) {
    let out = command.output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(64),
        "exit 64 on bad config: {stderr}"
    );
    assert!(stderr.contains(needle), "`{stderr}` does not name {needle}");
}

#[test]
fn bad_config_exits_64_naming_the_key() {
    let dir = test_dir("badconfig");
    let unknown = dir.join("unknown.toml");
    std::fs::write(
        &unknown,
        "deployment = \"d\"\ncohort = \"beta\"\nintervall = \"1s\"\n",
    )
    .expect("write");
    check_config_error(
        Command::new(&binaries().agent)
            .arg("--config")
            .arg(&unknown),
        "intervall",
    );
    let bad_value = dir.join("bad_value.toml");
    std::fs::write(
        &bad_value,
        "deployment = \"d\"\ncohort = \"beta\"\n[actions.rollback]\ncommand = [\"/bin/true\"]\ntimeout = \"soon\"\n",
    )
    .expect("write");
    check_config_error(
        Command::new(&binaries().agent)
            .arg("--config")
            .arg(&bad_value),
        "actions.rollback.timeout",
    );
    check_config_error(
        Command::new(&binaries().agent).arg("--cohort").arg("beta"),
        "deployment",
    );
    let coordinator_bad = dir.join("coordinator.toml");
    std::fs::write(&coordinator_bad, "command_ttl = \"later\"\n").expect("write");
    check_config_error(
        Command::new(&binaries().coordinator)
            .arg("--config")
            .arg(&coordinator_bad),
        "command_ttl",
    );
    check_config_error(
        Command::new(&binaries().coordinator)
            .args(["--listen", "0.0.0.0:0", "--data-dir"])
            .arg(dir.join("data")),
        "--insecure-listen",
    );
    check_config_error(
        Command::new(&binaries().coordinator)
            .args(["--http-listen", "0.0.0.0:0", "--data-dir"])
            .arg(dir.join("data")),
        "--insecure-http",
    );
    // --check-config reports the same errors, and on a good config says
    // what it would do and exits 0 without binding or opening anything.
    check_config_error(
        Command::new(&binaries().coordinator)
            .arg("--check-config")
            .arg("--config")
            .arg(&coordinator_bad),
        "command_ttl",
    );
    let data = dir.join("never-created");
    let good = Command::new(&binaries().coordinator)
        .args(["--check-config", "--listen", "127.0.0.1:1", "--data-dir"])
        .arg(&data)
        .output()
        .expect("runs");
    let out = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{good:?}");
    assert!(out.starts_with("config OK: listen 127.0.0.1:1"), "{out}");
    assert!(!data.exists(), "a check opens no store");
    std::fs::write(
        dir.join("good-agent.toml"),
        "host_id = \"h1\"\n[actions.rollback]\ncommand = [\"/bin/true\"]\n",
    )
    .expect("write");
    let good = Command::new(&binaries().agent)
        .args(["--check-config", "--deployment", "d", "--cohort", "beta"])
        .arg("--config")
        .arg(dir.join("good-agent.toml"))
        .output()
        .expect("runs");
    let out = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{good:?}");
    assert!(
        out.starts_with("config OK: host h1 in d (beta)") && out.contains("actions: rollback"),
        "{out}"
    );
}

async fn open_stream(
    url: &str,
    first: pb::AgentMessage,
) -> (
    tokio::sync::mpsc::Sender<pb::AgentMessage>,
    Result<tonic::Streaming<pb::CoordinatorMessage>, tonic::Status>,
) {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut client = pb::agent_service_client::AgentServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(first).await.expect("queue first message");
    let response = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map(tonic::Response::into_inner);
    (tx, response)
}

fn hello(host_id: &str) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Hello(pb::Hello {
            host_id: host_id.to_owned(),
            deployment: "proto".to_owned(),
            cohort: pb::Cohort::Beta as i32,
            ..Default::default()
        })),
    }
}

/// Sends `sample` on an accepted stream and returns the status the stream ends with.
async fn send_one_sample(
    tx: &tokio::sync::mpsc::Sender<pb::AgentMessage>,
    inbound: &mut tonic::Streaming<pb::CoordinatorMessage>,
    sample: pb::HostSample,
) -> tonic::Status {
    tx.send(pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Samples(pb::SampleBatch {
            first_seq: 0,
            samples: vec![sample],
        })),
    })
    .await
    .expect("send");
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match inbound.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return status,
                None => panic!("stream ended without a status"),
            }
        }
    })
    .await
    .expect("error arrives")
}

#[test]
fn protocol_violations_get_a_grpc_error_and_others_keep_being_served() {
    let root = test_dir("protocol");
    let coordinator = Coordinator::start(&root.join("data"), None).expect("coordinator");
    let good = Agent::start(
        &root,
        &coordinator.url,
        &AgentSpec::with_evidence_action("good-1", "proto", "baseline"),
    )
    .expect("agent");
    coordinator
        .wait_for_agents("good-1 connected", |a| {
            agent(a, "good-1").is_some_and(|a| a["connected"] == true)
        })
        .expect("connected");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Samples before Hello.
        let samples = pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Samples(pb::SampleBatch {
                first_seq: 0,
                samples: vec![pb::HostSample::default()],
            })),
        };
        let (_tx, response) = open_stream(&coordinator.url, samples).await;
        let status = response.expect_err("samples before Hello are refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

        // A Hello with a cohort that is no value of the enum (0, unset, is
        // `auto` and accepted).
        let mut bad_hello = hello("bad-cohort");
        if let Some(pb::agent_message::Kind::Hello(h)) = bad_hello.kind.as_mut() {
            h.cohort = 7;
        }
        let (_tx, response) = open_stream(&coordinator.url, bad_hello).await;
        assert_eq!(
            response.expect_err("unknown cohort").code(),
            tonic::Code::InvalidArgument
        );

        // Hellos with hostile labels: too many, or a name that is not one.
        for labels in [
            (0..100)
                .map(|i| (format!("k{i}"), "v".to_owned()))
                .collect(),
            std::collections::HashMap::from([("bad name".to_owned(), "v".to_owned())]),
        ] {
            let mut bad_hello = hello("bad-labels");
            if let Some(pb::agent_message::Kind::Hello(h)) = bad_hello.kind.as_mut() {
                h.labels = labels;
            }
            let (_tx, response) = open_stream(&coordinator.url, bad_hello).await;
            let status = response.expect_err("bad labels");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
            assert!(status.message().contains("labels"), "{status:?}");
        }

        // A second Hello on an accepted stream.
        let (tx, response) = open_stream(&coordinator.url, hello("twice")).await;
        let mut inbound = response.expect("the first Hello is accepted");
        let welcome = inbound.next().await.expect("a message").expect("welcome");
        assert!(matches!(
            welcome.kind,
            Some(pb::coordinator_message::Kind::Welcome(_))
        ));
        tx.send(hello("twice")).await.expect("send second hello");
        let end = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match inbound.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(status)) => return Some(status),
                    None => return None,
                }
            }
        })
        .await
        .expect("the stream ends");
        let status = end.expect("ends with an error status");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

        // A hostile sample (NaN) on an accepted stream.
        let (tx, response) = open_stream(&coordinator.url, hello("nan")).await;
        let mut inbound = response.expect("accepted");
        let sample = pb::HostSample {
            collected_at: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 0,
            }),
            interval: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        };
        let mut nan = sample.clone();
        nan.cpu_percent = f64::NAN;
        let status = send_one_sample(&tx, &mut inbound, nan).await;
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

        // A compact sample with no layout on the stream to expand it against.
        let (tx, response) = open_stream(&coordinator.url, hello("compact")).await;
        let mut inbound = response.expect("accepted");
        let compact = pb::HostSample {
            same_layout: true,
            ..sample
        };
        let status = send_one_sample(&tx, &mut inbound, compact).await;
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("same_layout"), "{status:?}");
    });

    // The well-behaved agent stayed connected and the coordinator answers.
    let agents = coordinator
        .wait_for_agents("good-1 still connected with figures", |a| {
            agent(a, "good-1")
                .is_some_and(|a| a["connected"] == true && a["cpu_percent"].is_number())
        })
        .expect("still served");
    assert!(agent(&agents, "good-1").is_some());
    drop(good);
}

#[test]
fn a_ctl_usage_error_with_o_json_is_still_one_json_document() {
    // No server is needed: the arguments are refused before any call.
    for args in [
        &["-o", "json", "rollback", "shop"][..],
        &["rollback", "shop", "--output=json"][..],
        &["-o=json", "rollback", "shop"][..],
        &["-o", "json", "no-such-command"][..],
    ] {
        let out = rollguard_tests::ctl("http://127.0.0.1:9", args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let json = out.json().unwrap_or_else(|err| panic!("{args:?}: {err}"));
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{args:?}: {json}"
        );
    }
    // Without -o json, stdout stays empty and the usage goes to stderr.
    let out = rollguard_tests::ctl("http://127.0.0.1:9", &["rollback", "shop"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stdout.is_empty() && out.stderr.contains("--reason"),
        "{out:?}"
    );
}
