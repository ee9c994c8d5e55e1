//! From a HAR entry to what `gateway replay` sends and what it compares with: the request for
//! the candidate (and baseline), and the recorded primary answer.
//!
//! Reproducible by construction: the request goes as recorded, `x-request-id` included (a
//! service that echoes it answers the same); only what belongs to one connection is left out
//! (hop-by-hop headers, `content-length`, HTTP/2 pseudo-headers), and so are headers the capture
//! redacted (a placeholder would be a wrong credential). A request `Date` is the time of sending.
//! Conditional headers (`If-Modified-Since`, `If-None-Match`) are kept: they name a version of
//! the resource, not the clock, so the candidate should answer them as the primary did.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use response_diff::{Captured, REDACTED};

use crate::capture::har::{self, Entry, NameValue};

/// A recorded exchange, ready to send again.
pub struct Replayable {
    pub method: Method,
    /// Path and query, as recorded.
    pub path_and_query: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The primary's answer as recorded.
    pub recorded: Captured,
    /// The primary's recorded time to its response headers.
    pub recorded_ms: f64,
    pub route: Option<String>,
    pub mirror: Option<String>,
    pub request_id: String,
    pub trace_id: String,
}

impl Replayable {
    pub fn from_entry(entry: &Entry) -> Result<Self, String> {
        let request = &entry.request;
        let method = Method::from_bytes(request.method.as_bytes()).map_err(|_| format!("method {:?} is not one", request.method))?;
        let uri: Uri = request.url.parse().map_err(|e| format!("url {:?}: {e}", request.url))?;
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let version = if request.http_version.eq_ignore_ascii_case("HTTP/2.0") || request.http_version.eq_ignore_ascii_case("h2") {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        let mut headers = HeaderMap::new();
        for NameValue { name, value } in &request.headers {
            if name.starts_with(':') || value == REDACTED {
                continue;
            }
            let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) else {
                continue;
            };
            if http_rules::HOP_BY_HOP.contains(&name)
                || name == http::header::CONTENT_LENGTH
                || name == http::header::HOST && version == http::Version::HTTP_2
            {
                continue;
            }
            headers.append(name, value);
        }
        if headers.contains_key(http::header::DATE) {
            headers.insert(
                http::header::DATE,
                HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())).map_err(|e| e.to_string())?,
            );
        }
        let body = match &request.post_data {
            Some(data) => Bytes::from(har::body_bytes(&data.text, data.encoding.as_deref()).map_err(|e| format!("request body: {e}"))?),
            None => Bytes::new(),
        };
        Ok(Self {
            method,
            path_and_query,
            version,
            headers,
            body,
            recorded: recorded_answer(&entry.response)?,
            recorded_ms: entry.time,
            route: entry.route.clone(),
            mirror: entry.mirror.clone(),
            request_id: entry.request_id.clone().unwrap_or_default(),
            trace_id: entry.trace_id.clone().unwrap_or_default(),
        })
    }

    /// The request to `base` (`http://candidate:8080`).
    pub fn request(&self, base: &Uri) -> Result<Request<http_body_util::Full<Bytes>>, String> {
        let authority = base.authority().ok_or_else(|| format!("{base}: no host in the URL"))?;
        let prefix = base.path().trim_end_matches('/');
        let uri = Uri::builder()
            .scheme(base.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP))
            .authority(authority.clone())
            .path_and_query(format!("{prefix}{}", self.path_and_query))
            .build()
            .map_err(|e| e.to_string())?;
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(uri)
            .version(self.version)
            .body(http_body_util::Full::new(self.body.clone()))
            .map_err(|e| e.to_string())?;
        *request.headers_mut() = self.headers.clone();
        Ok(request)
    }
}

fn recorded_answer(response: &har::Response) -> Result<Captured, String> {
    let mut headers = HeaderMap::new();
    for NameValue { name, value } in &response.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    }
    let body = match &response.content.text {
        Some(text) => har::body_bytes(text, response.content.encoding.as_deref()).map_err(|e| format!("response body: {e}"))?,
        None => Vec::new(),
    };
    Ok(Captured { status: response.status, headers, body: Bytes::from(body), truncated: response.content.truncated })
}

/// What the capture redacted in the recorded answer is not compared: those headers are taken out
/// of both answers, and JSON values recorded as `[redacted]` are set so in the candidate's too.
pub fn align_redactions(recorded: &mut Captured, answer: &mut Captured) {
    let redacted: Vec<HeaderName> =
        recorded.headers.iter().filter(|(_, value)| value.as_bytes() == REDACTED.as_bytes()).map(|(name, _)| name.clone()).collect();
    for name in redacted {
        recorded.headers.remove(&name);
        answer.headers.remove(&name);
    }
    if recorded.headers.contains_key(http::header::CONTENT_ENCODING) || answer.headers.contains_key(http::header::CONTENT_ENCODING) {
        return;
    }
    let (Ok(before), Ok(mut after)) =
        (serde_json::from_slice::<serde_json::Value>(&recorded.body), serde_json::from_slice::<serde_json::Value>(&answer.body))
    else {
        return;
    };
    let mut pointers = Vec::new();
    redacted_pointers(&before, String::new(), &mut pointers);
    let mut changed = false;
    for pointer in pointers {
        if let Some(value) = after.pointer_mut(&pointer) {
            *value = serde_json::Value::String(REDACTED.to_owned());
            changed = true;
        }
    }
    if changed && let Ok(body) = serde_json::to_vec(&after) {
        answer.body = Bytes::from(body);
    }
}

fn redacted_pointers(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) if s == REDACTED => out.push(at),
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                redacted_pointers(child, format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                redacted_pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: serde_json::Value) -> Entry {
        serde_json::from_value(json).expect("a HAR entry")
    }

    #[test]
    fn a_request_goes_as_recorded_without_connection_headers_or_placeholders() {
        let e = entry(serde_json::json!({
            "startedDateTime": "2026-01-01T00:00:00.000Z", "time": 3.5,
            "request": {"method": "GET", "url": "http://shop.example.com/cart?id=1", "httpVersion": "HTTP/1.1",
                "headers": [{"name": "host", "value": "shop.example.com"}, {"name": "authorization", "value": "[redacted]"},
                            {"name": "connection", "value": "keep-alive"}, {"name": "x-request-id", "value": "r-1"},
                            {"name": "if-none-match", "value": "\"v1\""}, {"name": "date", "value": "Thu, 01 Jan 2026 00:00:00 GMT"}]},
            "response": {"status": 200, "content": {"size": 2, "mimeType": "application/json", "text": "{}"}}
        }));
        let replay = Replayable::from_entry(&e).unwrap();
        let request = replay.request(&"http://127.0.0.1:9000/base/".parse().unwrap()).unwrap();
        assert_eq!(request.uri(), "http://127.0.0.1:9000/base/cart?id=1");
        let headers = request.headers();
        assert_eq!(headers["host"], "shop.example.com");
        assert_eq!(headers["x-request-id"], "r-1");
        assert_eq!(headers["if-none-match"], "\"v1\"");
        assert!(!headers.contains_key("authorization") && !headers.contains_key("connection"));
        assert_ne!(headers["date"], "Thu, 01 Jan 2026 00:00:00 GMT", "a request date is the time of sending");
        assert_eq!((replay.recorded.status, replay.recorded_ms), (200, 3.5));
    }

    #[test]
    fn what_the_capture_redacted_is_not_a_difference() {
        let answer = |body: &str, cookie: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("set-cookie", cookie.parse().unwrap());
            Captured { status: 200, headers, body: Bytes::from(body.to_owned()), truncated: false }
        };
        let mut recorded = answer(r#"{"token":"[redacted]","n":1}"#, REDACTED);
        let mut live = answer(r#"{"token":"abc","n":1}"#, "sid=1");
        align_redactions(&mut recorded, &mut live);
        let compared = response_diff::compare(&recorded, &live, &response_diff::DiffOptions::default());
        assert_eq!(compared, response_diff::Comparison::Match);
        let mut recorded = answer(r#"{"token":"[redacted]","n":1}"#, REDACTED);
        let mut changed = answer(r#"{"token":"abc","n":2}"#, "sid=1");
        align_redactions(&mut recorded, &mut changed);
        assert!(
            matches!(response_diff::compare(&recorded, &changed, &response_diff::DiffOptions::default()), response_diff::Comparison::Mismatch(d) if d[0].field == "$.n")
        );
    }
}
