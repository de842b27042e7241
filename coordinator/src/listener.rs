//! The gRPC listener's edge: the TLS settings read from `[tls]`, and an
//! accept loop that holds at most `max_connections` connections open.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::TlsFiles;
use crate::error::{Error, Result};

/// A peer that has not finished its TLS handshake by then is dropped, so
/// a silent connection cannot hold a slot.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads `[tls]`: the server's identity and the CA every caller's
/// certificate must chain to (a client certificate is required).
pub(crate) fn server_tls(files: &TlsFiles) -> Result<ServerTlsConfig> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|err| Error::server(format!("reading tls.{key} {}", path.display()), err))
    };
    let cert = read("cert", &files.cert)?;
    let key = read("key", &files.key)?;
    let client_ca = read("client_ca", &files.client_ca)?;
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(client_ca))
        .timeout(HANDSHAKE_TIMEOUT))
}

/// Accepts connections while fewer than `max` are open; past that the
/// next one waits in the kernel's backlog until one closes. Ends when
/// `shutdown` is cancelled.
pub(crate) fn limited_incoming(
    listener: TcpListener,
    max: usize,
    shutdown: CancellationToken,
) -> ReceiverStream<io::Result<Limited>> {
    let (tx, rx) = mpsc::channel(16);
    let slots = Arc::new(Semaphore::new(max));
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => return,
                permit = Arc::clone(&slots).acquire_owned() => permit,
            };
            let Ok(permit) = permit else { return };
            if slots.available_permits() == 0 && !warned {
                tracing::warn!(max, "gRPC connections at max_connections: new ones wait");
                warned = true;
            } else if slots.available_permits() > max / 10 {
                warned = false;
            }
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    // Small messages (acks, commands) go out at once, not behind Nagle.
                    let _ = stream.set_nodelay(true);
                    let limited = Limited {
                        stream,
                        _slot: permit,
                    };
                    if tx.send(Ok(limited)).await.is_err() {
                        return;
                    }
                }
                Err(err) => {
                    // Out of file descriptors, most often: wait rather than spin.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// An accepted connection holding one of the listener's slots until it closes.
#[derive(Debug)]
pub(crate) struct Limited {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
