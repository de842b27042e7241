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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::{TcpListener, TcpStream};
    use tokio_stream::StreamExt;
    use tokio_util::sync::CancellationToken;

    use super::limited_incoming;

    #[tokio::test]
    async fn past_max_connections_the_next_one_waits_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let mut incoming = limited_incoming(listener, 2, shutdown.clone());
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        // The kernel completes the third handshake (the backlog) but the
        // server does not take it while two are open.
        let _c3 = TcpStream::connect(addr).await.unwrap();
        let first = incoming.next().await.unwrap().unwrap();
        let second = incoming.next().await.unwrap().unwrap();
        // Nothing else is taken: the accept loop waits for a slot, so the
        // stream yields nothing however long we give it.
        tokio::task::yield_now().await;
        let waiting = tokio::time::timeout(Duration::from_millis(200), incoming.next()).await;
        assert!(
            waiting.is_err(),
            "a third connection was taken past the cap"
        );
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(10), incoming.next())
            .await
            .expect("taken once a slot is free")
            .unwrap()
            .unwrap();
        drop((second, third));
        shutdown.cancel();
    }
}
