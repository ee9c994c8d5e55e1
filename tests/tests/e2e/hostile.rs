//! Hostile input (issue 11) at the gateway's data and admin listeners and at a service, over raw
//! TCP: malformed request lines, request smuggling, limits, bad encodings, control characters.
//! Each input gets its status and the listener keeps serving; nothing smuggled reaches an
//! upstream. The table of inputs and statuses is the one in RELIABILITY.md.

use std::net::SocketAddr;
use std::time::Duration;

use e2e_tests::gateway::TestGateway;
use e2e_tests::services::{RunningService, service_settings};
use e2e_tests::upstream::{Behaviour, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A well-formed request sent after each hostile input on the same connection: when the
/// listener kept the connection, its answer is the last status; any desync shows up as a status
/// that is not the sentinel's or as the sentinel swallowed.
const SENTINEL: &[u8] = b"GET /sentinel HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n";

/// Sends `input` then the sentinel on one connection; returns the statuses of every response
/// read until the listener closed the connection.
async fn statuses(addr: SocketAddr, input: &[u8]) -> Vec<u16> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The listener may close as soon as it sees bad input: later writes may fail, that is fine.
    let _ = stream.write_all(input).await;
    let _ = stream.write_all(SENTINEL).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut chunk = [0_u8; 8192];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "connection left hanging after {:?}", String::from_utf8_lossy(input));
    let text = String::from_utf8_lossy(&received);
    text.match_indices("HTTP/1.1 ").filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok()).collect()
}

/// Inputs and the statuses each gets (then the sentinel's 200, when the connection survives).
fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let big_header = format!("GET / HTTP/1.1\r\nhost: test\r\nx-big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let many_headers = format!("GET / HTTP/1.1\r\nhost: test\r\n{}\r\n", (0..101).map(|i| format!("x-h{i}: v\r\n")).collect::<String>());
    let long_uri = format!("GET /{} HTTP/1.1\r\nhost: test\r\n\r\n", "u".repeat(9 * 1024));
    let huge_uri = format!("GET /{} HTTP/1.1\r\nhost: test\r\n\r\n", "u".repeat(64 * 1024));
    let raw = |s: &str| s.as_bytes().to_vec();
    vec![
        ("well-formed request (control)", raw("GET / HTTP/1.1\r\nhost: test\r\n\r\n"), Served),
        ("malformed request line", raw("GARBAGE\r\n\r\n"), Refused(400)),
        ("request line with extra token", raw("GET / HTTP/1.1 extra\r\nhost: test\r\n\r\n"), Refused(400)),
        ("HTTP/0.9 request line", raw("GET /\r\n\r\n"), Refused(400)),
        ("unknown HTTP version", raw("GET / HTTP/9.9\r\nhost: test\r\n\r\n"), Refused(400)),
        ("lowercase method", raw("get / HTTP/1.1\r\nhost: test\r\n\r\n"), Served),
        ("NUL in the request target", raw("GET /a\0b HTTP/1.1\r\nhost: test\r\n\r\n"), Refused(400)),
        ("header line without a colon", raw("GET / HTTP/1.1\r\nhost: test\r\nnocolon\r\n\r\n"), Refused(400)),
        ("space before the colon", raw("GET / HTTP/1.1\r\nhost: test\r\nx-a : b\r\n\r\n"), Refused(400)),
        ("control character in a header name", raw("GET / HTTP/1.1\r\nhost: test\r\nx-\x01a: b\r\n\r\n"), Refused(400)),
        ("control character in a header value", raw("GET / HTTP/1.1\r\nhost: test\r\nx-a: b\x01c\r\n\r\n"), Refused(400)),
        ("NUL in a header value", raw("GET / HTTP/1.1\r\nhost: test\r\nx-a: b\0c\r\n\r\n"), Refused(400)),
        ("bare CR in a header value", raw("GET / HTTP/1.1\r\nhost: test\r\nx-a: b\rc\r\n\r\n"), Refused(400)),
        ("obsolete line folding", raw("GET / HTTP/1.1\r\nhost: test\r\nx-a: b\r\n c\r\n\r\n"), Refused(400)),
        ("underscore in a header name", raw("GET / HTTP/1.1\r\nhost: test\r\nx_forwarded_for: 1.2.3.4\r\n\r\n"), Refused(400)),
        (
            "CL.TE: content-length and chunked",
            raw("POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nG"),
            ServedThenClosed,
        ),
        (
            "TE.CL: chunked body hiding a request",
            raw(
                "POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n26\r\nGET /smuggled HTTP/1.1\r\nhost: test\r\n\r\n\r\n0\r\n\r\n",
            ),
            ServedThenClosed,
        ),
        ("TE.TE: xchunked", raw("POST / HTTP/1.1\r\nhost: test\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n"), Refused(400)),
        (
            "TE.TE: chunked then a second transfer-encoding",
            raw("POST / HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\ntransfer-encoding: x\r\n\r\n0\r\n\r\n"),
            Refused(400),
        ),
        (
            "TE.TE: chunked, identity",
            raw("POST / HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
            Refused(400),
        ),
        ("TE.TE: tab before the value", raw("POST / HTTP/1.1\r\nhost: test\r\ntransfer-encoding:\tchunked\r\n\r\n0\r\n\r\n"), Served),
        (
            "TE.TE: space before the colon",
            raw("POST / HTTP/1.1\r\nhost: test\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n"),
            Refused(400),
        ),
        ("TE.TE: CHUNKED in capitals", raw("POST / HTTP/1.1\r\nhost: test\r\ntransfer-encoding: CHUNKED\r\n\r\n0\r\n\r\n"), Served),
        (
            "transfer-encoding in HTTP/1.0",
            raw("POST / HTTP/1.0\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"),
            Refused(400),
        ),
        ("content-length with a plus sign", raw("POST / HTTP/1.1\r\nhost: test\r\ncontent-length: +2\r\n\r\nab"), Refused(400)),
        ("content-length negative", raw("POST / HTTP/1.1\r\nhost: test\r\ncontent-length: -1\r\n\r\n"), Refused(400)),
        ("content-length with inner space", raw("POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 1 2\r\n\r\n"), Refused(400)),
        ("content-length in hex", raw("POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 0x2\r\n\r\nab"), Refused(400)),
        (
            "content-length overflowing u64",
            raw("POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 99999999999999999999999\r\n\r\n"),
            Refused(400),
        ),
        (
            "two different content-lengths",
            raw("POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc"),
            Refused(400),
        ),
        ("content-length list of equal values", raw("POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 2, 2\r\n\r\nab"), Refused(400)),
        ("header over 60 KiB", big_header.into_bytes(), Refused(431)),
        ("101 header fields", many_headers.into_bytes(), Refused(431)),
        ("request target over 8 KiB", long_uri.into_bytes(), Refused(414)),
        ("request target over 64 KiB", huge_uri.into_bytes(), Refused(414)),
        ("bad percent-encoding", raw("GET /%zz%%/x HTTP/1.1\r\nhost: test\r\n\r\n"), Served),
        ("absolute-form target", raw("GET http://evil.example/abs HTTP/1.1\r\nhost: test\r\n\r\n"), Served),
        ("missing host in HTTP/1.1", raw("GET / HTTP/1.1\r\n\r\n"), Refused(400)),
        ("two host headers", raw("GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n"), Refused(400)),
        ("CONNECT to an internal address", raw("CONNECT 127.0.0.1:22 HTTP/1.1\r\nhost: 127.0.0.1:22\r\n\r\n"), Recorded),
    ]
}

/// What a listener must do with an input.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Answer this status and close the connection (the sentinel is never read).
    Refused(u16),
    /// Serve it as the application would, then the sentinel on the same connection, in sync.
    Served,
    /// Serve it, then close the connection (its framing cannot be trusted for another request).
    ServedThenClosed,
    /// Any answer, as long as the listener stays up: recorded in RELIABILITY.md.
    Recorded,
}
use Expect::{Recorded, Refused, Served, ServedThenClosed};

/// Panics anywhere in the process (a connection task's included), counted by a hook.
fn count_panics() -> &'static std::sync::atomic::AtomicUsize {
    static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            previous(info);
        }));
    });
    &PANICS
}

/// Sends every case to `addr`; checks each against its expectation, with `sentinel` the status
/// the sentinel request gets from this listener. Returns what each got.
async fn try_all(what: &str, addr: SocketAddr, sentinel: u16) -> Vec<(&'static str, Vec<u16>)> {
    let panics = count_panics();
    let mut results = Vec::new();
    let mut wrong = Vec::new();
    for (name, input, expect) in cases() {
        let got = statuses(addr, &input).await;
        eprintln!("{what} | {name} | {got:?}");
        let ok = match expect {
            Refused(status) => got == [status],
            Served => got.len() == 2 && got[1] == sentinel && got[0] < 500,
            ServedThenClosed => got.len() == 1 && got[0] != 400 && got[0] < 500,
            Recorded => true,
        };
        if !ok {
            wrong.push(format!("{name}: expected {expect:?}, got {got:?}"));
        }
        results.push((name, got));
    }
    assert!(wrong.is_empty(), "{what}:\n{}", wrong.join("\n"));
    assert_eq!(statuses(addr, b"").await, [sentinel], "{what} still serves after all the inputs");
    assert_eq!(panics.load(std::sync::atomic::Ordering::SeqCst), 0, "{what}: something panicked");
    results
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_at_the_gateway_gets_its_status_and_smuggles_nothing() {
    let upstream = Upstream::start(Behaviour::ok("ok")).await;
    let config = format!("services: {{ up: [{}] }}\nroutes: [{{ name: all, to: up }}]\n", upstream.addr);
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    try_all("gateway", gateway.addr, 200).await;
    let seen = upstream.requests();
    let uris: Vec<&str> = seen.iter().map(|r| r.uri.as_str()).collect();
    assert!(!uris.iter().any(|uri| uri.contains("smuggled")), "a smuggled request reached the upstream: {uris:?}");
    // TE.CL: the hidden request went to the upstream as what it was, body bytes of one POST.
    assert!(seen.iter().any(|r| r.method == "POST" && r.body.starts_with(b"GET /smuggled")), "{uris:?}");
    let absolute = seen.iter().find(|r| r.uri == "/abs").expect("the absolute-form request was forwarded");
    assert_eq!(absolute.headers["host"], "evil.example", "the absolute-form target's authority wins over Host (RFC 9112 3.2.2)");
    gateway.stop().await;
}

/// A client's broken chunked body is the client's fault: 400, like Envoy, not 502.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_chunked_request_body_at_the_gateway_gets_400() {
    let upstream = Upstream::start(Behaviour::ok("ok")).await;
    let config = format!("services: {{ up: [{}] }}\nroutes: [{{ name: all, to: up }}]\n", upstream.addr);
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    let got = statuses(gateway.addr, b"POST / HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n\r\n").await;
    assert_eq!(got, [400]);
    gateway.stop().await;
}

/// `listener.max_request_body_bytes`: a declared length over it is refused before anything is
/// forwarded; a chunked body that grows past it is cut off and answered 413 as well.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_body_over_the_configured_limit_gets_413_at_the_gateway() {
    let upstream = Upstream::start(Behaviour::ok("ok")).await;
    let config = format!("services: {{ up: [{}] }}\nroutes: [{{ name: all, to: up }}]\n", upstream.addr);
    let gateway = TestGateway::builder().file("g.yaml", &config).setting("listener.max_request_body_bytes", "1024").start().await;
    let within = b"POST /small HTTP/1.1\r\nhost: test\r\ncontent-length: 3\r\n\r\nabc".to_vec();
    assert_eq!(statuses(gateway.addr, &within).await, [200, 200]);
    let declared = b"POST /declared HTTP/1.1\r\nhost: test\r\ncontent-length: 2000\r\n\r\n".to_vec();
    assert_eq!(statuses(gateway.addr, &declared).await, [413]);
    let chunk = "c".repeat(1500);
    let chunked =
        format!("POST /chunked HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len());
    // The whole chunked body was sent: the connection may carry the sentinel after, in sync.
    let got = statuses(gateway.addr, chunked.as_bytes()).await;
    assert!(got == [413] || got == [413, 200], "{got:?}");
    let uris: Vec<String> = upstream.requests().iter().map(|r| r.uri.clone()).collect();
    assert!(!uris.iter().any(|u| u == "/declared"), "the declared-too-large body was never forwarded: {uris:?}");
    assert!(!upstream.requests().iter().any(|r| r.uri == "/chunked" && r.body.len() > 1024), "no more than the limit was forwarded");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_at_the_admin_listener_gets_its_status() {
    let upstream = Upstream::start(Behaviour::ok("ok")).await;
    let config = format!("services: {{ up: [{}] }}\nroutes: [{{ name: all, to: up }}]\n", upstream.addr);
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    try_all("admin", gateway.admin, 404).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_at_a_service_gets_its_status() {
    let service = RunningService::start("target", "v1", &service_settings(&[]), None).await;
    try_all("service", service.addr, 404).await;
    service.stop().await;
}

/// The limits are settings: smaller values than the defaults are enforced, with their statuses,
/// and a request body declared over its limit gets 413 before the service sees it.
#[tokio::test(flavor = "multi_thread")]
async fn configured_listener_limits_give_414_431_413_and_can_allow_underscores() {
    use service_kit::serve::{ListenerLimits, serve_with};
    let limits = ListenerLimits {
        max_uri_bytes: 100,
        max_request_headers_bytes: 1000,
        max_headers: 10,
        max_request_body_bytes: Some(1024),
        reject_underscore_headers: false,
        ..ListenerLimits::default()
    };
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { format!("got {}", body.len()) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve_with(
            listener,
            app,
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
            &limits,
        )
        .await;
    });
    let head = |extra: &str| format!("GET / HTTP/1.1\r\nhost: test\r\n{extra}\r\n").into_bytes();
    let cases: Vec<(&str, Vec<u8>, Vec<u16>)> = vec![
        ("within every limit", head("x_under_score: allowed\r\n"), vec![200, 200]),
        ("target over 100 bytes", format!("GET /{} HTTP/1.1\r\nhost: test\r\n\r\n", "u".repeat(120)).into_bytes(), vec![414]),
        ("headers over 1000 bytes", head(&format!("x-big: {}\r\n", "a".repeat(1200))), vec![431]),
        ("11 header fields", head(&(0..10).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()), vec![431]),
        ("body declared over 1 KiB", b"POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 2000\r\n\r\n".to_vec(), vec![413]),
        ("body within 1 KiB", b"POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 3\r\n\r\nabc".to_vec(), vec![200, 200]),
    ];
    for (name, input, expected) in cases {
        assert_eq!(statuses(addr, &input).await, expected, "{name}");
    }
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 4, "refused requests never reached the service");
    let _ = stop.send(());
    server.await.unwrap();
}
