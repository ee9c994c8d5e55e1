//! The one error reply of every listener and service here: a status and a short JSON body that
//! names the problem, `{"error":"..."}`, never internals. The listener's own refusals
//! ([`crate::serve::Refusal`]) and the gateway's errors (`gateway::error::GatewayError`) are both
//! written by [`json_error`], so a client reads one shape whoever answered.

use std::fmt::Display;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::{Serialize, Serializer};

/// `status` with `{"error":"<problem>"}` as `application/json`. The problem is escaped as JSON
/// requires, whatever it says.
pub fn json_error(status: StatusCode, problem: impl Display) -> Response<Full<Bytes>> {
    // The problem is written through its `Display` straight into the body: one allocation.
    let mut body = Vec::with_capacity(64);
    if serde_json::to_writer(&mut body, &ErrorBody { error: problem }).is_err() {
        // Only a `Display` that reports an error gets here: the status alone still says it.
        body = br#"{"error":""}"#.to_vec();
    }
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// [`json_error`] for a reply to `method`: to `HEAD`, the status alone, with no body and so no
/// `content-type` (a reply to HEAD has no content, RFC 9110 section 9.3.2; a JSON type with
/// nothing behind it is what Gateway API conformance clients refuse).
pub fn error_reply(method: &Method, status: StatusCode, problem: impl Display) -> Response<Full<Bytes>> {
    if method == Method::HEAD {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = status;
        return response;
    }
    json_error(status, problem)
}

#[derive(Serialize)]
struct ErrorBody<D: Display> {
    #[serde(serialize_with = "as_text")]
    error: D,
}

fn as_text<D: Display, S: Serializer>(value: &D, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body(response: Response<Full<Bytes>>) -> String {
        String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_problem_is_the_error_field_of_a_json_body() {
        let response = json_error(StatusCode::NOT_FOUND, "no route for this request");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(body(response).await, r#"{"error":"no route for this request"}"#);
    }

    #[tokio::test]
    async fn a_reply_to_head_has_the_status_and_no_body_nor_content_type() {
        let response = error_reply(&Method::HEAD, StatusCode::NOT_FOUND, "no route for this request");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(response.headers().get("content-type").is_none());
        assert_eq!(body(response).await, "");
        let get = error_reply(&Method::GET, StatusCode::NOT_FOUND, "no route for this request");
        assert_eq!(get.headers()["content-type"], "application/json");
        assert_eq!(body(get).await, r#"{"error":"no route for this request"}"#);
    }

    #[tokio::test]
    async fn a_problem_that_is_not_plain_text_is_escaped() {
        let text = body(json_error(StatusCode::BAD_REQUEST, "a \"quoted\" \\ path\n")).await;
        assert_eq!(text, r#"{"error":"a \"quoted\" \\ path\n"}"#);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["error"], "a \"quoted\" \\ path\n");
    }
}
