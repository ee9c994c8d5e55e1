//! Property tests (proptest) of the pure parts the request path relies on: URI rewriting,
//! sampling consistency, and the response differ's symmetry.

use bytes::Bytes;
use gateway::mirror::sampled;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use response_diff::{Captured, Comparison, DiffOptions};

const CONFIG: &str = r#"
services:
  a: [127.0.0.1:1]
routes:
  - name: exact
    match: { exact: /exact }
    rewrite: /replaced
    to: a
  - name: slash
    match: { prefix: /svc/ }
    rewrite: /
    to: a
  - name: bare
    match: { prefix: /api }
    rewrite: /v2/api
    to: a
"#;

/// Path segments and query strings as clients send them (percent-escapes included).
fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._~%-]{0,12}"
}

fn query() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-zA-Z0-9=&%._-]{0,20}")
}

proptest! {
    /// Istio's prefix rewrite: the matched prefix is replaced, the rest and the query kept.
    #[test]
    fn a_prefix_rewrite_replaces_exactly_the_matched_prefix(segments in proptest::collection::vec(segment(), 0..5), query in query()) {
        let loaded = gateway_config::load_str("p.yaml", CONFIG).unwrap();
        let rest = segments.join("/");
        let path = format!("/svc/{rest}{}", query.as_ref().map(|q| format!("?{q}")).unwrap_or_default());
        let headers = HeaderMap::new();
        let hit = loaded.table.find(&Method::GET, &path, &headers, None).expect("/svc/ matches");
        prop_assert_eq!(hit.route.name.as_str(), "slash");
        let expected = format!("/{rest}{}", query.as_ref().map(|q| format!("?{q}")).unwrap_or_default());
        let rewritten = hit.rewrite_path(&path).into_owned();
        prop_assert_eq!(rewritten, expected);
    }

    #[test]
    fn a_rewrite_keeps_the_query_and_the_path_after_the_prefix(tail in "(/[a-z0-9]{0,6}){0,3}", query in query()) {
        let loaded = gateway_config::load_str("p.yaml", CONFIG).unwrap();
        let q = query.as_ref().map(|q| format!("?{q}")).unwrap_or_default();
        let path = format!("/api{tail}{q}");
        let headers = HeaderMap::new();
        let hit = loaded.table.find(&Method::GET, &path, &headers, None).expect("/api matches");
        let expected = format!("/v2/api{tail}{q}");
        let rewritten = hit.rewrite_path(&path).into_owned();
        prop_assert_eq!(rewritten, expected);
    }

    /// One key is always sampled alike (replicas and retries agree), and a key sampled at some
    /// percentage stays sampled at any higher one (raising the percentage only adds requests).
    #[test]
    fn sampling_is_a_function_of_the_key_and_monotonic_in_the_percentage(
        key in proptest::collection::vec(any::<u8>(), 0..64), low in 0.0..100.0f64, high in 0.0..100.0f64,
    ) {
        let (low, high) = if low <= high { (low, high) } else { (high, low) };
        prop_assert_eq!(sampled(low, Some(&key)), sampled(low, Some(&key)));
        if sampled(low, Some(&key)) {
            prop_assert!(sampled(high, Some(&key)), "sampled at {low}% but not at {high}%");
        }
        prop_assert!(sampled(100.0, Some(&key)));
        prop_assert!(!sampled(0.0, Some(&key)));
    }

    /// A response compared with itself never mismatches; comparing two responses mismatches in
    /// one direction exactly when it does in the other.
    #[test]
    fn the_differ_is_reflexive_and_symmetric(a in answer(), b in answer()) {
        let (a, b) = (a.captured(), b.captured());
        let options = DiffOptions::default();
        prop_assert!(!matches!(response_diff::compare(&a, &a, &options), Comparison::Mismatch(_)));
        let forward = matches!(response_diff::compare(&a, &b, &options), Comparison::Mismatch(_));
        let backward = matches!(response_diff::compare(&b, &a, &options), Comparison::Mismatch(_));
        prop_assert_eq!(forward, backward);
    }
}

/// An answer as upstreams give it: a few statuses, headers (secret ones included), and bodies
/// that are JSON, text or bytes. (`Captured` has no `Debug`, on purpose: it holds secrets.)
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Answer {
    fn captured(&self) -> Captured {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                map.append(HeaderName::from_static(name), value);
            }
        }
        Captured { status: self.status, headers: map, body: Bytes::from(self.body.clone()), truncated: false }
    }
}

fn answer() -> impl Strategy<Value = Answer> {
    let status = prop_oneof![Just(200_u16), Just(404), Just(500)];
    let header = (prop_oneof![Just("content-type"), Just("x-version"), Just("set-cookie"), Just("etag")], "[a-z0-9/]{0,8}");
    let json = proptest::collection::btree_map(
        "[a-z]{1,4}",
        prop_oneof![any::<i32>().prop_map(|n| n.to_string()), "\"[a-z]{0,5}\"".prop_map(String::from)],
        0..4,
    )
    .prop_map(|m| format!("{{{}}}", m.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(",")));
    let body = prop_oneof![
        json,
        "[a-z \n]{0,40}",
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
    ];
    (status, proptest::collection::vec(header, 0..4), body).prop_map(|(status, headers, body)| Answer { status, headers, body })
}
