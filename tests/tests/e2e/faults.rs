//! The fault matrix (issue 11): mirrors and primaries that misbehave in every way the repository's
//! test upstreams can, on real sockets. A mirror's fault never changes the primary's answer, is
//! counted in `/mirrors`, and leaves nothing behind (every copy ended, descriptors and tasks back
//! to their level); a primary's fault gets its status, or a cleanly closed connection.

use std::time::Duration;

use e2e_tests::gateway::TestGateway;
use e2e_tests::leaks::Level;
use e2e_tests::metrics::metric;
use e2e_tests::upstream::{Behaviour, Fault, FaultyUpstream, Upstream};
use e2e_tests::{client, eventually};
use gateway::admin::api::{DropReason, MirrorsDocument, ShadowOutcome};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle pooled upstream connections close quickly, so "back to the level" is reached in a test;
/// every copy is sent (no ejection), so that each fault is met on every request.
const SETTINGS: &[(&str, &str)] = &[("upstream.idle_timeout", "200ms"), ("shadow.ejection.consecutive_failures", "0")];

/// Copies of mirror `name` that have ended, whatever the way (0 before it has a report): once
/// it equals the copies planned, none is in flight.
fn ended(report: &MirrorsDocument, name: &str) -> u64 {
    report.mirror(name).map_or(0, |m| m.copies.total_ended())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_misbehaving_mirror_never_changes_the_primary_answer_is_counted_and_leaves_nothing_behind() {
    let primary = Upstream::start(Behaviour::ok("primary")).await;
    let slow = Upstream::start(Behaviour::Slow { delay: Duration::from_millis(150), body: "slow".into() }).await;
    let hung = FaultyUpstream::start(Fault::HangUntilClosed).await;
    let refused = Upstream::refusing().await;
    let reset = Upstream::start(Behaviour::Reset).await;
    let garbage = FaultyUpstream::start(Fault::Garbage).await;
    let mid_body = FaultyUpstream::start(Fault::CloseMidBody).await;
    let early = FaultyUpstream::start(Fault::AnswerBeforeBody).await;
    let config = format!(
        r#"
services:
  app:
    v1: [{primary}]
    slow: [{slow}]
    hung: [{hung}]
    refused: [{refused}]
    reset: [{reset}]
    garbage: [{garbage}]
    midbody: [{mid_body}]
    early: [{early}]
defaults:
  mirror: {{ methods: all, timeout: 2s, max_in_flight: 1000 }}
routes:
  - name: app
    to: app/v1
    mirrors:
      - {{ to: app/slow, name: slow }}
      - {{ to: app/hung, name: hung, timeout: 300ms }}
      - {{ to: app/refused, name: refused }}
      - {{ to: app/reset, name: reset }}
      - {{ to: app/garbage, name: garbage }}
      - {{ to: app/midbody, name: midbody }}
      - {{ to: app/early, name: early }}
"#,
        primary = primary.addr,
        slow = slow.addr,
        hung = hung.addr,
        reset = reset.addr,
        garbage = garbage.addr,
        mid_body = mid_body.addr,
        early = early.addr,
    );
    let gateway = TestGateway::builder().file("g.yaml", &config).settings(SETTINGS).start().await;
    let level = Level::now();

    // Reads and writes with a body: the early answer then lands while the body is still coming.
    const REQUESTS: u64 = 16;
    let body = "b".repeat(256 * 1024);
    {
        let client = client();
        for i in 0..REQUESTS {
            let request = if i % 2 == 0 {
                client.get(gateway.url(&format!("/read/{i}")))
            } else {
                client.post(gateway.url(&format!("/write/{i}"))).body(body.clone())
            };
            let response = request.send().await.expect("the primary answers");
            assert_eq!(response.status(), StatusCode::OK, "request {i}");
            assert_eq!(response.text().await.unwrap(), "primary", "request {i}: the primary's answer, untouched");
        }
    }
    assert_eq!(primary.requests().len() as u64, REQUESTS);

    eventually("every copy of every mirror has ended (none in flight)", Duration::from_secs(30), || async {
        let report = gateway.mirrors().await;
        report.mirrors.len() == 7 && report.mirrors.iter().all(|m| m.copies.total_ended() == REQUESTS)
    })
    .await;
    let report = gateway.mirrors().await;
    let copies = |name: &str| report.mirror(name).expect("a mirror of that name").copies.clone();
    assert_eq!(copies("slow")[ShadowOutcome::Ok], REQUESTS, "slow but within its timeout: {:?}", copies("slow"));
    let hung_copies = copies("hung");
    assert_eq!(hung_copies[ShadowOutcome::Timeout], REQUESTS, "hung: {hung_copies:?}");
    for name in ["refused", "reset", "garbage", "midbody"] {
        assert_eq!(copies(name)[ShadowOutcome::Error], REQUESTS, "{name}: {:?}", copies(name));
    }
    // An answer before the body is a valid HTTP exchange for reads; for writes the reset that
    // follows may reach the gateway first. Either way it is counted, never lost.
    let early_copies = copies("early");
    assert_eq!(early_copies[ShadowOutcome::Ok] + early_copies[ShadowOutcome::Error], REQUESTS, "early: {early_copies:?}");
    assert!(early_copies[ShadowOutcome::Ok] >= REQUESTS / 2, "reads get the early answer: {early_copies:?}");

    // Every misbehaving upstream saw its copies (the faults happened), and the gateway gave up
    // every connection to the hung one.
    assert!(hung.heads() as u64 >= 1 && garbage.heads() as u64 == REQUESTS && mid_body.heads() as u64 == REQUESTS);
    eventually("the gateway closed every connection to the hung mirror", Duration::from_secs(20), || async {
        hung.open() == 0 && hung.closed_by_peer() == hung.accepted()
    })
    .await;
    level.wait_back("descriptors and tasks after the faulty copies", Duration::from_secs(30)).await;
    gateway.stop().await;
}

/// A shadow that stops answering is ejected after `consecutive_failures` copies in a row, as
/// Envoy's outlier detection ejects a host: copies are then dropped without a connection attempt
/// (they cost the live side nothing), counted as `shadow_ejected` and as unanswered for the
/// verdict; when the ejection time is up, copies probe it again. A shadow that answers, even
/// with 500, is never ejected: its answers are evidence.
#[tokio::test(flavor = "multi_thread")]
async fn a_shadow_that_stops_answering_is_ejected_and_probed_again_later() {
    let primary = Upstream::start(Behaviour::ok("primary")).await;
    let garbage = FaultyUpstream::start(Fault::Garbage).await;
    let failing =
        Upstream::start(Behaviour::Answer { status: StatusCode::INTERNAL_SERVER_ERROR, body: "v2 broke".into(), headers: vec![] }).await;
    let config = format!(
        r#"
services:
  app:
    v1: [{primary}]
    garbage: [{garbage}]
    failing: [{failing}]
routes:
  - name: app
    to: app/v1
    mirrors:
      - {{ to: app/garbage, name: garbage }}
      - {{ to: app/failing, name: failing }}
"#,
        primary = primary.addr,
        garbage = garbage.addr,
        failing = failing.addr,
    );
    let settings = [("shadow.ejection.consecutive_failures", "3"), ("shadow.ejection.base_time", "1s")];
    let gateway = TestGateway::builder().file("g.yaml", &config).settings(&settings).start().await;
    let client = client();
    let send = |n: u64| {
        let client = client.clone();
        let gateway = &gateway;
        async move {
            for i in 0..n {
                let response = client.get(gateway.url(&format!("/read/{i}"))).send().await.expect("the primary answers");
                assert_eq!(response.status(), StatusCode::OK);
            }
        }
    };
    // One at a time, each copy ended before the next request: the failures are in a row.
    let sent = std::cell::Cell::new(0_u64);
    let send_one = || async {
        send(1).await;
        sent.set(sent.get() + 1);
        eventually("the copies of this request ended", Duration::from_secs(10), || async {
            let report = gateway.mirrors().await;
            ended(&report, "garbage") == sent.get() && ended(&report, "failing") == sent.get()
        })
        .await;
    };
    for _ in 1..=10 {
        send_one().await;
    }
    let report = gateway.mirrors().await;
    let copies = report.mirror("garbage").expect("mirror garbage").copies.clone();
    let ejected = ShadowOutcome::Dropped(DropReason::ShadowEjected);
    assert_eq!((copies[ShadowOutcome::Error], copies[ejected]), (3, 7), "{copies:?}");
    assert_eq!(garbage.heads(), 3, "no copy reaches an ejected shadow");
    let failing_copies = report.mirror("failing").expect("mirror failing").copies.clone();
    assert_eq!((failing_copies[ShadowOutcome::Ok], failing_copies.dropped()), (10, 0), "{failing_copies:?}");
    assert_eq!(failing.requests().len(), 10, "a shadow that answers 500 is never ejected");
    let drops = metric("gateway_mirror_copies_total").label("mirror", "garbage").label("reason", "shadow_ejected").value(7);
    assert!(drops.is_in(&gateway.metrics().await), "the drops are in the metrics");

    // Once the ejection time is up, copies probe the shadow again: requests one at a time until
    // a copy reaches it (each of the others is dropped, still ejected)...
    eventually("a copy probes the shadow once the ejection time is up", Duration::from_secs(10), || async {
        send_one().await;
        garbage.heads() > 3
    })
    .await;
    // ... it still fails, so three failures in a row eject it again, for twice as long: of the
    // probe and the four requests after it, at most three reach the shadow. One at a time, each
    // copy ended before the next request, as above: sent together, a copy could leave before the
    // one ahead of it had failed, and so before the ejection it would have seen.
    for _ in 0..4 {
        send_one().await;
    }
    eventually("the probing copies failed and the shadow is ejected again", Duration::from_secs(10), || async {
        let report = gateway.mirrors().await;
        let errors = report.mirror("garbage").map_or(0, |m| m.copies[ShadowOutcome::Error]);
        ended(&report, "garbage") == sent.get() && errors >= 4
    })
    .await;
    assert!((4..=6).contains(&garbage.heads()), "{} heads: probes went out, then the shadow was ejected again", garbage.heads());
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_misbehaving_primary_gets_a_status_or_a_cleanly_closed_connection() {
    let refused = Upstream::refusing().await;
    let hung = FaultyUpstream::start(Fault::HangUntilClosed).await;
    let garbage = FaultyUpstream::start(Fault::Garbage).await;
    let mid_body = FaultyUpstream::start(Fault::CloseMidBody).await;
    let config = format!(
        r#"
services:
  refused: [{refused}]
  hung: [{hung}]
  garbage: [{garbage}]
  midbody: [{mid_body}]
routes:
  - {{ name: refused, match: {{ prefix: /refused }}, to: refused }}
  - {{ name: hung, match: {{ prefix: /hung }}, to: hung, timeout: 300ms }}
  - {{ name: garbage, match: {{ prefix: /garbage }}, to: garbage }}
  - {{ name: midbody, match: {{ prefix: /midbody }}, to: midbody }}
"#,
        hung = hung.addr,
        garbage = garbage.addr,
        mid_body = mid_body.addr,
    );
    let gateway = TestGateway::builder().file("g.yaml", &config).settings(SETTINGS).start().await;
    let level = Level::now();
    for (path, status) in
        [("/refused", StatusCode::BAD_GATEWAY), ("/hung", StatusCode::GATEWAY_TIMEOUT), ("/garbage", StatusCode::BAD_GATEWAY)]
    {
        let response = client().get(gateway.url(path)).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).expect("a JSON error body");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    eventually("the timed-out primary call was closed at the upstream", Duration::from_secs(20), || async {
        hung.heads() == 1 && hung.closed_by_peer() == 1
    })
    .await;

    // Reset mid-response: the head (200, 1000 bytes announced) has gone out; the gateway cannot
    // change the status any more, so it must end the client's connection, never leave it hanging.
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(b"GET /midbody HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut chunk = [0_u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(error) => return Err(error),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the client's connection was left hanging after the upstream reset mid-body");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("0123456789"), "what the upstream sent is relayed, no more: {text}");
    assert_eq!(mid_body.heads(), 1);
    drop(stream);
    level.wait_back("descriptors and tasks after the primary faults", Duration::from_secs(30)).await;
    gateway.stop().await;
}

/// A client that goes away mid-request cancels the primary call and every copy: proven at the
/// upstreams, which see their connections closed before the body was complete.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_mid_request_cancels_the_primary_call_and_its_copies() {
    let primary = FaultyUpstream::start(Fault::HangUntilClosed).await;
    let shadow = FaultyUpstream::start(Fault::HangUntilClosed).await;
    // The copy's own timeout is long: only the client's departure can end it within the test.
    let config = format!(
        "services: {{ app: {{ v1: [{}], v2: [{}] }} }}\nroutes: [{{ name: app, to: app/v1, mirrors: [{{ to: app/v2, name: shadow, methods: all, timeout: 600s, max_body: 1MiB }}] }}]\n",
        primary.addr, shadow.addr
    );
    let gateway = TestGateway::builder().file("g.yaml", &config).settings(SETTINGS).start().await;
    let level = Level::now();

    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client.write_all(b"POST /upload HTTP/1.1\r\nhost: test\r\ncontent-length: 100000\r\n\r\n").await.unwrap();
    client.write_all(&[b'x'; 1000]).await.unwrap();
    eventually("the primary and the copy are under way with part of the body", Duration::from_secs(20), || async {
        primary.body_bytes().first().is_some_and(|n| *n > 0) && shadow.body_bytes().first().is_some_and(|n| *n > 0)
    })
    .await;
    drop(client);
    eventually("the primary's connection was closed by the gateway", Duration::from_secs(20), || async { primary.closed_by_peer() == 1 })
        .await;
    eventually("the copy's connection was closed by the gateway", Duration::from_secs(20), || async { shadow.closed_by_peer() == 1 }).await;
    assert!(primary.body_bytes()[0] < 100_000 && shadow.body_bytes()[0] < 100_000);
    eventually("the copy is counted as abandoned by the client", Duration::from_secs(20), || async {
        ended(&gateway.mirrors().await, "shadow") == 1
    })
    .await;
    let report = gateway.mirror("shadow").await;
    assert_eq!(report.copies[ShadowOutcome::Dropped(DropReason::ClientAborted)], 1, "{report:?}");
    level.wait_back("descriptors and tasks after the client left", Duration::from_secs(30)).await;
    gateway.stop().await;
}

/// The same, when the client leaves after sending the whole request, while the primary has not
/// answered yet (no body to fail): the gateway notices the closed connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_while_waiting_cancels_the_primary_call() {
    let primary = FaultyUpstream::start(Fault::HangUntilClosed).await;
    let config = format!("services: {{ app: [{}] }}\nroutes: [{{ name: app, to: app }}]\n", primary.addr);
    let gateway = TestGateway::builder().file("g.yaml", &config).settings(SETTINGS).start().await;
    let level = Level::now();
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client.write_all(b"GET /wait HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
    eventually("the primary call is under way", Duration::from_secs(20), || async { primary.heads() == 1 }).await;
    drop(client);
    eventually("the primary's connection was closed by the gateway", Duration::from_secs(20), || async { primary.closed_by_peer() == 1 })
        .await;
    level.wait_back("descriptors and tasks after the client left", Duration::from_secs(30)).await;
    gateway.stop().await;
}
