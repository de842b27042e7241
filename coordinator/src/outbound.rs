//! The downstream half of an agent stream: the handle the fleet keeps for a
//! connected host, and the wire messages sent on it.
//!
//! Commands go straight onto the wire (no hop through the stream task: a
//! broadcast to 10,000 hosts is 10,000 channel sends, not 20,000 task
//! wake-ups); control messages go to the stream's task.

use std::time::SystemTime;

use rollguard_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::store::{from_unix_ms, CommandRecord};

/// Control messages for one agent stream's task.
#[derive(Debug, Clone)]
pub(crate) enum Control {
    /// The coordinator is stopping or a newer connection replaced this one.
    Goodbye(String),
}

/// The wire half of an agent stream: what tonic sends to the agent.
pub(crate) type WireTx = mpsc::Sender<Result<pb::CoordinatorMessage, tonic::Status>>;

/// Both ways into one agent stream.
#[derive(Debug, Clone)]
pub(crate) struct AgentTx {
    pub(crate) control: mpsc::Sender<Control>,
    pub(crate) wire: WireTx,
}

impl AgentTx {
    /// Tells the stream's task to say Goodbye and end; dropped if its queue
    /// is full (the task is then busy ending anyway).
    pub(crate) fn goodbye(&self, reason: &str) {
        let _ = self.control.try_send(Control::Goodbye(reason.to_owned()));
    }

    /// Queues a command on the stream. A command is never dropped: when the
    /// stream's queue is full, a task on `tracker` waits for room; should the
    /// stream end first, the host gets the command again from the fleet when
    /// it reconnects.
    pub(crate) fn send_command(&self, message: &pb::CoordinatorMessage, tracker: &TaskTracker) {
        match self.wire.try_send(Ok(message.clone())) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(message)) => {
                let wire = self.wire.clone();
                tracker.spawn(async move {
                    let _ = wire.send(message).await;
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The wire form of a command (built once per broadcast), stamped with
/// `sent_at`, the coordinator's clock as it goes out: the agent judges
/// expiry by `sent_at > not_after`, two times from this one clock, and
/// never against its own, which may be hours off (issue 11). Every copy is
/// built here (a fan-out, a resend on reconnect, a catch-up or a retry),
/// so callers pass `SystemTime::now()` as they send.
///
/// A copy that waits in a full stream queue keeps its stamp: it was valid
/// when it was sent, and a host cut off for longer gets the command again,
/// freshly stamped, when it reconnects.
pub(crate) fn command_message(
    record: &CommandRecord,
    sent_at: SystemTime,
) -> pb::CoordinatorMessage {
    pb::CoordinatorMessage {
        kind: Some(pb::coordinator_message::Kind::Command(pb::Command {
            command_id: record.command_id.clone(),
            deployment: record.deployment.clone(),
            action: record.action.clone(),
            reason: record.reason.clone(),
            not_after: Some(rollguard_proto::time_to_pb(from_unix_ms(
                record.not_after_unix_ms,
            ))),
            trace_context: record.trace_context.iter().cloned().collect(),
            issued_at: Some(rollguard_proto::time_to_pb(from_unix_ms(
                record.issued_at_unix_ms,
            ))),
            sent_at: Some(rollguard_proto::time_to_pb(sent_at)),
            // Rollbacks name no version; a rollout's promote does, checked
            // with `ids::validate_version` before it was stored (issue 12).
            version: record.version.clone(),
        })),
    }
}

/// The wire form of a Goodbye.
pub(crate) fn goodbye_message(reason: &str) -> pb::CoordinatorMessage {
    pb::CoordinatorMessage {
        kind: Some(pb::coordinator_message::Kind::Goodbye(pb::Goodbye {
            reason: reason.to_owned(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CommandKind;

    fn record() -> CommandRecord {
        CommandRecord {
            command_id: "cmd-1".to_owned(),
            deployment: "shop".to_owned(),
            action: "rollback".to_owned(),
            reason: "errors".to_owned(),
            actor: "policy".to_owned(),
            issued_at_unix_ms: 1_000,
            not_after_unix_ms: 61_000,
            targets: vec!["a".to_owned()],
            trace_context: vec![("traceparent".to_owned(), "00-x".to_owned())],
            closed: false,
            request_id: String::new(),
            retry_of: String::new(),
            attempt: 0,
            local: false,
            kind: CommandKind::Rollback,
            version: String::new(),
        }
    }

    #[tokio::test]
    async fn a_command_waits_for_room_and_is_never_dropped() {
        let (wire, mut wire_rx) = mpsc::channel(1);
        let (control, _control_rx) = mpsc::channel(1);
        let tx = AgentTx { control, wire };
        let tracker = TaskTracker::new();
        let message = command_message(&record(), from_unix_ms(2_000));
        tx.send_command(&message, &tracker);
        // The queue is full now: the second waits on the tracker.
        tx.send_command(&message, &tracker);
        assert_eq!(tracker.len(), 1);
        for _ in 0..2 {
            let got = wire_rx.recv().await.expect("sent").expect("not a status");
            assert_eq!(got, message);
        }
        tracker.close();
        tracker.wait().await;
    }

    #[test]
    fn the_command_message_carries_the_record_and_when_it_was_sent() {
        let message = command_message(&record(), from_unix_ms(2_500));
        let Some(pb::coordinator_message::Kind::Command(command)) = message.kind else {
            panic!("not a command: {message:?}");
        };
        assert_eq!(command.command_id, "cmd-1");
        assert_eq!(command.action, "rollback");
        assert_eq!(
            rollguard_proto::time_from_pb("not_after", &command.not_after.expect("set"))
                .expect("valid"),
            from_unix_ms(61_000)
        );
        // Expiry is judged on the coordinator's clock alone (issue 11).
        assert_eq!(
            rollguard_proto::time_from_pb("sent_at", &command.sent_at.expect("set"))
                .expect("valid"),
            from_unix_ms(2_500)
        );
        assert_eq!(
            command.trace_context.get("traceparent").map(String::as_str),
            Some("00-x")
        );
    }
}
