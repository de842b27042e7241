//! At most once on the agent, against a scripted coordinator: the real agent
//! binary is sent the same command id on every connection, also after the
//! agent itself restarts; it runs the action once and answers every repeat
//! from its journal. Unknown and expired commands are rejected unrun.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rollguard_proto::v1 as pb;
use rollguard_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use rollguard_tests::{test_dir, wait_until, Agent, AgentSpec};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};

/// Every command is sent on every connection; final updates are recorded.
#[derive(Debug, Clone, Default)]
struct Scripted {
    updates: Arc<Mutex<Vec<pb::CommandUpdate>>>,
    connections: Arc<Mutex<u32>>,
}

fn command(id: &str, action: &str, not_after: SystemTime) -> pb::CoordinatorMessage {
    pb::CoordinatorMessage {
        kind: Some(pb::coordinator_message::Kind::Command(pb::Command {
            command_id: id.to_owned(),
            deployment: "journal".to_owned(),
            action: action.to_owned(),
            reason: "scripted".to_owned(),
            not_after: Some(rollguard_proto::time_to_pb(not_after)),
            ..Default::default()
        })),
    }
}

type Outbound = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for Scripted {
    type ConnectStream = Outbound;

    async fn connect(
        &self,
        request: tonic::Request<tonic::Streaming<pb::AgentMessage>>,
    ) -> Result<tonic::Response<Self::ConnectStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let _hello = inbound.next().await;
        *self.connections.lock().expect("lock") += 1;
        let (tx, rx) = mpsc::channel(16);
        let now = SystemTime::now();
        let _ = tx
            .send(Ok(pb::CoordinatorMessage {
                kind: Some(pb::coordinator_message::Kind::Welcome(pb::Welcome {
                    host_id: "journal-1".to_owned(),
                    max_batch_samples: 64,
                    coordinator_version: "scripted".to_owned(),
                    // Like a coordinator from before compact samples: whole samples only.
                    compact_samples: false,
                    local_rollbacks: false,
                })),
            }))
            .await;
        for message in [
            command("cmd-once", "rollback", now + Duration::from_secs(3600)),
            command(
                "cmd-unknown",
                "format-disk",
                now + Duration::from_secs(3600),
            ),
            command("cmd-expired", "rollback", now - Duration::from_secs(1)),
        ] {
            let _ = tx.send(Ok(message)).await;
        }
        let updates = Arc::clone(&self.updates);
        tokio::spawn(async move {
            let mut finals = 0;
            while let Some(Ok(message)) = inbound.next().await {
                if let Some(pb::agent_message::Kind::CommandUpdate(update)) = message.kind {
                    let final_status = matches!(
                        pb::CommandStatus::try_from(update.status),
                        Ok(pb::CommandStatus::Succeeded
                            | pb::CommandStatus::Failed
                            | pb::CommandStatus::Rejected)
                    );
                    updates.lock().expect("lock").push(update);
                    if final_status {
                        finals += 1;
                    }
                    // All three answered: end this connection so the agent reconnects.
                    if finals == 3 {
                        break;
                    }
                }
            }
            drop(tx);
        });
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

#[test]
fn a_command_id_runs_once_across_reconnects_and_agent_restarts() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let scripted = Scripted::default();
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(
                // Agents send gzip-compressed messages, as to the real coordinator.
                AgentServiceServer::new(scripted.clone())
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let root = test_dir("journal");
    let spec = AgentSpec::with_evidence_action("journal-1", "journal", "beta");
    let finals_of = |id: &str| -> Vec<pb::CommandUpdate> {
        scripted
            .updates
            .lock()
            .expect("lock")
            .iter()
            .filter(|u| {
                u.command_id == id
                    && matches!(
                        pb::CommandStatus::try_from(u.status),
                        Ok(pb::CommandStatus::Succeeded
                            | pb::CommandStatus::Failed
                            | pb::CommandStatus::Rejected)
                    )
            })
            .cloned()
            .collect()
    };

    let mut agent = Agent::start(&root, &url, &spec).expect("agent");
    // Three connections of one agent process (the scripted side hangs up after each).
    wait_until(
        "three answered connections",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || (finals_of("cmd-once").len() >= 3).then_some(()),
    )
    .expect("repeats answered");
    agent
        .proc
        .terminate(Duration::from_secs(10))
        .expect("agent stops");
    let before_restart = finals_of("cmd-once").len();
    let agent = Agent::start(&root, &url, &spec).expect("agent restarts");
    wait_until(
        "an answer after the restart",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || (finals_of("cmd-once").len() > before_restart).then_some(()),
    )
    .expect("answered after restart");

    assert_eq!(agent.evidence_lines(), 1, "the action ran exactly once");
    for update in finals_of("cmd-once") {
        assert_eq!(
            update.status,
            pb::CommandStatus::Succeeded as i32,
            "{update:?}"
        );
        assert_eq!(
            update.exit_code,
            Some(0),
            "every repeat reports the one run: {update:?}"
        );
    }
    let unknown = finals_of("cmd-unknown");
    assert!(!unknown.is_empty());
    for update in unknown {
        assert_eq!(update.status, pb::CommandStatus::Rejected as i32);
        assert!(update.reason.contains("unknown action"), "{update:?}");
    }
    let expired = finals_of("cmd-expired");
    assert!(!expired.is_empty());
    for update in expired {
        assert_eq!(update.status, pb::CommandStatus::Rejected as i32);
        assert_eq!(update.reason, "expired");
    }
    assert!(*scripted.connections.lock().expect("lock") >= 4);
}
