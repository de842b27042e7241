//! `rollguard.v1.AgentService` served by hand, with a codec of its own.
//!
//! The generated server encodes each item of a stream as a
//! `CoordinatorMessage`, so a broadcast would encode the same command once
//! per target. This service is the generated one (one method, `Connect`)
//! with [`AgentCodec`], whose items are [`Outbound`]: a command arrives
//! encoded once and is copied into each stream's frame, an ack is encoded
//! from its sequence number (issue 15). Its buffers are also sized for many
//! small streams rather than tonic's 8 KiB each way.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use rollguard_proto::v1 as pb;
use rollguard_proto::Rpc;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::{
    http, Body, BoxFuture, CompressionEncoding, EnabledCompressionEncodings, Service, StdError,
};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstDecoder;

use super::{AgentLink, ConnectStream};
use crate::outbound::Outbound;

/// Initial size of a stream's encode and decode buffers. Each grows to the
/// largest message it has held (a batch of samples, a command), and an
/// agent's messages are a few hundred bytes; tonic's default is 8 KiB each,
/// 16 KiB per stream whatever it carries.
const STREAM_BUFFER: usize = 512;
/// Encoded bytes a stream collects before handing them to HTTP/2 (tonic's
/// default); a downstream burst is a few messages.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// `rollguard.v1.AgentService` over an [`AgentLink`]; accepts gzip from agents.
#[derive(Debug, Clone)]
pub(crate) struct AgentServer {
    link: Arc<AgentLink>,
}

impl AgentServer {
    pub(crate) fn new(link: AgentLink) -> Self {
        AgentServer {
            link: Arc::new(link),
        }
    }
}

impl NamedService for AgentServer {
    const NAME: &'static str = pb::agent_service_server::SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for AgentServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != Rpc::Connect.path() {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        let connect = Connect(Arc::clone(&self.link));
        Box::pin(async move {
            let mut accept = EnabledCompressionEncodings::default();
            // Agents send gzip-compressed samples; uncompressed peers work too.
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = Grpc::new(AgentCodec)
                .apply_compression_config(accept, EnabledCompressionEncodings::default());
            Ok(grpc.streaming(connect, request).await)
        })
    }
}

/// The `Connect` method: one agent stream.
struct Connect(Arc<AgentLink>);

impl StreamingService<pb::AgentMessage> for Connect {
    type Response = Outbound;
    type ResponseStream = ConnectStream;
    type Future = BoxFuture<Response<ConnectStream>, Status>;

    fn call(&mut self, request: Request<Streaming<pb::AgentMessage>>) -> Self::Future {
        let link = Arc::clone(&self.0);
        Box::pin(async move { link.connect(request).await })
    }
}

/// Agent messages in (prost), [`Outbound`] items out.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AgentCodec;

impl Codec for AgentCodec {
    type Encode = Outbound;
    type Decode = pb::AgentMessage;
    type Encoder = OutboundEncoder;
    type Decoder = ProstDecoder<pb::AgentMessage>;

    fn encoder(&mut self) -> Self::Encoder {
        OutboundEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(buffer_settings())
    }
}

/// Writes an [`Outbound`] item: a shared command's bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OutboundEncoder;

impl Encoder for OutboundEncoder {
    type Item = Outbound;
    type Error = Status;

    fn encode(&mut self, item: Outbound, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffer_settings()
    }
}

fn buffer_settings() -> BufferSettings {
    BufferSettings::new(STREAM_BUFFER, YIELD_THRESHOLD)
}
