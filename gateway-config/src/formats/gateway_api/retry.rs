//! An HTTPRoute rule's `retry` (GEP-1731) as the route's retry policy: the answers that never came
//! (connection failure, refused or reset stream) and the listed `codes` are retried, `attempts`
//! times, waiting `backoff` before the first retry.

use super::spec::{Kind, Retry};
use crate::context::ObjectCx;
use crate::model::{RetryOn, RetryPolicy};

pub(super) fn policy(cx: &mut ObjectCx<'_, Kind>, path: &str, r: &Retry) -> RetryPolicy {
    let mut on = RetryOn { connect_failure: true, refused_stream: true, reset: true, ..RetryOn::default() };
    for (i, code) in r.codes.iter().enumerate() {
        match u16::try_from(code.0).ok().filter(|c| (400..600).contains(c)) {
            Some(code) => on.add_status(code),
            None => cx.warn(&format!("{path}.codes[{i}]"), format!("{} is not a 4xx or 5xx status; ignored", code.0)),
        }
    }
    RetryPolicy { retries: r.attempts.map(|a| a.0), per_try_timeout: None, on: Some(on), backoff: r.backoff.map(|b| b.0) }
}
