//! The native format: every field, match kinds, weights, rewrites, defaults.

use std::time::Duration;

use gateway_config::{MethodSet, StringMatch};
use http::{HeaderMap, HeaderValue, Method};

use crate::helpers::{get, load};

const FULL: &str = r#"
services:
  proxy:
    v1: [proxy:8090]
  target:
    v1: [target:8090, "10.0.0.2:8090"]
    v2: [target-v2:8090]
  echo: [127.0.0.1:9000]
  v6: "[::1]:9001"

defaults:
  mirror:
    timeout: 2s
    max_in_flight: 10
    max_body: 64KiB
    methods: [GET, POST]
    sample_header: x-b3-traceid
    shadow_host: false

routes:
  - name: api
    hosts: ["*.example.com"]
    match:
      - prefix: /api/
        methods: [get, POST]
        headers:
          x-user: { regex: "u[0-9]+" }
          x-env: prod
        authority: { prefix: "api." }
    rewrite: { uri: /v2/, authority: backend.internal }
    to:
      - { to: target/v1, weight: 90 }
      - { to: target/v2, weight: 10 }
    timeout: 1m30s
    mirrors:
      - to: target/v2
        name: v2
        percent: 12.5
        timeout: 500ms
        max_in_flight: 3
        max_body: 65536
        methods: safe
        shadow_host: true
        sample_header: x-request-id
        headers: { set: { x-env: shadow, authorization: secret }, remove: [cookie] }
        compare:
          ignore_headers: [etag]
          ignore_paths: ["$.timestamp", "$.items[*].id"]
          max_body: 1MiB
          noise_percent: 10
          redact_bodies: true
      - to: echo
  - name: exact
    match: { exact: /exact }
    rewrite: /rewritten
    to: echo
    mirror: proxy/v1
  - name: regex
    match: { regex: "/items/[0-9]+" }
    rewrite: /item
    to: v6
  - to: proxy
"#;

#[test]
fn every_field_is_read() {
    let loaded = load(FULL);
    assert!(loaded.warnings.is_empty());
    let t = &loaded.table;
    assert_eq!(t.routes.len(), 4);
    let api = &t.routes[0];
    assert_eq!(api.name, "api");
    assert_eq!(api.hosts, vec!["*.example.com"]);
    assert_eq!(api.timeout, Some(Duration::from_secs(90)));
    assert_eq!(api.rewrite_uri, Some(gateway_config::UriRewrite::Native("/v2/".to_string())));
    assert_eq!(api.rewrite_authority.as_ref().and_then(|a| a.to_str().ok()), Some("backend.internal"));
    let m = &api.matches[0];
    assert_eq!(m.methods, vec![Method::GET, Method::POST]);
    assert_eq!(m.headers.len(), 2);
    assert!(matches!(&m.authority, Some(StringMatch::Prefix(p)) if p == "api."));
    let weights: Vec<_> = api.destinations.iter().map(|d| (t.destination(d.id).label(), d.weight)).collect();
    assert_eq!(weights, vec![("target/v1".to_string(), 90), ("target/v2".to_string(), 10)]);
    let v1 = t.destination(api.destinations[0].id);
    assert_eq!(v1.endpoints.len(), 2);
    assert_eq!(v1.endpoints[1].authority(), "10.0.0.2:8090");

    let mirror = &api.mirrors[0];
    assert_eq!(mirror.name, "v2");
    assert_eq!(mirror.percent, 12.5);
    assert_eq!(mirror.timeout, Duration::from_millis(500));
    assert_eq!(mirror.max_in_flight, 3);
    assert_eq!(mirror.max_body_bytes, 65536);
    assert_eq!(mirror.methods, MethodSet::Safe);
    assert!(mirror.shadow_host_suffix);
    assert_eq!(mirror.sample_header, "x-request-id");
    assert_eq!(mirror.set_headers.len(), 2);
    assert_eq!(mirror.remove_headers, vec![http::header::COOKIE]);
    let c = mirror.compare.as_ref().unwrap();
    assert_eq!(c.ignore_headers, vec![http::header::ETAG]);
    assert_eq!(c.ignore_paths, vec!["$.timestamp", "$.items[*].id"]);
    assert_eq!(c.max_body_bytes, 1 << 20);
    assert_eq!(c.noise_percent, 10.0);
    assert!(c.redact_bodies);
    // The same destination is shared: target/v2 appears once in the table.
    assert_eq!(mirror.destination, api.destinations[1].id);

    // The second mirror takes the file's defaults.
    let echo = &api.mirrors[1];
    assert_eq!(echo.name, "echo");
    assert_eq!(echo.percent, 100.0);
    assert_eq!(echo.timeout, Duration::from_secs(2));
    assert_eq!(echo.max_in_flight, 10);
    assert_eq!(echo.max_body_bytes, 64 * 1024);
    assert_eq!(echo.methods, MethodSet::List(vec![Method::GET, Method::POST]));
    assert_eq!(echo.sample_header, "x-b3-traceid");
    assert!(!echo.shadow_host_suffix);
    assert!(echo.compare.is_none());

    // Unnamed route: named by position; a host with subsets and no subset takes them all.
    assert_eq!(t.routes[3].name, "route-3");
    assert!(t.routes[3].matches.is_empty());
    assert_eq!(t.destination(t.routes[3].destinations[0].id).label(), "proxy");
    assert_eq!(t.routes[2].name, "regex");
    assert_eq!(t.destination(t.routes[2].destinations[0].id).endpoints[0].authority(), "[::1]:9001");
}

#[test]
fn secret_set_headers_are_redacted_when_serialized() {
    let json = serde_json::to_string(&load(FULL).table).unwrap();
    assert!(json.contains("\"x-env\":\"shadow\""), "{json}");
    assert!(!json.contains("secret"), "{json}");
    assert!(json.contains("<redacted>"));
    assert!(json.contains("\"regex\":\"/items/[0-9]+\""), "{json}");
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn match_conditions() {
    let t = load(FULL).table;
    let ok = headers(&[("x-user", "u42"), ("x-env", "prod")]);
    let find = |m: &Method, path: &str, h: &HeaderMap, a: Option<&str>| t.find(m, path, h, a).map(|hit| hit.route.name.as_str());
    let host = Some("api.example.com:8080");
    assert_eq!(find(&Method::GET, "/api/x", &ok, host), Some("api"));
    assert_eq!(find(&Method::POST, "/api/x?q=1", &ok, host), Some("api"));
    // Method, header regex (full match), missing header, authority and host each exclude it.
    assert_eq!(find(&Method::PUT, "/api/x", &ok, host), Some("route-3"));
    let bad_user = headers(&[("x-user", "u42x"), ("x-env", "prod")]);
    assert_eq!(find(&Method::GET, "/api/x", &bad_user, host), Some("route-3"));
    let missing = headers(&[("x-user", "u1")]);
    assert_eq!(find(&Method::GET, "/api/x", &missing, host), Some("route-3"));
    assert_eq!(find(&Method::GET, "/api/x", &ok, Some("www.example.com")), Some("route-3"));
    assert_eq!(find(&Method::GET, "/api/x", &ok, Some("api.other")), Some("route-3"));
    assert_eq!(find(&Method::GET, "/api/x", &ok, None), Some("route-3"));
    // Several values of one header: matched on their joined value, as Envoy does.
    let multi = headers(&[("x-user", "nobody"), ("x-user", "u7"), ("x-env", "prod")]);
    assert_eq!(find(&Method::GET, "/api/x", &multi, host), Some("route-3"));

    let none = HeaderMap::new();
    assert_eq!(find(&Method::GET, "/exact", &none, None), Some("exact"));
    assert_eq!(find(&Method::GET, "/exact/", &none, None), Some("route-3"));
    assert_eq!(find(&Method::GET, "/items/12", &none, None), Some("regex"));
    assert_eq!(find(&Method::GET, "/items/12/x", &none, None), Some("route-3"));
    assert_eq!(find(&Method::GET, "/anything", &none, None), Some("route-3"));
}

#[test]
fn rewrites_follow_istio() {
    let t = load(FULL).table;
    let ok = headers(&[("x-user", "u42"), ("x-env", "prod")]);
    let api = t.find(&Method::GET, "/api/users", &ok, Some("api.example.com")).unwrap();
    assert_eq!(api.rewrite_path("/api/users?id=3"), "/v2/users?id=3");
    assert_eq!(api.rewrite_path("/api/"), "/v2/");

    let exact = get(&t, "/exact").unwrap();
    assert_eq!(exact.rewrite_path("/exact?a=b"), "/rewritten?a=b");
    let regex = get(&t, "/items/7").unwrap();
    assert_eq!(regex.rewrite_path("/items/7"), "/item");

    let plain = get(&t, "/anything").unwrap();
    assert_eq!(plain.match_index, None);
    assert!(matches!(plain.rewrite_path("/anything?x"), std::borrow::Cow::Borrowed("/anything?x")));
}

#[test]
fn rewrite_without_uri_match_replaces_whole_path() {
    let t = load("services: {a: [a:1]}\nroutes:\n  - match: {methods: [GET]}\n    rewrite: /fixed\n    to: a\n").table;
    let hit = get(&t, "/some/path").unwrap();
    assert_eq!(hit.match_index, Some(0));
    assert_eq!(hit.rewrite_path("/some/path?q"), "/fixed?q");
}

#[test]
fn weights_default_and_zero() {
    let t = load("services: {a: [a:1], b: [b:1]}\nroutes:\n  - to: [a, b]\n  - to: [{to: a, weight: 3}, b]\n").table;
    let w = |r: usize| -> Vec<u32> { t.routes[r].destinations.iter().map(|d| d.weight).collect() };
    assert_eq!(w(0), vec![50, 50]);
    assert_eq!(w(1), vec![3, 0]);
}

#[test]
fn method_set_semantics() {
    assert!(MethodSet::Safe.allows(&Method::GET));
    assert!(MethodSet::Safe.allows(&Method::HEAD));
    assert!(MethodSet::Safe.allows(&Method::OPTIONS));
    assert!(!MethodSet::Safe.allows(&Method::POST));
    assert!(MethodSet::All.allows(&Method::DELETE));
    assert!(!MethodSet::All.allows(&Method::CONNECT));
    assert!(!MethodSet::List(vec![Method::CONNECT]).allows(&Method::CONNECT));
    assert!(MethodSet::List(vec![Method::PUT]).allows(&Method::PUT));
}

#[test]
fn compare_shorthand_and_several_files() {
    let loaded = gateway_config::load_texts([
        ("services.yaml", "services: {a: [a:1], b: [b:1]}\n"),
        ("routes.yaml", "routes:\n  - to: a\n    mirrors: [{to: b, compare: true}]\n"),
    ])
    .unwrap();
    let m = &loaded.table.routes[0].mirrors[0];
    assert_eq!(m.compare.as_ref().unwrap().max_body_bytes, 1 << 20);
    assert_eq!(m.methods, MethodSet::Safe);
}

#[test]
fn a_route_s_retries_are_read_and_an_unknown_condition_is_refused_by_key() {
    let loaded = load(
        "services: {up: [127.0.0.1:9]}\nroutes: [{to: up, retries: {attempts: 1, per_try_timeout: 2s, retry_on: \"connect-failure,503\", backoff: 10ms}}]\n",
    );
    let retries = loaded.table.routes[0].retries.as_ref().expect("retries");
    assert_eq!(retries.retries, Some(1));
    assert_eq!(retries.per_try_timeout, Some(Duration::from_secs(2)));
    let on = retries.on.as_ref().expect("conditions");
    assert!(on.connect_failure && !on.reset && on.status_codes == [503]);
    let err = crate::helpers::load_err(
        "services: {up: [127.0.0.1:9]}\nroutes: [{to: up, retries: {attempts: 1, retry_on: \"connect-failure,sometimes\"}}]\n",
    );
    assert!(err.contains("routes[0].retries.retry_on") && err.contains("sometimes"), "{err}");
    assert!(
        load("services: {up: [127.0.0.1:9]}\nroutes: [{to: up}]\n").table.routes[0].retries.is_none(),
        "no policy: the gateway's default"
    );
}
