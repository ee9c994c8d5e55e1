//! A route's retry policy as the front-ends write it (Istio `retries`, Gateway API `retry`, a
//! native route's `retries:`), and the `retryOn` conditions they share, read once here: the
//! gateway only sees [`RetryPolicy`] and [`RetryOn`].
//!
//! What is left out is the gateway's default (`upstream.retries` in its settings): a route without
//! a policy uses it whole, a policy without `retryOn` uses its conditions.

use std::time::Duration;

use serde::Serialize;

/// How the primary request of one route is retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt (Istio `attempts`, Gateway API `attempts`); 0: none;
    /// `None`: the gateway's default number.
    pub retries: Option<u32>,
    /// Each attempt's own deadline (Istio `perTryTimeout`); the route timeout still bounds them
    /// all. `None`: attempts have no deadline of their own.
    #[serde(serialize_with = "crate::model::ser::opt_duration")]
    pub per_try_timeout: Option<Duration>,
    /// `None`: the gateway's default conditions.
    pub on: Option<RetryOn>,
    /// The wait before the first retry (doubling for each next one); `None`: the gateway's.
    #[serde(serialize_with = "crate::model::ser::opt_duration")]
    pub backoff: Option<Duration>,
}

/// When a failed attempt is retried: Envoy's `retry_on` conditions (`x-envoy-retry-on`,
/// `x-envoy-retry-grpc-on`), which Istio's `retryOn` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryOn {
    /// The connection could not be made (refused, timed out, unreachable).
    pub connect_failure: bool,
    /// The upstream refused the stream (HTTP/2 `REFUSED_STREAM`, or a pooled connection that
    /// closed before the request was written): certainly not processed.
    pub refused_stream: bool,
    /// No answer at all: reset or closed before the first byte of the response, or the attempt's
    /// own deadline passed. The request may have been processed, so only idempotent methods are
    /// retried on it.
    pub reset: bool,
    /// Answers 502, 503 and 504 (`gateway-error`).
    pub gateway_error: bool,
    /// Any 5xx answer (`5xx`).
    pub server_error: bool,
    /// These statuses (`retriable-status-codes` with Istio's numbers, Gateway API `codes`).
    pub status_codes: Vec<u16>,
    /// gRPC answers whose `grpc-status` (in a trailers-only answer) is one of these
    /// (`cancelled` 1, `deadline-exceeded` 4, `resource-exhausted` 8, `internal` 13,
    /// `unavailable` 14).
    pub grpc_statuses: Vec<u32>,
}

impl RetryOn {
    /// A comma-separated list of Envoy/Istio tokens (`connect-failure,refused-stream,503`), and
    /// the tokens not understood (the caller says which file and key, warning or refusing).
    pub fn parse(list: &str) -> (RetryOn, Vec<String>) {
        let mut on = RetryOn::default();
        let mut unknown = Vec::new();
        for token in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if !on.add(token) {
                unknown.push(token.to_owned());
            }
        }
        (on, unknown)
    }

    /// Adds one token; false when it is not one the gateway implements.
    fn add(&mut self, token: &str) -> bool {
        match token.to_ascii_lowercase().as_str() {
            "connect-failure" => self.connect_failure = true,
            "refused-stream" | "reset-before-request" => self.refused_stream = true,
            "reset" => self.reset = true,
            // Envoy: both include the answers that never came.
            "5xx" => {
                self.server_error = true;
                self.connect_failure = true;
                self.refused_stream = true;
                self.reset = true;
            }
            "gateway-error" => {
                self.gateway_error = true;
                self.connect_failure = true;
                self.reset = true;
            }
            // The statuses come with it (Istio's numbers, Gateway API `codes`).
            "retriable-status-codes" => {}
            "retriable-4xx" => self.add_status(409),
            "cancelled" => self.add_grpc(1),
            "deadline-exceeded" => self.add_grpc(4),
            "resource-exhausted" => self.add_grpc(8),
            "internal" => self.add_grpc(13),
            "unavailable" => self.add_grpc(14),
            number => match number.parse::<u16>() {
                Ok(status) if (100..600).contains(&status) => self.add_status(status),
                _ => return false,
            },
        }
        true
    }

    pub fn add_status(&mut self, status: u16) {
        if !self.status_codes.contains(&status) {
            self.status_codes.push(status);
        }
    }

    fn add_grpc(&mut self, code: u32) {
        if !self.grpc_statuses.contains(&code) {
            self.grpc_statuses.push(code);
        }
    }

    /// Whether an answer of `status` is retried under these conditions.
    pub fn retries_status(&self, status: u16) -> bool {
        (self.server_error && (500..600).contains(&status))
            || (self.gateway_error && matches!(status, 502..=504))
            || self.status_codes.contains(&status)
    }

    /// Whether any answer (not only an absent one) can be retried: the gateway then looks at the
    /// answer's head before relaying it.
    pub fn looks_at_answers(&self) -> bool {
        self.server_error || self.gateway_error || !self.status_codes.is_empty() || !self.grpc_statuses.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_tokens_and_status_numbers_are_read_and_unknown_ones_returned_by_name() {
        let (on, unknown) = RetryOn::parse("connect-failure, refused-stream,503,retriable-status-codes,unavailable,envoy-ratelimited");
        assert!(on.connect_failure && on.refused_stream && !on.reset);
        assert_eq!(on.status_codes, [503]);
        assert_eq!(on.grpc_statuses, [14]);
        assert_eq!(unknown, ["envoy-ratelimited"]);
        assert!(on.retries_status(503) && !on.retries_status(502));
        let (five, _) = RetryOn::parse("5xx");
        assert!(five.connect_failure && five.reset && five.retries_status(500) && five.retries_status(599));
        let (gateway, _) = RetryOn::parse("gateway-error");
        assert!(gateway.retries_status(504) && !gateway.retries_status(500));
        assert_eq!(RetryOn::parse("700,x").1, ["700", "x"], "not a status: unknown");
    }
}
