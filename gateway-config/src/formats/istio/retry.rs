//! A VirtualService route's `retries` as the route's retry policy: `attempts` (0 turns retries
//! off), `perTryTimeout`, `retryOn` with Envoy's tokens and Istio's status numbers (`503`); a
//! token the gateway does not implement is warned by name and the others apply.

use super::spec::{HttpRetry, Kind};
use crate::context::ObjectCx;
use crate::model::{RetryOn, RetryPolicy};

pub(super) fn policy(cx: &mut ObjectCx<'_, Kind>, path: &str, r: &HttpRetry) -> RetryPolicy {
    let on = r.retry_on.as_ref().map(|list| {
        let (on, unknown) = RetryOn::parse(list);
        for token in unknown {
            cx.warn(&format!("{path}.retryOn"), format!("retry condition \"{token}\" is not implemented; ignored"));
        }
        on
    });
    RetryPolicy { retries: r.attempts.map(|a| a.0), per_try_timeout: r.per_try_timeout.map(|t| t.0), on, backoff: None }
}
