//! How the gateway reaches an endpoint: the transport under HTTP/1 and HTTP/2, as one seam.
//!
//! [`Connector`] says how to open a connection and [`Transport`] is what it opened; the pools
//! ([`super::h1`], [`super::h2`]) only read and write a [`Transport`]. TLS origination (a rustls
//! client, issue 20) is one more variant of each, and nothing above this module changes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Authority;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::error::UpstreamError;

/// How connections to a destination's endpoints are opened.
#[derive(Debug, Clone)]
pub enum Connector {
    /// Plain TCP, `TCP_NODELAY` set (a proxy forwards small heads at once).
    Tcp { connect_timeout: Duration },
}

impl Connector {
    /// A connection to `endpoint` (`host:port`; a name is resolved, each address tried in turn),
    /// within the connect timeout.
    pub async fn connect(&self, endpoint: &Authority) -> Result<Transport, UpstreamError> {
        match self {
            Connector::Tcp { connect_timeout } => {
                let port = endpoint.port_u16().unwrap_or(80);
                let host = endpoint.host().trim_start_matches('[').trim_end_matches(']');
                let stream = tokio::time::timeout(*connect_timeout, TcpStream::connect((host, port)))
                    .await
                    .map_err(|_| UpstreamError::ConnectTimeout { endpoint: endpoint.clone() })?
                    .map_err(|source| UpstreamError::Connect { endpoint: endpoint.clone(), source })?;
                // Not fatal: the connection works without it, only slower for small writes.
                let _ = stream.set_nodelay(true);
                Ok(Transport::Tcp(stream))
            }
        }
    }
}

/// An open connection to an endpoint.
#[derive(Debug)]
pub enum Transport {
    Tcp(TcpStream),
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Tcp(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error_that_is_safe_to_retry() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        drop(listener);
        let connector = Connector::Tcp { connect_timeout: Duration::from_secs(5) };
        let error = connector.connect(&endpoint).await.expect_err("nothing listens");
        assert!(matches!(error, UpstreamError::Connect { .. }), "{error:?}");
        assert!(error.retry_safe());
    }
}
