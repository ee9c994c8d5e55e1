//! The route matcher and URI rewriting on arbitrary request heads: never a panic, and a rewrite
//! of a path that matched keeps the query and yields something `http` accepts as a path (or the
//! gateway answers 400, never forwards garbage).
#![no_main]

use std::sync::OnceLock;

use gateway_config::Loaded;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

/// Every kind of match and rewrite the native format has, host-scoped routes included.
const CONFIG: &str = r#"
services:
  a: [127.0.0.1:1]
  b: [127.0.0.1:2]
routes:
  - name: exact
    match: { exact: /exact }
    rewrite: /replaced
    to: b
  - name: regex
    match: { regex: "/items/[0-9]+(/.*)?" }
    rewrite: /i/
    to: b
  - name: header
    hosts: ["*.example.com", "api.test:8080"]
    match: { prefix: /h/, headers: { x-canary: { exact: "yes" } } }
    to: b
  - name: regex-header
    match: { prefix: /r/, headers: { x-user: { regex: "^[a-z]{1,8}$" } } }
    rewrite: /
    to: a
  - name: post
    match: { prefix: /h/, methods: [POST, PUT] }
    to: b
  - name: prefix
    match: { prefix: /svc/ }
    rewrite: /
    to: a
  - name: prefix-no-slash
    match: { prefix: /api }
    rewrite: /v2/api
    to: a
"#;

fn table() -> &'static Loaded {
    static TABLE: OnceLock<Loaded> = OnceLock::new();
    TABLE.get_or_init(|| gateway_config::load_str("fuzz.yaml", CONFIG).expect("the fuzz configuration is valid"))
}

fuzz_target!(|data: &[u8]| {
    // Fields separated by 0xff: method, path-and-query, host, then header name/value pairs.
    let mut fields = data.split(|b| *b == 0xff);
    let method = fields.next().and_then(|m| Method::from_bytes(m).ok()).unwrap_or(Method::GET);
    let Some(path) = fields.next().and_then(|p| std::str::from_utf8(p).ok()) else { return };
    let host = fields.next().and_then(|h| std::str::from_utf8(h).ok());
    let mut headers = HeaderMap::new();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    let loaded = table();
    if let Some(hit) = loaded.table.find(&method, path, &headers, host) {
        let rewritten = hit.rewrite_path(path);
        if let Some((_, query)) = path.split_once('?') {
            assert!(rewritten.ends_with(query), "the query survives the rewrite: {path:?} -> {rewritten:?}");
        }
        let _ = http::uri::PathAndQuery::try_from(rewritten.as_ref());
    }
});
