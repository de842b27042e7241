//! The downstream half of an agent stream: the handle the fleet keeps for a
//! connected host, what is queued on it, and how that is encoded.
//!
//! Everything goes straight onto the wire queue (no hop through the stream
//! task: a broadcast to 10,000 hosts is 10,000 channel sends, not 20,000
//! task wake-ups); the stream's task is only told when to end.
//!
//! A command is the same bytes for every target: a broadcast encodes it once
//! ([`command_message`]) and each stream's queue gets the shared buffer (a
//! reference count, not a copy of the message), which the stream's encoder
//! copies into its HTTP/2 frame (issue 15). A sample ack, the commonest
//! message, is queued as its sequence number and encoded as it is written.
//! The queue's items are small ([`Outbound`] is 16 bytes), so an idle
//! stream's queue block is half a kilobyte.

use std::sync::Arc;
use std::time::SystemTime;

use prost::bytes::BufMut;
use prost::Message;
use rollguard_proto::v1 as pb;
use tokio::sync::{mpsc, Notify};
use tokio_util::task::TaskTracker;

use crate::store::{from_unix_ms, CommandRecord};

/// A command encoded once: the same bytes for every stream it goes to
/// (an `Arc<Vec>`, not an `Arc<[u8]>`: a thin pointer keeps [`Outbound`]
/// at 16 bytes).
pub(crate) type EncodedCommand = Arc<Vec<u8>>;

/// One downstream item of an agent stream.
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    /// A whole `CoordinatorMessage`, encoded once and shared by every
    /// stream it goes to (a command).
    Encoded(EncodedCommand),
    /// `SampleAck { seq }`.
    SampleAck(u64),
    /// Any other message (Welcome, Goodbye, a local rollback's ack).
    Message(Box<pb::CoordinatorMessage>),
    /// Ends the stream with this status (a protocol error).
    End(Box<tonic::Status>),
}

impl Outbound {
    pub(crate) fn message(message: pb::CoordinatorMessage) -> Self {
        Outbound::Message(Box::new(message))
    }

    /// Writes the item's `CoordinatorMessage` into `dst`; `Err` is the status
    /// that ends the stream.
    pub(crate) fn encode(self, dst: &mut impl BufMut) -> Result<(), tonic::Status> {
        let encoded = match self {
            Outbound::Encoded(bytes) => {
                dst.put_slice(&bytes);
                return Ok(());
            }
            Outbound::SampleAck(seq) => sample_ack(seq).encode(dst),
            Outbound::Message(message) => message.encode(dst),
            Outbound::End(status) => return Err(*status),
        };
        encoded.map_err(|err| tonic::Status::internal(format!("encoding a message: {err}")))
    }

    /// The message this item puts on the wire, as the agent decodes it.
    #[cfg(test)]
    pub(crate) fn decoded(self) -> Result<pb::CoordinatorMessage, tonic::Status> {
        let mut buf = Vec::new();
        self.encode(&mut buf)?;
        Ok(pb::CoordinatorMessage::decode(buf.as_slice()).expect("a valid message"))
    }
}

/// The wire half of an agent stream: what tonic sends to the agent.
pub(crate) type WireTx = mpsc::Sender<Outbound>;

/// The fleet's way into one agent stream: its wire queue, and a signal
/// that ends the stream's task.
#[derive(Debug, Clone)]
pub(crate) struct AgentTx {
    pub(crate) wire: WireTx,
    /// Notified when the stream must end (a newer connection replaced it).
    pub(crate) end: Arc<Notify>,
}

impl AgentTx {
    pub(crate) fn new(wire: WireTx) -> Self {
        AgentTx {
            wire,
            end: Arc::default(),
        }
    }

    /// Queues a Goodbye and ends the stream. The Goodbye is dropped when the
    /// queue is full: the agent then sees the stream end without it, and
    /// reconnects as it would anyway.
    pub(crate) fn goodbye(&self, reason: &str) {
        let _ = self.wire.try_send(goodbye_message(reason));
        // A permit is kept if the task is not waiting right now.
        self.end.notify_one();
    }

    /// Queues a command on the stream. A command is never dropped: when the
    /// stream's queue is full, a task on `tracker` waits for room; should the
    /// stream end first, the host gets the command again from the fleet when
    /// it reconnects.
    pub(crate) fn send_command(&self, message: &EncodedCommand, tracker: &TaskTracker) {
        match self.wire.try_send(Outbound::Encoded(message.clone())) {
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

/// The wire form of a command, encoded once per broadcast, stamped with
/// `sent_at`, the coordinator's clock as it goes out: the agent judges
/// expiry by `sent_at > not_after`, two times from this one clock, and
/// never against its own, which may be hours off (issue 11). Every copy is
/// built here (a fan-out, a resend on reconnect, a catch-up or a retry),
/// so callers pass `SystemTime::now()` as they send.
///
/// A copy that waits in a full stream queue keeps its stamp: it was valid
/// when it was sent, and a host cut off for longer gets the command again,
/// freshly stamped, when it reconnects.
pub(crate) fn command_message(record: &CommandRecord, sent_at: SystemTime) -> EncodedCommand {
    let message = pb::CoordinatorMessage {
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
    };
    Arc::new(message.encode_to_vec())
}

fn sample_ack(seq: u64) -> pb::CoordinatorMessage {
    pb::CoordinatorMessage {
        kind: Some(pb::coordinator_message::Kind::SampleAck(pb::SampleAck {
            seq,
        })),
    }
}

/// The wire form of a Goodbye.
pub(crate) fn goodbye_message(reason: &str) -> Outbound {
    Outbound::message(pb::CoordinatorMessage {
        kind: Some(pb::coordinator_message::Kind::Goodbye(pb::Goodbye {
            reason: reason.to_owned(),
        })),
    })
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
        let tx = AgentTx::new(wire);
        let tracker = TaskTracker::new();
        let message = command_message(&record(), from_unix_ms(2_000));
        tx.send_command(&message, &tracker);
        // The queue is full now: the second waits on the tracker.
        tx.send_command(&message, &tracker);
        assert_eq!(tracker.len(), 1);
        for _ in 0..2 {
            let got = wire_rx.recv().await.expect("sent");
            assert!(matches!(got, Outbound::Encoded(bytes) if Arc::ptr_eq(&bytes, &message)));
        }
        tracker.close();
        tracker.wait().await;
    }

    #[test]
    fn the_command_message_carries_the_record_and_when_it_was_sent() {
        let message = command_message(&record(), from_unix_ms(2_500));
        let decoded = Outbound::Encoded(message).decoded().expect("a message");
        let Some(pb::coordinator_message::Kind::Command(command)) = decoded.kind else {
            panic!("not a command: {decoded:?}");
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

    /// Issue 15: one buffer goes to every target. Each stream's queue holds
    /// the same allocation (no copy per target), and what each stream
    /// writes decodes to the message the record describes, byte for byte
    /// the encoding of that message.
    #[tokio::test]
    async fn a_shared_command_buffer_decodes_to_the_same_message_on_every_stream() {
        let tracker = TaskTracker::new();
        let sent_at = from_unix_ms(3_000);
        let shared = command_message(&record(), sent_at);
        let mut streams = Vec::new();
        for _ in 0..50 {
            let (wire, wire_rx) = mpsc::channel(4);
            AgentTx::new(wire).send_command(&shared, &tracker);
            streams.push(wire_rx);
        }
        let expected = pb::CoordinatorMessage {
            kind: Some(pb::coordinator_message::Kind::Command(pb::Command {
                command_id: "cmd-1".to_owned(),
                deployment: "shop".to_owned(),
                action: "rollback".to_owned(),
                reason: "errors".to_owned(),
                not_after: Some(rollguard_proto::time_to_pb(from_unix_ms(61_000))),
                trace_context: [("traceparent".to_owned(), "00-x".to_owned())].into(),
                issued_at: Some(rollguard_proto::time_to_pb(from_unix_ms(1_000))),
                sent_at: Some(rollguard_proto::time_to_pb(sent_at)),
                version: String::new(),
            })),
        };
        for mut wire_rx in streams {
            let item = wire_rx.try_recv().expect("queued without waiting");
            let Outbound::Encoded(bytes) = &item else {
                panic!("not the shared buffer: {item:?}");
            };
            assert_eq!(
                bytes.as_ptr(),
                shared.as_ptr(),
                "a copy, not the shared buffer"
            );
            let mut written = Vec::new();
            item.clone().encode(&mut written).expect("encodes");
            assert_eq!(written, expected.encode_to_vec());
            assert_eq!(item.decoded().expect("a message"), expected);
        }
        assert_eq!(tracker.len(), 0, "nothing waited for room");
    }

    #[test]
    fn every_kind_of_item_writes_the_message_it_stands_for() {
        let ack = Outbound::SampleAck(41).decoded().expect("a message");
        assert_eq!(
            ack.kind,
            Some(pb::coordinator_message::Kind::SampleAck(pb::SampleAck {
                seq: 41
            }))
        );
        let goodbye = goodbye_message("replaced").decoded().expect("a message");
        assert_eq!(
            goodbye.kind,
            Some(pb::coordinator_message::Kind::Goodbye(pb::Goodbye {
                reason: "replaced".to_owned()
            }))
        );
        let end = Outbound::End(Box::new(tonic::Status::invalid_argument("bad")));
        assert_eq!(
            end.encode(&mut Vec::new())
                .expect_err("ends the stream")
                .code(),
            tonic::Code::InvalidArgument
        );
        // What a stream queues stays small: a queue block is 32 of them.
        assert_eq!(std::mem::size_of::<Outbound>(), 16);
    }
}
