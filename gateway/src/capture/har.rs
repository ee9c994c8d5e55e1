//! HAR 1.2 (<http://www.softwareishard.com/blog/har-12-spec/>), as far as the gateway writes and
//! `gateway replay` reads it. HAR is what browsers export and what Charles, mitmproxy, k6 and
//! Fiddler import, so a capture opens in a tool the user already has. The gateway's own fields
//! carry the HAR prefix for custom fields, `_`: `_route`, `_mirror`, `_traceId`, `_requestId`,
//! `_result`, `_mismatch` (the differences) and `_shadow` (the shadow's response, a HAR response).
//!
//! gRPC maps as HTTP/2 exchanges: the length-prefixed message frames are the body (base64, as any
//! binary body), `grpc-status` and `grpc-message` are among the response headers (trailers and
//! headers are one list in HAR).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A whole HAR document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Har {
    pub log: Log,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Log {
    pub version: String,
    pub creator: Creator,
    #[serde(default)]
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Creator {
    pub name: String,
    pub version: String,
}

/// One exchange: the request, the primary's response, the shadow's (`_shadow`) when mirrored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// RFC 3339, as HAR requires.
    pub started_date_time: String,
    /// Milliseconds, the primary's time to its response headers.
    pub time: f64,
    pub request: Request,
    pub response: Response,
    #[serde(default)]
    pub cache: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub timings: Timings,
    #[serde(rename = "_route", default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(rename = "_mirror", default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    #[serde(rename = "_traceId", default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(rename = "_requestId", default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// `match`, `mismatch`, `noise` or `skipped`: what the live comparison found.
    #[serde(rename = "_result", default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(rename = "_mismatch", default, skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<Vec<response_diff::Difference>>,
    #[serde(rename = "_shadow", default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Response>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub http_version: String,
    #[serde(default)]
    pub cookies: Vec<serde_json::Value>,
    #[serde(default)]
    pub headers: Vec<NameValue>,
    #[serde(default)]
    pub query_string: Vec<NameValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_data: Option<PostData>,
    #[serde(default = "unknown")]
    pub headers_size: i64,
    #[serde(default = "unknown")]
    pub body_size: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostData {
    #[serde(default)]
    pub mime_type: String,
    #[serde(default)]
    pub text: String,
    /// `base64` for a body that is not UTF-8 (HAR's `postData` has no `encoding`; `content` has).
    #[serde(rename = "_encoding", default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Only the first `max_body` bytes were kept.
    #[serde(rename = "_truncated", default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub status: u16,
    #[serde(default)]
    pub status_text: String,
    #[serde(default)]
    pub http_version: String,
    #[serde(default)]
    pub cookies: Vec<serde_json::Value>,
    #[serde(default)]
    pub headers: Vec<NameValue>,
    pub content: Content,
    #[serde(rename = "redirectURL", default)]
    pub redirect_url: String,
    #[serde(default = "unknown")]
    pub headers_size: i64,
    #[serde(default = "unknown")]
    pub body_size: i64,
    /// The shadow's time to its response headers, in milliseconds (on `_shadow` only).
    #[serde(rename = "_time", default, skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    /// Bytes of the body as answered (before any cut).
    pub size: i64,
    #[serde(default)]
    pub mime_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(rename = "_truncated", default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    #[serde(default)]
    pub send: f64,
    #[serde(default)]
    pub wait: f64,
    #[serde(default)]
    pub receive: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

fn unknown() -> i64 {
    -1
}

/// A body as HAR text: as it is when it is UTF-8, else base64 (`Some("base64")`).
pub fn body_text(body: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), None),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), Some("base64".to_owned())),
    }
}

/// The bytes of a HAR body text.
pub fn body_bytes(text: &str, encoding: Option<&str>) -> Result<Vec<u8>, String> {
    match encoding {
        None | Some("") => Ok(text.as_bytes().to_vec()),
        Some(e) if e.eq_ignore_ascii_case("base64") => {
            base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|e| format!("a base64 body that does not decode: {e}"))
        }
        Some(other) => Err(format!("a body in an unknown encoding {other:?} (HAR knows base64)")),
    }
}

/// `HTTP/1.1`, `HTTP/2.0`: HAR's way of writing a version.
pub fn version_text(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// RFC 3339 in UTC with milliseconds, as HAR's `startedDateTime` wants it.
pub fn rfc3339(at: std::time::SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_as_text_or_base64() {
        assert_eq!(body_text(b"{\"a\":1}"), ("{\"a\":1}".to_owned(), None));
        let (text, encoding) = body_text(&[0, 0xff, 0x10]);
        assert_eq!(encoding.as_deref(), Some("base64"));
        assert_eq!(body_bytes(&text, encoding.as_deref()).unwrap(), vec![0, 0xff, 0x10]);
        assert!(body_bytes("x", Some("gzip")).unwrap_err().contains("unknown encoding"));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(at), "2023-11-14T22:13:20.123Z");
    }
}
