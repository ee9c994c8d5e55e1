//! What never reaches a capture file: the values of secret headers (`authorization`,
//! `proxy-authorization`, `cookie`, `set-cookie`, and the configured ones) and of the configured
//! JSON paths in request and response bodies. Values are replaced, not removed, so a reader sees
//! that the request had one.

use bytes::Bytes;
use gateway_config::CaptureSpec;
use http::HeaderMap;
use response_diff::REDACTED;

use super::har::NameValue;

/// The headers as HAR name/value pairs, secret values replaced.
pub fn headers(headers: &HeaderMap, spec: &CaptureSpec) -> Vec<NameValue> {
    headers
        .iter()
        .map(|(name, value)| {
            let secret = http_rules::is_secret_header(name) || spec.redact_headers.contains(name);
            let value = if secret { REDACTED.to_owned() } else { String::from_utf8_lossy(value.as_bytes()).into_owned() };
            NameValue { name: name.as_str().to_owned(), value }
        })
        .collect()
}

/// The body with the configured JSON paths' values replaced, when it is JSON (not compressed);
/// any other body as it is.
pub fn body(body: &Bytes, headers: &HeaderMap, spec: &CaptureSpec) -> Bytes {
    if spec.redact_paths.is_empty() || headers.contains_key(http::header::CONTENT_ENCODING) {
        return body.clone();
    }
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.clone();
    };
    let paths: Vec<response_diff::JsonPath> = spec.redact_paths.iter().map(|p| p.path().clone()).collect();
    if !response_diff::replace_json(&mut value, &paths, &serde_json::Value::String(REDACTED.to_owned())) {
        return body.clone();
    }
    serde_json::to_vec(&value).map(Bytes::from).unwrap_or_else(|_| body.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(config: &str) -> CaptureSpec {
        let yaml = format!(
            "services: {{ s: {{ a: [127.0.0.1:1], b: [127.0.0.1:2] }} }}\nroutes:\n  - {{ name: r, to: s/a, mirrors: [{{ to: s/b, compare: true, capture: {config} }}] }}\n"
        );
        let table = gateway_config::load_str("t.yaml", &yaml).expect("config").table;
        table.routes[0].mirrors[0].capture.clone().expect("a capture")
    }

    #[test]
    fn secret_and_configured_headers_and_json_paths_are_replaced() {
        let spec = spec("{ file: x.har, redact_headers: [x-api-key], redact_paths: [$.password, '$.cards[*].number'] }");
        let mut map = HeaderMap::new();
        for (name, value) in [("authorization", "Bearer s3cret"), ("cookie", "sid=1"), ("x-api-key", "k"), ("accept", "*/*")] {
            map.insert(name, value.parse().unwrap());
        }
        let pairs = headers(&map, &spec);
        let value = |name: &str| pairs.iter().find(|p| p.name == name).map(|p| p.value.as_str());
        assert_eq!(value("authorization"), Some(REDACTED));
        assert_eq!(value("cookie"), Some(REDACTED));
        assert_eq!(value("x-api-key"), Some(REDACTED));
        assert_eq!(value("accept"), Some("*/*"));
        let json = Bytes::from_static(br#"{"user":"ann","password":"hunter2","cards":[{"number":"4111"}]}"#);
        let redacted = body(&json, &HeaderMap::new(), &spec);
        let text = std::str::from_utf8(&redacted).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("4111") && text.contains("ann"), "{text}");
        assert_eq!(body(&Bytes::from_static(b"not json"), &HeaderMap::new(), &spec), Bytes::from_static(b"not json"));
    }

    #[test]
    fn a_capture_without_compare_is_refused_naming_the_key() {
        let yaml = "services: { s: { a: [127.0.0.1:1], b: [127.0.0.1:2] } }\nroutes:\n  - { name: r, to: s/a, mirrors: [{ to: s/b, capture: { file: x.har } }] }\n";
        let Err(error) = gateway_config::load_str("t.yaml", yaml) else { panic!("a capture without compare loads") };
        let error = error.to_string();
        assert!(error.contains("t.yaml") && error.contains("capture") && error.contains("compare"), "{error}");
    }
}
