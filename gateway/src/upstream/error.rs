//! Why a request to an upstream got no answer, classified by whether the upstream can have
//! processed it: what a retry policy needs to know (Envoy's `connect-failure`, `refused-stream`,
//! `reset-before-request`; gRPC's transparent retry).

use http::uri::Authority;

/// The error of [`Upstream::send`](super::Upstream::send).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to {endpoint} failed")]
    Connect {
        endpoint: Authority,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {endpoint} timed out")]
    ConnectTimeout { endpoint: Authority },
    /// The upstream refused the stream before processing it: `REFUSED_STREAM`, or a GOAWAY whose
    /// last stream id is below this stream's (RFC 9113 sections 6.8 and 8.7).
    #[error("the upstream refused the stream")]
    Refused(#[source] hyper::Error),
    /// The connection closed before any byte of the request was written.
    #[error("the connection closed before the request was sent")]
    NotSent(#[source] hyper::Error),
    /// The answer's head is over the limits (`upstream.max_response_headers_bytes`,
    /// `upstream.max_response_headers`); the answer is dropped, the connection (HTTP/1) too.
    #[error("the upstream's answer head is over the limits")]
    HeadTooLarge,
    /// The request's URI names no endpoint of the destination (a bug of the caller).
    #[error("{0} is not an endpoint of this destination")]
    NotAnEndpoint(Authority),
    /// Anything else: the request may have been processed.
    #[error("the upstream request failed")]
    Failed(#[source] hyper::Error),
}

impl UpstreamError {
    /// Whether the upstream certainly did not process the request, so that sending it again
    /// (to this or another endpoint) cannot do anything twice.
    pub fn retry_safe(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::ConnectTimeout { .. } | Self::Refused(_) | Self::NotSent(_))
    }

    /// A hyper error of a request that was handed to a connection. HTTP/2 errors are read from
    /// the h2 error underneath: `REFUSED_STREAM`, or a GOAWAY the upstream sent that reached this
    /// stream (h2 fails only the streams above the GOAWAY's last stream id with it; the others
    /// finish, or fail later with the connection's own error).
    pub(super) fn from_hyper(error: hyper::Error) -> Self {
        if error.is_parse_too_large() {
            return Self::HeadTooLarge;
        }
        if let Some(h2) = h2_error(&error) {
            let refused = h2.reason() == Some(h2::Reason::REFUSED_STREAM) && h2.is_remote();
            if refused || (h2.is_go_away() && h2.is_remote()) {
                return Self::Refused(error);
            }
        }
        Self::Failed(error)
    }
}

/// The h2 error under a hyper error, if the request went over HTTP/2.
pub(super) fn h2_error(error: &hyper::Error) -> Option<&h2::Error> {
    let mut source = std::error::Error::source(error);
    while let Some(error) = source {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return Some(h2);
        }
        source = error.source();
    }
    None
}
