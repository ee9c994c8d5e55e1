//! Strict request framing and normalised paths: what a client cannot get past the gateway.
//! Raw bytes on a socket, since well-behaved clients cannot send these requests.

use std::time::Duration;

use e2e_tests::gateway::TestGateway;
use e2e_tests::metrics::metric;
use e2e_tests::upstream::{Behaviour, Upstream};
use e2e_tests::wire::{BodyRecorder, h2_request, raw_exchange, status_of};
use e2e_tests::{client, eventually};
use tokio::io::AsyncWriteExt;

const QUIET: Duration = Duration::from_secs(3);

fn one_route(upstream: std::net::SocketAddr) -> String {
    format!("services: {{ up: [{upstream}] }}\nroutes: [{{ name: framing, to: up }}]\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_or_missing_host_gets_400_and_never_reaches_the_upstream() {
    let up = Upstream::start(Behaviour::ok("ok")).await;
    let gateway = TestGateway::builder().file("g.yaml", &one_route(up.addr)).start().await;
    let good = raw_exchange(gateway.addr, b"GET /one HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", QUIET).await;
    assert_eq!(status_of(&good), Some(200), "{good}");
    assert_eq!(up.requests().len(), 1, "a well-framed request reaches the upstream");

    let two = raw_exchange(gateway.addr, b"GET /two HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n", QUIET).await;
    assert_eq!(status_of(&two), Some(400), "two Host headers (RFC 9112 3.2): {two}");
    let none = raw_exchange(gateway.addr, b"GET /none HTTP/1.1\r\nConnection: close\r\n\r\n", QUIET).await;
    assert_eq!(status_of(&none), Some(400), "HTTP/1.1 without Host: {none}");
    let old = raw_exchange(gateway.addr, b"GET /old HTTP/1.0\r\n\r\n", QUIET).await;
    assert_eq!(old.get(8..12), Some(" 200"), "HTTP/1.0 needs no Host: {old}");
    let uris: Vec<String> = up.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["/one", "/old"]);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_is_refused_with_405() {
    let up = Upstream::start(Behaviour::ok("ok")).await;
    let gateway = TestGateway::builder().file("g.yaml", &one_route(up.addr)).start().await;
    assert_eq!(client().request(reqwest::Method::OPTIONS, gateway.url("/x")).send().await.unwrap().status(), 200);
    let trace = client().request(reqwest::Method::TRACE, gateway.url("/x")).header("cookie", "secret=1").send().await.unwrap();
    assert_eq!(trace.status(), 405);
    assert!(!trace.text().await.unwrap().contains("secret"), "nothing is echoed");
    assert_eq!(up.requests().len(), 1, "only the OPTIONS reached the upstream");
    gateway.stop().await;
}

/// Primary and shadow both record whether the request body they got was whole.
async fn recorded_pair(route: &str) -> (BodyRecorder, BodyRecorder, TestGateway) {
    let primary = BodyRecorder::start().await;
    let shadow = BodyRecorder::start().await;
    let config = format!(
        "services: {{ up: {{ v1: [{}], v2: [{}] }} }}\nroutes: [{{ name: {route}, to: up/v1, mirror: {{ to: up/v2, methods: all }} }}]\n",
        primary.addr, shadow.addr
    );
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    (primary, shadow, gateway)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_upload_reaches_primary_and_shadow_complete() {
    let (primary, shadow, gateway) = recorded_pair("uploads").await;
    let response = client().post(gateway.url("/upload")).body(vec![b'x'; 100_000]).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "received 100000");
    eventually("the shadow got the copy", Duration::from_secs(10), || async { shadow.seen().first().is_some_and(|s| s.outcome.is_some()) })
        .await;
    assert_eq!((shadow.seen()[0].received, shadow.seen()[0].outcome.clone()), (100_000, Some(Ok(()))));
    assert_eq!(primary.seen().len(), 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_chunk_gets_400_and_the_upstream_request_is_reset() {
    let (primary, shadow, gateway) = recorded_pair("uploads").await;
    let request = b"POST /chunks HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n";
    let answer = raw_exchange(gateway.addr, request, QUIET).await;
    assert_eq!(status_of(&answer), Some(400), "a client error, not 502: {answer}");
    for (name, upstream) in [("primary", &primary), ("shadow", &shadow)] {
        eventually(&format!("the {name} request ends"), Duration::from_secs(10), || async {
            upstream.seen().iter().all(|s| s.outcome.is_some())
        })
        .await;
        let seen = upstream.seen();
        assert!(seen.iter().all(|s| matches!(s.outcome, Some(Err(_)))), "{name} took a cut body for a whole one: {seen:?}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_upload_cut_short_is_reset_upstream_never_completed() {
    let (primary, shadow, gateway) = recorded_pair("cut-large").await;
    // Over `requests.buffer_body` (64 KiB): streamed as it arrives.
    let mut socket = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    socket.write_all(b"POST /cut HTTP/1.1\r\nHost: a.test\r\nContent-Length: 200000\r\n\r\n").await.unwrap();
    socket.write_all(&[b'y'; 1000]).await.unwrap();
    eventually("the first bytes reach the primary and the shadow", Duration::from_secs(10), || async {
        [&primary, &shadow].iter().all(|u| u.seen().first().is_some_and(|s| s.received == 1000))
    })
    .await;
    drop(socket);
    for (name, upstream) in [("primary", &primary), ("shadow", &shadow)] {
        eventually(&format!("the {name} request is reset"), Duration::from_secs(10), || async { upstream.seen()[0].outcome.is_some() })
            .await;
        let seen = &upstream.seen()[0];
        assert!(matches!(seen.outcome, Some(Err(_))), "{name} completed a cut upload: {seen:?}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_upload_cut_short_never_reaches_the_upstream() {
    let (primary, shadow, gateway) = recorded_pair("cut-small").await;
    let whole = client().post(gateway.url("/whole")).body(vec![b'y'; 1000]).send().await.unwrap();
    assert_eq!(whole.text().await.unwrap(), "received 1000", "a whole small upload goes through");
    eventually("the copy of the whole one arrives", Duration::from_secs(10), || async { shadow.seen().len() == 1 }).await;

    let mut socket = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    socket.write_all(b"POST /cut HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000\r\n\r\n").await.unwrap();
    socket.write_all(&[b'y'; 100]).await.unwrap();
    drop(socket);
    eventually("the gateway is done with the cut request", Duration::from_secs(10), || async {
        metric("gateway_requests_total").label("route", "cut-small").count_in(&gateway.metrics().await) == 2
    })
    .await;
    let uris = |u: &BodyRecorder| u.seen().into_iter().map(|s| s.uri).collect::<Vec<_>>();
    assert_eq!(
        (uris(&primary), uris(&shadow)),
        (vec!["/whole".to_owned()], vec!["/whole".to_owned()]),
        "read whole first: the cut one went nowhere"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_content_length_gets_400() {
    let up = Upstream::start(Behaviour::ok("ok")).await;
    let gateway = TestGateway::builder().file("g.yaml", &one_route(up.addr)).start().await;
    for request in [
        &b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"[..],
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    ] {
        let answer = raw_exchange(gateway.addr, request, QUIET).await;
        assert_eq!(status_of(&answer), Some(400), "{answer}");
    }
    assert!(up.requests().is_empty());
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_segment_paths_never_reach_an_upstream_outside_their_prefix() {
    let api = Upstream::start(Behaviour::ok("api")).await;
    let public = Upstream::start(Behaviour::ok("public")).await;
    let config = format!(
        "services: {{ api: [{}], public: [{}] }}\nroutes:\n  - {{ name: api, match: {{ prefix: /api/ }}, rewrite: /, to: api }}\n  - {{ name: public, to: public }}\n",
        api.addr, public.addr
    );
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    let answer = raw_exchange(gateway.addr, get("/api/items?q=/../x").as_bytes(), QUIET).await;
    assert!(answer.ends_with("api"), "{answer}");
    assert_eq!(api.requests()[0].uri, "/items?q=/../x", "the route works; the query is not a path");

    for path in ["/api/../secret", "/api/%2e%2e/secret", "/api/.%2E/secret", "/api/v1/../../secret", "/api/./../secret"] {
        let answer = raw_exchange(gateway.addr, get(path).as_bytes(), QUIET).await;
        assert!(answer.ends_with("public"), "{path} must leave the /api/ route: {answer}");
    }
    let normalised = raw_exchange(gateway.addr, get("/api/v1/./../items/%61").as_bytes(), QUIET).await;
    assert!(normalised.ends_with("api"), "{normalised}");

    let api_saw: Vec<String> = api.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(api_saw, ["/items?q=/../x", "/items/a"], "the normalised path is matched, rewritten and sent");
    let public_saw: Vec<String> = public.requests().into_iter().map(|r| r.uri).collect();
    assert!(public_saw.iter().all(|uri| uri == "/secret"), "{public_saw:?}");
    assert_eq!(public_saw.len(), 5);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn escaped_slashes_follow_the_configured_action() {
    let api = Upstream::start(Behaviour::ok("api")).await;
    let config = format!("services: {{ api: [{}] }}\nroutes: [{{ name: api, match: {{ prefix: /api/ }}, to: api }}]\n", api.addr);
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");

    let keep = TestGateway::builder().file("g.yaml", &config).start().await;
    let answer = raw_exchange(keep.addr, get("/api/a%2Fb").as_bytes(), QUIET).await;
    assert_eq!(status_of(&answer), Some(200), "{answer}");
    assert_eq!(api.requests()[0].uri, "/api/a%2Fb", "kept by default (Istio BASE)");
    keep.stop().await;

    let reject = TestGateway::builder().file("g.yaml", &config).setting("requests.path.escaped_slashes", "reject").start().await;
    let answer = raw_exchange(reject.addr, get("/api/a%2Fb").as_bytes(), QUIET).await;
    assert_eq!(status_of(&answer), Some(400), "{answer}");
    reject.stop().await;

    let unescape = TestGateway::builder()
        .file("g.yaml", &config)
        .setting("requests.path.escaped_slashes", "unescape")
        .setting("requests.path.merge_slashes", "true")
        .start()
        .await;
    let answer = raw_exchange(unescape.addr, get("/api/a%2F%2Fb//c").as_bytes(), QUIET).await;
    assert_eq!(status_of(&answer), Some(200), "{answer}");
    let answer = raw_exchange(unescape.addr, get("/api/..%2Fsecret").as_bytes(), QUIET).await;
    assert_eq!(status_of(&answer), Some(404), "unescaped, it leaves the prefix: {answer}");
    assert_eq!(api.requests().len(), 2);
    assert_eq!(api.requests()[1].uri, "/api/a/b/c");
    unescape.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_cookie_fields_reach_an_http1_upstream_as_one_header_joined_by_semicolons() {
    let up = Upstream::start(Behaviour::ok("ok")).await;
    let gateway = TestGateway::builder().file("g.yaml", &one_route(up.addr)).start().await;
    let (status, _, body) = h2_request(gateway.addr, "/cookies", &[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]).await;
    assert_eq!((status.as_u16(), body.as_ref()), (200, &b"ok"[..]));
    let seen = &up.requests()[0].headers;
    let cookies: Vec<&str> = seen.get_all("cookie").iter().filter_map(|v| v.to_str().ok()).collect();
    assert_eq!(cookies, ["a=1; b=2; c=3"], "RFC 9113 8.2.3: one field, joined with \"; \"");
    gateway.stop().await;
}
