//! Retries and outlier detection of primaries (issue 19), on real sockets: an endpoint down is
//! retried around and then ejected, a body whose bytes went out is never sent twice, and in an
//! outage the retries stay within the destination's budget.

use e2e_tests::client;
use e2e_tests::gateway::TestGateway;
use e2e_tests::metrics::metric;
use e2e_tests::upstream::{Behaviour, Fault, FaultyUpstream, Upstream};
use reqwest::StatusCode;

fn retries(metrics: &e2e_tests::metrics::Metrics, reason: &str) -> f64 {
    metric("gateway_upstream_retries_total").label("reason", reason).find(metrics).unwrap_or(0.0)
}

/// Two endpoints of the Istio host `echo`: one answering 503, one answering 200, and the
/// ServiceEntry placing them.
async fn busy_and_ok() -> (Upstream, Upstream, String) {
    let failing =
        Upstream::start(Behaviour::Answer { status: StatusCode::SERVICE_UNAVAILABLE, body: "busy".into(), headers: vec![] }).await;
    let ok = Upstream::start(Behaviour::ok("ok")).await;
    let entry = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: echo}}\nspec:\n  hosts: [echo]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}, {{address: 127.0.0.1, ports: {{http: {}}}}}]\n",
        failing.addr.port(),
        ok.addr.port()
    );
    (failing, ok, entry)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_one_endpoint_of_two_down_every_request_is_served_and_none_is_retried_twice() {
    let up = Upstream::start(Behaviour::ok("up")).await;
    let down = Upstream::refusing().await;
    let config = format!("services: {{ app: [{down}, {up}] }}\nroutes: [{{ name: app, to: app }}]\n", up = up.addr);
    // Ejection off: every other request meets the dead endpoint first, and is retried once.
    let gateway = TestGateway::builder().file("g.yaml", &config).setting("outlier_detection.consecutive_failures", "0").start().await;
    let client = client();
    for i in 0..40 {
        let response = client.get(gateway.url(&format!("/r/{i}"))).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
        assert_eq!(response.text().await.unwrap(), "up");
    }
    let metrics = gateway.metrics().await;
    assert_eq!(retries(&metrics, "connect_failure"), 20.0, "the 20 requests sent to the dead endpoint first, once each:\n{metrics}");
    let served: Vec<String> = up.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(served.len(), 40, "each request reached the live endpoint exactly once");
    let mut unique = served.clone();
    unique.dedup();
    assert_eq!(unique.len(), 40, "no request was sent twice to it: {served:?}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dead_endpoint_is_ejected_after_consecutive_failures_and_no_longer_tried() {
    let up = Upstream::start(Behaviour::ok("up")).await;
    let down = Upstream::refusing().await;
    let config = format!("services: {{ app: [{down}, {up}] }}\nroutes: [{{ name: app, to: app }}]\n", up = up.addr);
    let gateway = TestGateway::builder().file("g.yaml", &config).setting("outlier_detection.consecutive_failures", "3").start().await;
    let client = client();
    for i in 0..10 {
        assert_eq!(client.get(gateway.url(&format!("/a/{i}"))).send().await.expect("GET").status(), StatusCode::OK);
    }
    let metrics = gateway.metrics().await;
    metric("gateway_upstream_ejections_total").label("endpoint", down).value(1.0).assert_in(&metrics);
    assert_eq!(retries(&metrics, "connect_failure"), 3.0, "three failures, then ejected:\n{metrics}");
    for i in 0..20 {
        assert_eq!(client.get(gateway.url(&format!("/b/{i}"))).send().await.expect("GET").status(), StatusCode::OK);
    }
    let metrics = gateway.metrics().await;
    assert_eq!(retries(&metrics, "connect_failure"), 3.0, "ejected: not tried again within its ejection time:\n{metrics}");
    assert_eq!(up.requests().len(), 30);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_body_whose_bytes_went_out_is_never_retried_and_a_request_without_one_is() {
    let a = FaultyUpstream::start(Fault::HangUntilClosed).await;
    let b = FaultyUpstream::start(Fault::HangUntilClosed).await;
    let config = format!(
        "services: {{ app: [{a}, {b}] }}\nroutes: [{{ name: app, to: app, retries: {{ attempts: 2, per_try_timeout: 500ms, retry_on: reset }} }}]\n",
        a = a.addr,
        b = b.addr
    );
    let gateway = TestGateway::builder().file("g.yaml", &config).setting("outlier_detection.consecutive_failures", "0").start().await;
    let client = client();
    // PUT is idempotent: only its streamed body keeps it from being retried.
    let chunks = futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 16 * 1024])));
    let put = client.put(gateway.url("/upload")).body(reqwest::Body::wrap_stream(chunks)).send().await.expect("PUT");
    assert_eq!(put.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(a.accepted() + b.accepted(), 1, "sent once");
    assert!(a.body_bytes().iter().chain(b.body_bytes().iter()).any(|n| *n > 0), "its bytes went out");
    assert_eq!(retries(&gateway.metrics().await, "per_try_timeout"), 0.0);

    let get = client.get(gateway.url("/read")).send().await.expect("GET");
    assert_eq!(get.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(a.accepted() + b.accepted(), 4, "the GET: tried three times");
    assert!(a.accepted() >= 2 && b.accepted() >= 1 || b.accepted() >= 2 && a.accepted() >= 1, "on both endpoints");
    assert_eq!(retries(&gateway.metrics().await, "per_try_timeout"), 2.0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn in_an_outage_retries_stay_within_the_budget_and_the_refused_ones_are_counted() {
    let a = Upstream::start(Behaviour::Hang).await;
    let b = Upstream::start(Behaviour::Hang).await;
    let config = format!(
        "services: {{ app: [{a}, {b}] }}\nroutes: [{{ name: app, to: app, retries: {{ attempts: 2, per_try_timeout: 1s, retry_on: reset }} }}]\n",
        a = a.addr,
        b = b.addr
    );
    let gateway = TestGateway::builder().file("g.yaml", &config).setting("outlier_detection.consecutive_failures", "0").start().await;
    const REQUESTS: usize = 20;
    let client = client();
    let requests = (0..REQUESTS).map(|i| {
        let (client, url) = (client.clone(), gateway.url(&format!("/o/{i}")));
        tokio::spawn(async move { client.get(url).send().await.expect("GET").status() })
    });
    for status in futures_util::future::join_all(requests).await {
        assert_eq!(status.unwrap(), StatusCode::GATEWAY_TIMEOUT);
    }
    let metrics = gateway.metrics().await;
    let retried = retries(&metrics, "per_try_timeout");
    let refused = metric("gateway_upstream_retry_budget_exceeded_total").find(&metrics).unwrap_or(0.0);
    // Without a budget: 40 retries. With it: 20% of 20 in flight (4), then at most 3 again.
    assert!((3.0..=8.0).contains(&retried), "retries {retried}:\n{metrics}");
    assert!(refused >= 15.0, "refused by the budget: {refused}:\n{metrics}");
    let arrived = a.requests().len() + b.requests().len();
    assert_eq!(arrived as f64, REQUESTS as f64 + retried, "the upstreams got the requests and the retries only");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn istio_retries_retry_the_listed_status_with_the_body_in_hand_and_unknown_conditions_are_warned() {
    let (failing, ok, entry) = busy_and_ok().await;
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: echo}\nspec:\n  hosts: ['*']\n  http:\n  - route: [{destination: {host: echo}}]\n    retries: {attempts: 1, perTryTimeout: 2s, retryOn: \"503,envoy-ratelimited\"}\n";
    let gateway = TestGateway::builder()
        .file("entries.yaml", &entry)
        .file("vs.yaml", vs)
        .settings(&[("outlier_detection.consecutive_failures", "0"), ("scope.mesh", "true")])
        .start()
        .await;
    let warnings = gateway.config().await["warnings"].to_string();
    assert!(warnings.contains("envoy-ratelimited") && warnings.contains("retryOn"), "{warnings}");
    let client = client();
    for i in 0..6 {
        let response = client.post(gateway.url("/submit")).body(format!("order {i}")).send().await.expect("POST");
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
    }
    assert_eq!(failing.requests().len(), 3, "every other request met the 503 first");
    let bodies: Vec<_> = ok.requests().into_iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
    assert_eq!(bodies, (0..6).map(|i| format!("order {i}")).collect::<Vec<_>>(), "the retried ones with their whole body");
    assert_eq!(retries(&gateway.metrics().await, "status"), 3.0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_istio_destination_rule_s_outlier_detection_ejects_the_failing_endpoint_after_its_own_count() {
    let (failing, _ok, entry) = busy_and_ok().await;
    let rules = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: echo}\nspec:\n  hosts: ['*']\n  http:\n  - route: [{destination: {host: echo}}]\n    retries: {attempts: 1, retryOn: \"503\"}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: echo}\nspec:\n  host: echo\n  trafficPolicy:\n    outlierDetection: {consecutiveGatewayErrors: 2, interval: 10s, baseEjectionTime: 1m, maxEjectionPercent: 50}\n";
    // The settings' default would eject after 5: the rule's 2 decides.
    let gateway = TestGateway::builder().file("entries.yaml", &entry).file("rules.yaml", rules).setting("scope.mesh", "true").start().await;
    let warnings = gateway.config().await["warnings"].to_string();
    assert!(!warnings.contains("outlierDetection"), "loads without a warning: {warnings}");
    let client = client();
    for i in 0..12 {
        let response = client.get(gateway.url(&format!("/e/{i}"))).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
    }
    assert_eq!(failing.requests().len(), 2, "two 503s in a row, then ejected for a minute");
    let metrics = gateway.metrics().await;
    metric("gateway_upstream_ejections_total").label("endpoint", failing.addr).value(1.0).assert_in(&metrics);
    assert_eq!(retries(&metrics, "status"), 2.0);
    gateway.stop().await;
}
