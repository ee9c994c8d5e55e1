//! The gateway against misbehaving upstreams: routing, rewriting, errors, mirroring, reloads.

use std::time::Duration;

use e2e_tests::gateway::TestGateway;
use e2e_tests::metrics::metric;
use e2e_tests::upstream::{Behaviour, Upstream};
use e2e_tests::{client, eventually, get};
use gateway::admin::api::{DropReason, ShadowOutcome};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn routes_match_by_prefix_exact_regex_method_and_header_and_rewrite_like_istio() {
    let a = Upstream::start(Behaviour::ok("a")).await;
    let b = Upstream::start(Behaviour::ok("b")).await;
    let config = format!(
        r#"
services:
  a: [{a}]
  b: [{b}]
routes:
  - name: exact
    match: {{ exact: /exact }}
    rewrite: /replaced
    to: b
  - name: regex
    match: {{ regex: "/items/[0-9]+" }}
    to: b
  - name: header
    match: {{ prefix: /h/, headers: {{ x-canary: {{ exact: "yes" }} }} }}
    to: b
  - name: post
    match: {{ prefix: /h/, methods: [POST] }}
    to: b
  - name: prefix
    match: {{ prefix: /svc/ }}
    rewrite: /
    to: a
"#,
        a = a.addr,
        b = b.addr
    );
    let gateway = TestGateway::builder().file("gateway.yaml", &config).start().await;

    assert_eq!(get(&gateway.url("/svc/index?q=1")).await, (StatusCode::OK, "a".into()));
    assert_eq!(a.requests()[0].uri, "/index?q=1", "the matched prefix is replaced, the query kept");
    assert_eq!(get(&gateway.url("/exact")).await.1, "b");
    assert_eq!(b.requests()[0].uri, "/replaced");
    assert_eq!(get(&gateway.url("/items/42")).await.1, "b");
    assert_eq!(get(&gateway.url("/items/x")).await.0, StatusCode::NOT_FOUND);
    let canary = client().get(gateway.url("/h/x")).header("x-canary", "yes").send().await.unwrap();
    assert_eq!(canary.text().await.unwrap(), "b");
    assert_eq!(get(&gateway.url("/h/x")).await.0, StatusCode::NOT_FOUND, "no header, GET: no route");
    assert_eq!(client().post(gateway.url("/h/x")).send().await.unwrap().text().await.unwrap(), "b");
    let (status, body) = get(&gateway.url("/nothing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "no route for this request");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_requests_get_proxy_headers_and_lose_hop_by_hop_ones() {
    let up = Upstream::start(Behaviour::ok("ok")).await;
    let config = format!("services: {{ up: [{}] }}\nroutes: [{{ to: up }}]\n", up.addr);
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    client()
        .get(gateway.url("/x"))
        .header("connection", "x-private")
        .header("x-private", "1")
        .header("te", "gzip, trailers")
        .send()
        .await
        .unwrap();
    let seen = &up.requests()[0].headers;
    assert!(seen.contains_key("x-request-id"), "a request id is added");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert!(!seen.contains_key("x-private"));
    assert_eq!(seen["te"], "trailers", "TE is hop-by-hop but for `trailers`, which gRPC needs end to end (as Envoy)");
    assert_eq!(seen["host"], gateway.addr.to_string(), "the client's Host is kept, as Envoy does");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_request_body_streams_to_the_primary_intact() {
    let up = Upstream::start(Behaviour::ok("got it")).await;
    let config = format!("services: {{ up: [{}] }}\nroutes: [{{ to: up }}]\n", up.addr);
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    let body: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let response = client().post(gateway.url("/upload")).body(body.clone()).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "got it");
    assert_eq!(up.requests()[0].body.as_ref(), body.as_slice());
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_failures_get_502_and_504_with_json_bodies() {
    let refused = Upstream::refusing().await;
    let reset = Upstream::start(Behaviour::Reset).await;
    let hung = Upstream::start(Behaviour::Hang).await;
    let config = format!(
        r#"
services:
  refused: [{refused}]
  reset: [{reset}]
  hung: [{hung}]
routes:
  - {{ name: refused, match: {{ prefix: /refused }}, to: refused }}
  - {{ name: reset, match: {{ prefix: /reset }}, to: reset }}
  - {{ name: hung, match: {{ prefix: /hung }}, to: hung, timeout: 300ms }}
"#,
        reset = reset.addr,
        hung = hung.addr
    );
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    for (path, status, error) in [
        ("/refused", StatusCode::BAD_GATEWAY, "upstream unavailable"),
        ("/reset", StatusCode::BAD_GATEWAY, "upstream unavailable"),
        ("/hung", StatusCode::GATEWAY_TIMEOUT, "upstream did not answer within the route timeout"),
    ] {
        let (got, body) = get(&gateway.url(path)).await;
        assert_eq!(got, status, "{path}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], error, "{path}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn several_mirrors_get_marked_copies_with_their_header_changes() {
    let primary = Upstream::start(Behaviour::ok("primary")).await;
    let m1 = Upstream::start(Behaviour::ok("m1")).await;
    let m2 = Upstream::start(Behaviour::ok("m2")).await;
    let never = Upstream::start(Behaviour::ok("never")).await;
    let config = format!(
        r#"
services:
  app:
    v1: [{primary}]
    v2: [{m1}]
    v3: [{m2}]
    v4: [{never}]
routes:
  - name: app
    to: app/v1
    mirrors:
      - to: app/v2
        name: v2
        headers: {{ remove: [authorization], set: {{ x-env: shadow }} }}
      - to: app/v3
        shadow_host: false
      - to: app/v4
        percent: 0
"#,
        primary = primary.addr,
        m1 = m1.addr,
        m2 = m2.addr,
        never = never.addr
    );
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    let response =
        client().get(gateway.url("/index")).header("host", "app.example:8080").header("authorization", "Bearer t").send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "primary");

    let copy = &m1.wait_for(1, Duration::from_secs(5)).await[0];
    assert_eq!(copy.uri, "/index");
    assert_eq!(copy.headers["host"], "app.example-shadow:8080");
    assert!(copy.headers["x-shadow"].to_str().unwrap().starts_with("v2; t="), "the mirror's name, signed");
    assert_eq!(copy.headers["x-env"], "shadow");
    assert!(!copy.headers.contains_key("authorization"));
    let plain = &m2.wait_for(1, Duration::from_secs(5)).await[0];
    assert_eq!(plain.headers["host"], "app.example:8080");
    assert!(plain.headers["x-shadow"].to_str().unwrap().starts_with("app/v3; t="));
    assert_eq!(plain.headers["authorization"], "Bearer t");
    let seen_by_primary = &primary.requests()[0].headers;
    assert!(!seen_by_primary.contains_key("x-shadow"));
    assert_eq!(
        seen_by_primary["x-request-id"], copy.headers["x-request-id"],
        "the copy keeps the request id, so it can be matched with the primary"
    );
    // The copies of one request are spawned together: the other two have arrived and been
    // counted, so a copy at percent 0 would have been counted too.
    eventually("both sampled copies counted", Duration::from_secs(10), || async {
        gateway.mirrors().await.mirrors.iter().filter(|m| m.copies[ShadowOutcome::Ok] == 1).count() == 2
    })
    .await;
    let report = gateway.mirrors().await;
    let v4 = report.mirror("app/v4").ok();
    assert!(v4.is_none_or(|v4| v4.copies.sent == 0), "percent 0 copies nothing: {v4:?}");
    assert!(never.requests().is_empty(), "percent 0 copies nothing");
    gateway.stop().await;
}

/// A mirror copies safe methods only, unless it says otherwise: copies of writes would hit
/// shared state twice. (Loops and spoofed markers: `shadow.rs`.)
#[tokio::test(flavor = "multi_thread")]
async fn writes_are_not_mirrored_by_default() {
    let primary = Upstream::start(Behaviour::ok("primary")).await;
    let shadow = Upstream::start(Behaviour::ok("shadow")).await;
    let config =
        format!("services: {{ app: {{ v1: [{}], v2: [{}] }} }}\nroutes: [{{ to: app/v1, mirror: app/v2 }}]\n", primary.addr, shadow.addr);
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    client().post(gateway.url("/b")).body("write").send().await.unwrap();
    client().delete(gateway.url("/b")).send().await.unwrap();
    client().get(gateway.url("/c")).send().await.unwrap();
    let copies = shadow.wait_for(1, Duration::from_secs(5)).await;
    // The copy of the last request has been answered and counted; one of an earlier request
    // would have been spawned before it.
    let report = gateway.wait_mirror("the copy counted", "app/v2", |m| m.copies[ShadowOutcome::Ok] == 1).await;
    assert_eq!(report.copies.sent, 1, "only the GET was copied: {copies:?}");
    assert_eq!(shadow.requests().len(), 1, "only the GET was copied: {copies:?}");
    assert_eq!(shadow.requests()[0].uri, "/c");
    assert_eq!(primary.requests().len(), 3);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_are_mirrored_up_to_the_cap() {
    let primary = Upstream::start(Behaviour::ok("primary")).await;
    let shadow = Upstream::start(Behaviour::ok("shadow")).await;
    let config = format!(
        "services: {{ app: {{ v1: [{}], v2: [{}] }} }}\nroutes: [{{ name: app, to: app/v1, mirrors: [{{ to: app/v2, name: v2, methods: all, max_body: 1KiB }}] }}]\n",
        primary.addr, shadow.addr
    );
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    let small = "x".repeat(600);
    let large = "y".repeat(5000);
    client().post(gateway.url("/small")).body(small.clone()).send().await.unwrap();
    let response = client().post(gateway.url("/large")).body(large.clone()).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "primary", "the primary is untouched by the cap");
    let copies = shadow.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(copies[0].body, small.as_bytes());
    assert_eq!(primary.requests()[1].body, large.as_bytes());
    gateway
        .wait_mirror("the over-cap copy counted as dropped", "v2", |m| m.copies[ShadowOutcome::Dropped(DropReason::BodyOverCap)] == 1)
        .await;
    assert_eq!(shadow.requests().len(), 1, "the over-cap copy is dropped");
    gateway.stop().await;
}

/// The NGINX failure mode: a hung mirror must not hold the next request on a keep-alive
/// connection. Behaviour only here (no timing); the rates are measured by the benchmark.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_mirror_never_holds_sequential_keep_alive_requests() {
    let primary = Upstream::start(Behaviour::ok("primary")).await;
    let hung = Upstream::start(Behaviour::Hang).await;
    let config = format!(
        "services: {{ app: {{ v1: [{}], v2: [{}] }} }}\nroutes: [{{ name: app, to: app/v1, mirrors: [{{ to: app/v2, name: hung, timeout: 300ms, max_in_flight: 8 }}] }}]\n",
        primary.addr, hung.addr
    );
    // Ejection off: on a slow machine the first timeouts come while requests still flow, and the
    // copies after them would be dropped as `shadow_ejected` (faults.rs tests that), not at the cap.
    let gateway = TestGateway::builder().file("g.yaml", &config).setting("shadow.ejection.consecutive_failures", "0").start().await;
    // One client with one pooled connection: every request reuses it.
    let client = e2e_tests::client_builder().pool_max_idle_per_host(1).build().unwrap();
    for i in 0..100 {
        let response = client.get(gateway.url(&format!("/r/{i}"))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "primary");
    }
    assert_eq!(primary.requests().len(), 100);
    // Every copy ends as a timeout or a drop at the in-flight cap; none is lost or queued.
    let report =
        gateway.wait_mirror("every copy accounted for", "hung", |m| m.copies[ShadowOutcome::Timeout] + m.copies.dropped() == 100).await;
    let copies = &report.copies;
    assert_eq!(copies[ShadowOutcome::Timeout] + copies.dropped(), 100, "{copies:?}");
    assert_eq!(copies.dropped(), copies[ShadowOutcome::Dropped(DropReason::InFlightCap)]);
    assert_eq!(copies[ShadowOutcome::Ok], 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_swaps_the_routes_and_an_invalid_one_keeps_the_old() {
    let a = Upstream::start(Behaviour::ok("a")).await;
    let b = Upstream::start(Behaviour::ok("b")).await;
    let config = |to: &str| format!("services: {{ a: [{}], b: [{}] }}\nroutes: [{{ to: {to} }}]\n", a.addr, b.addr);
    let gateway = TestGateway::builder().file("g.yaml", &config("a")).start().await;
    assert_eq!(get(&gateway.url("/")).await.1, "a");

    std::fs::write(&gateway.files[0], config("b")).unwrap();
    assert_eq!(gateway.reloader.reload(), Ok(1));
    assert_eq!(get(&gateway.url("/")).await.1, "b");

    std::fs::write(&gateway.files[0], config("c")).unwrap();
    let error = gateway.reloader.reload().unwrap_err();
    assert!(error.contains("g.yaml") && error.contains("\"c\""), "{error}");
    assert_eq!(get(&gateway.url("/")).await.1, "b", "the previous table keeps serving");
    let config = gateway.config().await;
    assert_eq!(config["reloads"], 1);
    assert!(config["last_reload_error"].as_str().unwrap().contains("g.yaml"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_serves_health_config_and_metrics() {
    let a = Upstream::start(Behaviour::ok("a")).await;
    let config = format!("services: {{ a: [{}] }}\nroutes: [{{ name: only, match: {{ prefix: /x }}, to: a }}]\n", a.addr);
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    get(&gateway.url("/x")).await;
    assert_eq!(get(&gateway.admin_url("/healthz")).await, (StatusCode::OK, "ok".into()));
    assert_eq!(get(&gateway.admin_url("/readyz")).await.0, StatusCode::OK);
    let config = gateway.config().await;
    assert_eq!(config["routes"][0]["name"], "only");
    assert_eq!(config["destinations"][0]["endpoints"][0]["port"], a.addr.port());
    metric("gateway_requests_total")
        .label("route", "only")
        .label("destination", "a")
        .label("status", 200)
        .assert_in(&gateway.metrics().await);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_configuration_is_refused_with_file_and_key() {
    let error = TestGateway::builder().file("bad.yaml", "routes:\n  - to: nowhere/v9\n").try_start().await.err().expect("refused");
    assert!(error.starts_with("bad.yaml") || error.contains("bad.yaml:"), "{error}");
    assert!(error.contains("nowhere"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_configuration_file_is_picked_up_by_the_watcher() {
    let a = Upstream::start(Behaviour::ok("a")).await;
    let b = Upstream::start(Behaviour::ok("b")).await;
    let config = |to: &str| format!("services: {{ a: [{}], b: [{}] }}\nroutes: [{{ to: {to} }}]\n", a.addr, b.addr);
    let gateway = TestGateway::builder().file("g.yaml", &config("a")).start().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(gateway.reloader.clone().watch(Duration::from_millis(50), async {
        let _ = stopped.await;
    }));
    assert_eq!(get(&gateway.url("/")).await.1, "a");

    std::fs::write(&gateway.files[0], config("b")).unwrap();
    eventually("the file change was reloaded", Duration::from_secs(10), || async { get(&gateway.url("/")).await.1 == "b" }).await;
    let _ = stop.send(());
    watcher.await.unwrap();
    gateway.stop().await;
}

/// Envoy and Linkerd keep upstream pools across configuration changes: a reload that leaves a
/// destination's endpoints alone must not open new connections to it.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_keeps_a_destination_keeps_its_warm_connections() {
    let up = Upstream::start(Behaviour::ok("up")).await;
    let config = |route: &str| format!("services: {{ up: [{}] }}\nroutes: [{{ name: {route}, to: up }}]\n", up.addr);
    let gateway = TestGateway::builder().file("g.yaml", &config("before")).start().await;
    for _ in 0..3 {
        assert_eq!(get(&gateway.url("/x")).await.1, "up");
    }
    let warm = up.connections();
    assert!(warm >= 1, "the upstream was reached");

    std::fs::write(&gateway.files[0], config("renamed")).unwrap();
    assert_eq!(gateway.reloader.reload(), Ok(1));
    for _ in 0..3 {
        assert_eq!(get(&gateway.url("/x")).await.1, "up");
    }
    let config_now = gateway.config().await;
    assert_eq!(config_now["routes"][0]["name"], "renamed", "the reload took effect");
    assert_eq!(up.connections(), warm, "no new upstream connection after a reload that kept the destination");
    gateway.stop().await;
}
