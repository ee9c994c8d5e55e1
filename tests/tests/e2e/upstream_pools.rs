//! The gateway's own upstream pools, against real peers: an h2c upstream on Python's `h2`
//! (`tests/peers/h2_pool_peer.py`) with a Python `h2` client that stops reading, and an axum
//! upstream that counts its connections. One client never hurts another through a shared
//! upstream connection; answers over the header limits are a 502 for that request alone; HTTP/1.1
//! connections are reused only when their answer was read to the end.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e_tests::gateway::TestGateway;
use e2e_tests::peers::{PeerServer, run_client};
use e2e_tests::upstream::{Behaviour, Upstream};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

const PEER: &str = "h2_pool_peer.py";

fn h2_route(upstream: &str) -> String {
    format!("services:\n  up: {{ protocol: http2, endpoints: [{upstream}] }}\nroutes: [{{ name: up, to: up }}]\n")
}

/// One HTTP/2 connection to the gateway, as a client of its own (accepting heads up to 1 MiB:
/// the limits under test are the gateway's).
async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .max_header_list_size(1 << 20)
        .handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

/// A whole answer over HTTP/2: status, head, body, trailers.
async fn h2_get(addr: SocketAddr, path: &str) -> (StatusCode, HeaderMap, Bytes, Option<HeaderMap>) {
    let mut client = h2_client(addr).await;
    let request = Request::get(format!("http://{addr}{path}")).body(Empty::new()).expect("request");
    let response = client.send_request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("body");
    let trailers = collected.trailers().cloned();
    (parts.status, parts.headers, collected.to_bytes(), trailers)
}

/// The slow reader: three streams of 2 MiB answers whose client never reads them. Before, they
/// held the one shared upstream connection's window (2 MiB streams, 5 MiB connection) and every
/// other client of the destination got nothing; now each stream holds only its own window.
#[tokio::test(flavor = "multi_thread")]
async fn streams_whose_client_stops_reading_stop_only_themselves() {
    if !e2e_tests::python_peer("h2") {
        return;
    }
    let upstream = PeerServer::start(PEER, &[]).await;
    let gateway = TestGateway::builder().file("g.yaml", &h2_route(&upstream.addr())).start().await;
    let addr = gateway.addr.to_string();
    let hold = tokio::spawn(async move { run_client(PEER, &["hold", &addr, "/big?bytes=2097152", "4", "12"]).await });
    // The held streams are open at the upstream (their heads reached the client) before the
    // other client starts.
    e2e_tests::eventually("the four held streams reach the upstream", Duration::from_secs(10), || async {
        upstream.events().iter().filter(|e| e["request"] == "/big").count() >= 4
    })
    .await;
    for i in 0..5 {
        let started = Instant::now();
        let (status, _, body, _) = h2_get(gateway.addr, "/big?bytes=2097152").await;
        let took = started.elapsed();
        assert_eq!((status, body.len()), (StatusCode::OK, 2 << 20), "download {i}");
        assert!(took < Duration::from_secs(2), "download {i} of the other client took {took:?}");
        let started = Instant::now();
        let (status, _, body, _) = h2_get(gateway.addr, "/small").await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
        assert!(started.elapsed() < Duration::from_secs(2), "request {i} of the other client took {:?}", started.elapsed());
    }
    let held = hold.await.expect("join");
    assert_eq!(held["heads"], 4, "the slow client's streams were all answered (and then not read): {held}");
    assert!(held["data_bytes"].as_u64().unwrap_or(0) < 2 << 20, "the slow client did not read its answers: {held}");
    gateway.stop().await;
}

/// A 100 kB answer header is a 502 for that request, while another client's download over the
/// same upstream connection goes on to its end (before: the gateway's h2 client sent GOAWAY on
/// the shared connection and the download was reset).
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_answer_head_is_a_502_for_that_request_alone() {
    if !e2e_tests::python_peer("h2") {
        return;
    }
    let upstream = PeerServer::start(PEER, &[]).await;
    let gateway = TestGateway::builder().file("g.yaml", &h2_route(&upstream.addr())).start().await;
    let mut downloader = h2_client(gateway.addr).await;
    let request = Request::get(format!("http://{}/big?bytes=33554432", gateway.addr)).body(Empty::new()).expect("request");
    let response = downloader.send_request(request).await.expect("the download starts");
    assert_eq!(response.status(), StatusCode::OK);
    let mut download = response.into_body();
    let mut received = 0usize;
    while received < 1 << 20 {
        let frame = download.frame().await.expect("a frame").expect("the download goes on");
        received += frame.data_ref().map_or(0, Bytes::len);
    }
    let (status, _, _, _) = h2_get(gateway.addr, "/head?bytes=100000").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "a 100 kB header is over the 60 KiB limit");
    while let Some(frame) = download.frame().await {
        received += frame.expect("the download is not reset").data_ref().map_or(0, Bytes::len);
    }
    assert_eq!(received, 32 << 20, "the whole download arrived");
    let connections = upstream.events().iter().filter(|e| e.get("connection").is_some()).count();
    assert_eq!(connections, 1, "both went over one upstream connection (the one the oversized answer came on)");
    gateway.stop().await;
}

/// A GOAWAY from the upstream, on the connection another client's download is using: the
/// download finishes on it, and the next request goes to a new connection.
#[tokio::test(flavor = "multi_thread")]
async fn after_an_upstream_goaway_open_streams_finish_and_new_ones_go_to_a_new_connection() {
    if !e2e_tests::python_peer("h2") {
        return;
    }
    let upstream = PeerServer::start(PEER, &[]).await;
    let gateway = TestGateway::builder().file("g.yaml", &h2_route(&upstream.addr())).start().await;
    let mut downloader = h2_client(gateway.addr).await;
    let request = Request::get(format!("http://{}/big?bytes=16777216", gateway.addr)).body(Empty::new()).expect("request");
    let mut download = downloader.send_request(request).await.expect("the download starts").into_body();
    let first = download.frame().await.expect("a frame").expect("data");
    let mut received = first.data_ref().map_or(0, Bytes::len);
    let (status, _, body, _) = h2_get(gateway.addr, "/goaway").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"bye"[..]));
    for i in 0..3 {
        let (status, _, body, _) = h2_get(gateway.addr, "/small").await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]), "request {i} after the GOAWAY");
    }
    while let Some(frame) = download.frame().await {
        received += frame.expect("the download is not reset").data_ref().map_or(0, Bytes::len);
    }
    assert_eq!(received, 16 << 20, "the download finished on the connection that got the GOAWAY");
    let connections = upstream.events().iter().filter(|e| e.get("connection").is_some()).count();
    assert_eq!(connections, 2, "the requests after the GOAWAY went to one new connection");
    gateway.stop().await;
}

/// gRPC's `grpc-status-details-bin` of 20 KiB, in the head or in the trailers, passes (before:
/// the head was a 502 and the trailers vanished: hyper's 16 KiB default).
#[tokio::test(flavor = "multi_thread")]
async fn twenty_kib_headers_and_trailers_pass() {
    if !e2e_tests::python_peer("h2") {
        return;
    }
    let upstream = PeerServer::start(PEER, &[]).await;
    let gateway = TestGateway::builder().file("g.yaml", &h2_route(&upstream.addr())).start().await;
    let (status, headers, body, _) = h2_get(gateway.addr, "/head?bytes=20480").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(headers.get("x-big").map(|v| v.len()), Some(20480));
    let (status, _, body, trailers) = h2_get(gateway.addr, "/trailers?bytes=20480").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    let trailers = trailers.expect("the trailers arrive");
    assert_eq!(trailers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]));
    assert_eq!(trailers.get("grpc-status-details-bin").map(|v| v.len()), Some(20480));
    gateway.stop().await;
}

fn h1_route(upstream: SocketAddr) -> String {
    format!("services: {{ up: [{upstream}] }}\nroutes: [{{ name: up, to: up }}]\n")
}

/// Over HTTP/1.1, too, the limit is the listener's: 20 KiB passes, 100 kB is a 502.
#[tokio::test(flavor = "multi_thread")]
async fn http1_answer_heads_over_the_limit_get_502() {
    for (size, expected) in [(20480, StatusCode::OK), (100_000, StatusCode::BAD_GATEWAY)] {
        let behaviour = Behaviour::Answer { status: StatusCode::OK, body: "ok".into(), headers: vec![("x-big", "h".repeat(size))] };
        let upstream = Upstream::start(behaviour).await;
        let gateway = TestGateway::builder().file("g.yaml", &h1_route(upstream.addr)).start().await;
        let (status, _) = e2e_tests::get(&gateway.url("/x")).await;
        assert_eq!(status.as_u16(), expected.as_u16(), "a {size} byte header");
        gateway.stop().await;
    }
}

/// N requests one after another use one upstream connection, with a body or without one.
#[tokio::test(flavor = "multi_thread")]
async fn sequential_http1_requests_reuse_one_connection() {
    for body in ["hello", ""] {
        let upstream = Upstream::start(Behaviour::ok(body)).await;
        let gateway = TestGateway::builder().file("g.yaml", &h1_route(upstream.addr)).start().await;
        for _ in 0..10 {
            assert_eq!(e2e_tests::get(&gateway.url("/x")).await, (reqwest::StatusCode::OK, body.to_owned()));
        }
        assert_eq!(upstream.requests().len(), 10);
        assert_eq!(upstream.connections(), 1, "10 sequential requests (body {body:?}) over one connection");
        gateway.stop().await;
    }
}

/// A connection whose answer was not read to the end (its client went away) is closed, never
/// handed to the next request with the rest of that answer still in it.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_whose_answer_was_not_read_to_the_end_is_not_reused() {
    let big = "x".repeat(8 << 20);
    let upstream =
        Upstream::start(Behaviour::ByPath { bodies: vec![("/big", big)], default: "small".into(), content_type: "text/plain" }).await;
    let gateway = TestGateway::builder().file("g.yaml", &h1_route(upstream.addr)).start().await;
    assert_eq!(e2e_tests::get(&gateway.url("/small")).await.1, "small");
    assert_eq!(upstream.connections(), 1);
    let mut response = e2e_tests::client().get(gateway.url("/big")).send().await.expect("the download starts");
    let first = response.chunk().await.expect("a chunk").expect("some bytes");
    assert!(!first.is_empty());
    drop(response);
    for _ in 0..3 {
        assert_eq!(e2e_tests::get(&gateway.url("/small")).await, (reqwest::StatusCode::OK, "small".to_owned()));
    }
    assert_eq!(upstream.connections(), 2, "the cut download's connection was closed; the next requests share a new one");
    gateway.stop().await;
}
