//! Why the gateway answered a request itself ([`GatewayError`]), who caused it ([`ErrorSource`],
//! as Pingora's `pingora-error` classifies its errors), and the answer: a status and the one JSON
//! error body of [`service_kit::reply`].
//!
//! Two layers answer a client themselves, and both write that one body: the listener
//! (`service_kit::serve`), for what breaks the generic rules (sizes, `Host`), with its own
//! [`Refusal`](service_kit::serve::Refusal), before the gateway sees the request; and the gateway,
//! for everything here. The listener is a crate of its own because the services use it too, so
//! it cannot name the gateway's errors; the gateway can name the listener's, and does where they
//! meet (a body past the listener's limit, found as it streams: [`BodyFailure::TooLarge`]).

use gateway_config::PathRejected;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;

use crate::bodies::BodyFailure;
use crate::upstream::BoxBody;

/// Why the gateway answered itself instead of relaying the upstream's answer.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no route for this request")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The path breaks `requests.path` (normalisation refuses it).
    #[error("{}", path_problem(*.0))]
    RejectedPath(PathRejected),
    #[error("request URI cannot be forwarded")]
    BadRequestUri,
    /// The client's body failed, as the body that saw it noted.
    #[error(transparent)]
    ClientBody(#[from] BodyFailure),
    #[error("upstream did not answer within the route timeout")]
    UpstreamTimeout,
    #[error("upstream unavailable")]
    UpstreamUnavailable,
    /// The upstream's answer cannot be relayed as framed: two different `Content-Length`s, or a
    /// 101 to a request that asked for no upgrade.
    #[error("upstream answer malformed")]
    UpstreamMalformed,
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    /// A Gateway API backend that cannot be sent to: of a kind not implemented, not permitted
    /// (no ReferenceGrant), defined nowhere, or a Service whose cluster DNS name does not
    /// resolve. The specification answers 500; the route's status says why.
    #[error("backend not found")]
    BackendNotFound,
}

/// Who caused a [`GatewayError`]. Retries and endpoint health (the upstream layer) count only
/// the upstream's failures: a client that sends a broken body must not eject the endpoint it
/// was sent to; nor does a route whose backend is configured wrong (`Internal`, as Pingora's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client: its request cannot be served as sent (a 4xx).
    Downstream,
    /// The destination: it did not answer in time, or there is nothing to send to (a 5xx).
    Upstream,
    /// The gateway's configuration: a route's backend that does not resolve (a 500).
    Internal,
}

impl ErrorSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSource::Downstream => "downstream",
            ErrorSource::Upstream => "upstream",
            ErrorSource::Internal => "internal",
        }
    }
}

impl GatewayError {
    pub fn source(&self) -> ErrorSource {
        match self {
            GatewayError::NoRoute
            | GatewayError::MethodNotAllowed
            | GatewayError::RejectedPath(_)
            | GatewayError::BadRequestUri
            | GatewayError::ClientBody(_) => ErrorSource::Downstream,
            GatewayError::UpstreamTimeout
            | GatewayError::UpstreamUnavailable
            | GatewayError::UpstreamMalformed
            | GatewayError::NoHealthyUpstream => ErrorSource::Upstream,
            GatewayError::BackendNotFound => ErrorSource::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::RejectedPath(_) | GatewayError::BadRequestUri => StatusCode::BAD_REQUEST,
            GatewayError::ClientBody(BodyFailure::Malformed) => StatusCode::BAD_REQUEST,
            GatewayError::ClientBody(BodyFailure::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::ClientBody(BodyFailure::TooSlow) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::UpstreamUnavailable | GatewayError::UpstreamMalformed => StatusCode::BAD_GATEWAY,
            GatewayError::NoHealthyUpstream => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::BackendNotFound => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The status and a short JSON body that names the problem, never internals; to `HEAD`
    /// (`method`), the status alone.
    pub fn into_response(self, method: &Method) -> Response<BoxBody> {
        service_kit::reply::error_reply(method, self.status(), &self)
            .map(|body| body.map_err(|never: std::convert::Infallible| match never {}).boxed_unsync())
    }
}

fn path_problem(rejected: PathRejected) -> &'static str {
    match rejected {
        PathRejected::EscapedSlash => "escaped slash in the path",
        PathRejected::EncodedNul => "encoded NUL in the path",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_error_answers_its_status_with_the_json_body_the_listener_writes_too() {
        let response = GatewayError::ClientBody(BodyFailure::TooLarge).into_response(&Method::POST);
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, r#"{"error":"request body too large"}"#);
        let listener = service_kit::reply::json_error(StatusCode::PAYLOAD_TOO_LARGE, service_kit::serve::Refusal::BodyTooLarge);
        assert_eq!(listener.into_body().collect().await.unwrap().to_bytes(), body, "one limit, one answer, whoever finds it");
    }

    #[test]
    fn the_client_s_errors_are_4xx_the_upstream_s_5xx_and_the_configuration_s_500() {
        let every = [
            GatewayError::NoRoute,
            GatewayError::MethodNotAllowed,
            GatewayError::RejectedPath(PathRejected::EscapedSlash),
            GatewayError::RejectedPath(PathRejected::EncodedNul),
            GatewayError::BadRequestUri,
            GatewayError::UpstreamMalformed,
            GatewayError::ClientBody(BodyFailure::Malformed),
            GatewayError::ClientBody(BodyFailure::TooLarge),
            GatewayError::ClientBody(BodyFailure::TooSlow),
            GatewayError::UpstreamTimeout,
            GatewayError::UpstreamUnavailable,
            GatewayError::NoHealthyUpstream,
            GatewayError::BackendNotFound,
        ];
        for error in every {
            let expected = match error.status() {
                s if s.is_client_error() => ErrorSource::Downstream,
                StatusCode::INTERNAL_SERVER_ERROR => ErrorSource::Internal,
                _ => ErrorSource::Upstream,
            };
            assert!(error.status().is_client_error() || error.status().is_server_error(), "{error}");
            assert_eq!(error.source(), expected, "{error}");
        }
        assert_eq!(GatewayError::RejectedPath(PathRejected::EncodedNul).to_string(), "encoded NUL in the path");
    }
}
