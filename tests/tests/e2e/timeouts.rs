//! Deadlines with Envoy's meaning, and request metrics that tell the truth: the route timeout
//! spans the whole response, a default one applies to routes without their own, a stalled
//! stream is reset, and durations run to the end of the body.

use std::time::{Duration, Instant};

use e2e_tests::gateway::TestGateway;
use e2e_tests::metrics::metric;
use e2e_tests::upstream::{Behaviour, Upstream};
use e2e_tests::wire::TrickleUpstream;
use e2e_tests::{client, eventually};

fn route(name: &str, upstream: std::net::SocketAddr, timeout: Option<&str>) -> String {
    let timeout = timeout.map(|t| format!(", timeout: {t}")).unwrap_or_default();
    format!("services: {{ up: [{upstream}] }}\nroutes: [{{ name: {name}, to: up{timeout} }}]\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_timeout_cuts_a_body_that_runs_past_it() {
    // 40 chunks, 100 ms apart: 4 s of body after headers that come at once.
    let slow = TrickleUpstream::start(40, Duration::from_millis(100)).await;
    let gateway = TestGateway::builder().file("g.yaml", &route("trickle-cut", slow.addr, Some("1s"))).start().await;
    let response = client().get(gateway.url("/stream")).send().await.unwrap();
    assert_eq!(response.status(), 200, "the headers came in time");
    let body = response.bytes().await;
    assert!(body.is_err(), "the stream is reset at the deadline, not completed: {} bytes", body.map(|b| b.len()).unwrap_or(0));
    eventually("the upstream stream is cut", Duration::from_secs(10), || async { slow.cut() }).await;
    assert!(slow.sent() < 40, "the upstream did not get to send it all: {}", slow.sent());
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_inside_the_route_timeout_arrives_whole() {
    let slow = TrickleUpstream::start(5, Duration::from_millis(50)).await;
    let gateway = TestGateway::builder().file("g.yaml", &route("trickle-ok", slow.addr, Some("10s"))).start().await;
    let body = client().get(gateway.url("/stream")).send().await.unwrap().text().await.unwrap();
    assert_eq!(body.lines().count(), 5, "{body}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_route_timeout_answers_504_for_an_upstream_that_never_answers() {
    let hung = Upstream::start(Behaviour::Hang).await;
    let config = route("hung-default", hung.addr, None);
    let gateway = TestGateway::builder().file("g.yaml", &config).setting("timeouts.route", "1s").start().await;
    let started = Instant::now();
    let response = client().get(gateway.url("/")).send().await.expect("answered before the client's own 20 s");
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert_eq!(hung.requests().len(), 1, "the upstream had the request");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zero_route_timeout_disables_the_default_one() {
    let slow = Upstream::start(Behaviour::Slow { delay: Duration::from_millis(1500), body: "late".into() }).await;
    let config = route("no-deadline", slow.addr, Some("0s"));
    let gateway = TestGateway::builder().file("g.yaml", &config).setting("timeouts.route", "500ms").start().await;
    let response = client().get(gateway.url("/")).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.text().await.unwrap()), (200, "late".to_string()));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_stops_moving_is_reset_after_the_idle_timeout() {
    // One chunk, then nothing for a minute.
    let stalled = TrickleUpstream::start(2, Duration::from_secs(60)).await;
    let config = route("stalled", stalled.addr, Some("0s"));
    let gateway = TestGateway::builder().file("g.yaml", &config).setting("timeouts.stream_idle", "1s").start().await;
    let response = client().get(gateway.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err(), "reset, not completed");
    eventually("the upstream stream is cut", Duration::from_secs(10), || async { stalled.cut() }).await;
    assert_eq!(stalled.sent(), 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_duration_metric_runs_to_the_end_of_a_slow_streamed_answer() {
    // Headers at once, then 8 chunks 200 ms apart: at least 1.4 s until the body ends.
    let slow = TrickleUpstream::start(8, Duration::from_millis(200)).await;
    let gateway = TestGateway::builder().file("g.yaml", &route("slow-stream-duration", slow.addr, Some("30s"))).start().await;
    let body = client().get(gateway.url("/")).send().await.unwrap().text().await.unwrap();
    assert_eq!(body.lines().count(), 8);
    let duration = metric("gateway_request_duration_seconds_sum").label("route", "slow-stream-duration");
    eventually("the request is recorded", Duration::from_secs(10), || async { duration.is_in(&gateway.metrics().await) }).await;
    let seconds = duration.find(&gateway.metrics().await).unwrap_or_default();
    assert!(seconds >= 1.4, "recorded {seconds} s for a body that took at least 1.4 s");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_client_abandons_is_counted_as_client_closed() {
    let hung = Upstream::start(Behaviour::Hang).await;
    let gateway = TestGateway::builder().file("g.yaml", &route("abandoned", hung.addr, Some("0s"))).start().await;
    let short = reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(500)).build().unwrap();
    let request = tokio::spawn(short.get(gateway.url("/")).send());
    eventually("the upstream has the request", Duration::from_secs(10), || async { hung.requests().len() == 1 }).await;
    assert!(request.await.unwrap().is_err(), "the client gave up");
    let abandoned =
        metric("gateway_requests_total").label("route", "abandoned").label("destination", "up").label("status", "client_closed");
    eventually("the abandoned request is counted", Duration::from_secs(10), || async {
        abandoned.find(&gateway.metrics().await) == Some(1.0)
    })
    .await;
    gateway.stop().await;
}
