//! What the gateway relays from, and sends to, an upstream that frames its answers badly or is
//! asked for a tunnel: raw-socket upstreams (no HTTP library would answer this way) and raw or
//! HTTP/2 clients.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e_tests::eventually;
use e2e_tests::gateway::TestGateway;
use e2e_tests::wire::{raw_exchange, status_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const QUIET: Duration = Duration::from_secs(2);

/// An upstream that answers every request head with `answer` (bytes as written, keep-alive),
/// and every head that carries `Upgrade` with a 101, after which it records whatever arrives
/// as tunnelled bytes. It records every byte it receives, per connection.
#[derive(Clone)]
struct ScriptedUpstream {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<String>>>,
}

impl ScriptedUpstream {
    async fn start(answer: &'static [u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let index = {
                    let mut log = log.lock().expect("log");
                    log.push(String::new());
                    log.len() - 1
                };
                tokio::spawn(serve(stream, answer, log.clone(), index));
            }
        });
        Self { addr, received }
    }

    /// Everything received so far, all connections.
    fn received(&self) -> String {
        self.received.lock().expect("log").concat()
    }
}

async fn serve(mut stream: TcpStream, answer: &'static [u8], log: Arc<Mutex<Vec<String>>>, index: usize) {
    let mut pending = Vec::new();
    let mut tunnel = false;
    let mut buf = [0u8; 8192];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        log.lock().expect("log")[index].push_str(&String::from_utf8_lossy(&buf[..n]));
        if tunnel {
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
            pending.drain(..end + 4);
            let upgrade = head.lines().find_map(|l| l.strip_prefix("upgrade:")).map(|v| v.trim().to_owned());
            if let Some(protocol) = upgrade {
                let switched = format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n");
                let _ = stream.write_all(switched.as_bytes()).await;
                tunnel = true;
                break;
            }
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
    }
}

fn routes(upstream: SocketAddr, extra: &str) -> String {
    format!("services: {{ up: [{upstream}] }}\nroutes:\n  - {{ name: api, match: {{ prefix: /api/ }}, to: up{extra} }}\n")
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// The h2c smuggling bypass: a tunnel the upstream agrees to would carry the requests that
/// follow past routing. `h2c` and unlisted protocols are ordinary requests: the upstream sees no
/// `Upgrade`, and the bytes after the head are a request of their own, routed (here: to no route).
#[tokio::test(flavor = "multi_thread")]
async fn unlisted_upgrades_and_h2c_are_ordinary_requests_and_never_open_a_tunnel() {
    let up = ScriptedUpstream::start(OK).await;
    let gateway = TestGateway::builder().file("g.yaml", &routes(up.addr, "")).start().await;
    for protocol in ["h2c", "foo/1"] {
        let request = format!(
            "GET /api/x HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: {protocol}\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\nGET /internal/{protocol} HTTP/1.1\r\nHost: a.test\r\n\r\n"
        );
        let answer = raw_exchange(gateway.addr, request.as_bytes(), QUIET).await;
        assert_eq!(status_of(&answer), Some(200), "{protocol}: an ordinary request, answered: {answer}");
        assert!(answer.contains("HTTP/1.1 404"), "{protocol}: the bytes after the head are a request, unrouted: {answer}");
        eventually("the upstream saw the request", Duration::from_secs(5), || async { up.received().contains("GET /api/x") }).await;
        let seen = up.received().to_ascii_lowercase();
        assert!(
            !seen.contains("upgrade:") && !seen.contains("http2-settings"),
            "{protocol}: hop-by-hop headers reached the upstream: {seen}"
        );
        assert!(!seen.contains("/internal/"), "{protocol}: bytes after the head reached the upstream: {seen}");
    }
    gateway.stop().await;
}

/// A protocol the route lists is tunnelled (the upstream agreed: the bytes after reach it).
#[tokio::test(flavor = "multi_thread")]
async fn a_listed_upgrade_is_tunnelled() {
    let up = ScriptedUpstream::start(OK).await;
    let gateway = TestGateway::builder().file("g.yaml", &routes(up.addr, ", upgrades: [websocket, foo]")).start().await;
    let request = b"GET /api/x HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: foo/1\r\n\r\nhello tunnel";
    let answer = raw_exchange(gateway.addr, request, QUIET).await;
    assert_eq!(status_of(&answer), Some(101), "{answer}");
    eventually("the tunnelled bytes reach the upstream", Duration::from_secs(5), || async { up.received().contains("hello tunnel") }).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_listing_h2c_is_refused_at_load() {
    let config = routes("127.0.0.1:9".parse().unwrap(), ", upgrades: [h2c]");
    let error = TestGateway::builder().file("g.yaml", &config).try_start().await.err().expect("h2c is refused");
    assert!(error.contains("h2c"), "{error}");
}

/// RFC 9113 section 8.3.1: an HTTP/2 `host` that is not the `:authority` is malformed; the
/// request would be routed by one and served for the other.
#[tokio::test(flavor = "multi_thread")]
async fn an_http2_host_other_than_the_authority_gets_400_and_never_reaches_the_upstream() {
    let up = ScriptedUpstream::start(OK).await;
    let gateway = TestGateway::builder().file("g.yaml", &routes(up.addr, "")).start().await;
    let (same, _, _) = e2e_tests::wire::h2_request(gateway.addr, "/api/same", &[("host", &gateway.addr.to_string())]).await;
    assert_eq!(same, 200, "host equal to :authority is fine");
    let (other, _, body) = e2e_tests::wire::h2_request(gateway.addr, "/api/other", &[("host", "internal.test")]).await;
    assert_eq!(other, 400, "{body:?}");
    assert!(up.received().contains("/api/same") && !up.received().contains("/api/other"), "{}", up.received());
    gateway.stop().await;
}

/// A coding other than chunked is not decoded: passed on, the upstream would read gzip bytes as
/// the content. NGINX answers 501.
#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_coding_other_than_chunked_alone_gets_501() {
    let up = ScriptedUpstream::start(OK).await;
    let gateway = TestGateway::builder().file("g.yaml", &routes(up.addr, "")).start().await;
    let chunked =
        b"POST /api/plain HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
    assert_eq!(status_of(&raw_exchange(gateway.addr, chunked, QUIET).await), Some(200));
    let gzip =
        b"POST /api/gzip HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
    let answer = raw_exchange(gateway.addr, gzip, QUIET).await;
    assert_eq!(status_of(&answer), Some(501), "{answer}");
    assert!(up.received().contains("/api/plain") && !up.received().contains("/api/gzip"), "{}", up.received());
    gateway.stop().await;
}

/// The upstream's answer through the gateway to an HTTP/1.1 (raw) and an HTTP/2 client.
async fn relayed(answer: &'static [u8]) -> (String, (http::StatusCode, http::HeaderMap, bytes::Bytes)) {
    let up = ScriptedUpstream::start(answer).await;
    let gateway = TestGateway::builder().file("g.yaml", &routes(up.addr, "")).start().await;
    let h1 = raw_exchange(gateway.addr, b"GET /api/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", QUIET).await;
    let h2 = e2e_tests::wire::h2_request(gateway.addr, "/api/x", &[]).await;
    gateway.stop().await;
    (h1, h2)
}

fn lengths(h1: &str) -> Vec<String> {
    h1.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("content-length:"))
        .map(str::to_owned)
        .collect()
}

/// RFC 9112 section 6.3: Transfer-Encoding wins; the stale length would cut the body (HTTP/1.1)
/// or be a protocol error (HTTP/2).
#[tokio::test(flavor = "multi_thread")]
async fn content_length_beside_chunked_is_removed_and_the_whole_body_relayed() {
    let (h1, (status, headers, body)) =
        relayed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n").await;
    assert_eq!(status_of(&h1), Some(200), "{h1}");
    assert!(lengths(&h1).is_empty() && h1.ends_with("hello world\r\n0\r\n\r\n"), "{h1}");
    assert_eq!((status, headers.get("content-length"), &body[..]), (http::StatusCode::OK, None, &b"hello world"[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn equal_content_lengths_are_folded_and_different_ones_get_502() {
    let (h1, (status, headers, body)) = relayed(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello").await;
    assert_eq!(lengths(&h1), ["content-length: 5"], "{h1}");
    assert!(h1.ends_with("\r\n\r\nhello"), "{h1}");
    assert_eq!(status, http::StatusCode::OK);
    assert_eq!(
        (headers.get_all("content-length").iter().collect::<Vec<_>>(), &body[..]),
        (vec![&http::HeaderValue::from_static("5")], &b"hello"[..])
    );
    let (h1, (status, _, _)) = relayed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!").await;
    assert_eq!((status_of(&h1), status), (Some(502), http::StatusCode::BAD_GATEWAY), "{h1}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_content_and_not_modified_carry_no_length_to_any_client() {
    for answer in [&b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"[..], b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"]
    {
        let (h1, (status, headers, body)) = relayed(answer).await;
        assert!(matches!(status_of(&h1), Some(204 | 304)) && lengths(&h1).is_empty(), "{h1}");
        assert!(h1.ends_with("\r\n\r\n"), "no body: {h1}");
        assert!(status == 204 || status == 304, "{status}");
        assert_eq!((headers.get("content-length"), body.len()), (None, 0), "{status}");
    }
}

/// `Trailer` is end to end (RFC 9110 section 7.6.1): chunked trailers from an HTTP/1.1 upstream
/// reach an HTTP/1.1 client that asked for them.
#[tokio::test(flavor = "multi_thread")]
async fn chunked_trailers_reach_an_http1_client_that_sent_te_trailers() {
    let up = ScriptedUpstream::start(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n",
    )
    .await;
    let gateway = TestGateway::builder().file("g.yaml", &routes(up.addr, "")).start().await;
    let request = b"GET /api/x HTTP/1.1\r\nHost: a.test\r\nTE: trailers\r\nConnection: close, TE\r\n\r\n";
    let answer = raw_exchange(gateway.addr, request, QUIET).await;
    assert_eq!(status_of(&answer), Some(200), "{answer}");
    assert!(answer.contains("hello") && answer.to_ascii_lowercase().contains("\r\n0\r\nx-checksum: abc123\r\n"), "{answer}");
    gateway.stop().await;
}
