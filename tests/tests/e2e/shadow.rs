//! Safe and truthful mirroring: noise learning never repeats a write on the primary, a client
//! cannot mark its traffic as shadow, a mirror pointed back at the gateway does not loop, and
//! identical versions compare as identical even when they echo their request.

use std::time::Duration;

use e2e_tests::client;
use e2e_tests::gateway::TestGateway;
use e2e_tests::httpbin::Httpbin;
use e2e_tests::otlp::Receiver;
use e2e_tests::upstream::{Behaviour, Upstream};
use gateway::admin::api::{MirrorKey, ShadowOutcome};
use reqwest::Method;

fn mirror_config(primary: impl std::fmt::Display, shadow: impl std::fmt::Display, mirror: &str) -> String {
    format!(
        "services: {{ app: {{ v1: [{primary}], v2: [{shadow}] }} }}\nroutes: [{{ name: app, to: app/v1, mirrors: [{{ to: app/v2, name: v2, {mirror} }}] }}]\n"
    )
}

/// The mirror of [`mirror_config`].
const V2: &str = "app/v2";

/// Sends one request and waits until its comparison is recorded, so the next one always finds a
/// comparator slot (none is skipped as "comparator busy").
async fn send_compared(gateway: &TestGateway, request: reqwest::RequestBuilder) -> reqwest::StatusCode {
    gateway.send_compared(V2, || request.send()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn noise_learning_never_repeats_a_write_on_the_primary() {
    let primary = Upstream::start(Behaviour::ok("same")).await;
    let shadow = Upstream::start(Behaviour::ok("same")).await;
    let config = mirror_config(primary.addr, shadow.addr, "methods: all, compare: { noise_percent: 100 }");
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    let client = client();
    let n = 3;
    for method in [Method::DELETE, Method::PUT, Method::POST, Method::PATCH, Method::GET] {
        for i in 0..n {
            let mut request = client.request(method.clone(), gateway.url(&format!("/items/{i}")));
            if method == Method::PUT {
                request = request.body("new state");
            }
            assert!(send_compared(&gateway, request).await.is_success());
        }
    }
    let count = |method: Method| primary.requests().iter().filter(|r| r.method == method).count();
    assert_eq!(count(Method::GET), 2 * n, "a GET is asked twice of the primary: noise learning is on");
    for write in [Method::DELETE, Method::PUT, Method::POST, Method::PATCH] {
        assert_eq!(count(write.clone()), n, "every {write} reached the primary exactly once");
    }
    let noise = gateway.mirrors().await.noise[&MirrorKey::new("app", "v2")].clone();
    assert_eq!(noise.sent, n as u64, "{noise:?}");
    assert_eq!(noise.not_eligible_method, 4 * n as u64, "{noise:?}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clients_shadow_marker_is_removed_and_its_request_mirrored() {
    let primary = Upstream::start(Behaviour::ok("primary")).await;
    let shadow = Upstream::start(Behaviour::ok("shadow")).await;
    let gateway = TestGateway::builder().file("g.yaml", &mirror_config(primary.addr, shadow.addr, "timeout: 5s")).start().await;
    let response =
        client().get(gateway.url("/orders")).header("x-shadow", "hide-me").header("host", "shop-shadow:8080").send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "primary");
    let live = &primary.requests()[0];
    assert!(!live.headers.contains_key("x-shadow"), "a client's marker never reaches the primary");
    assert_eq!(live.headers["host"], "shop:8080", "nor the -shadow host that came with it");
    let copies = shadow.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(copies.len(), 1, "the request was mirrored as the live traffic it is");
    assert!(copies[0].headers["x-shadow"].to_str().unwrap().starts_with("v2; t="), "{:?}", copies[0].headers);
    assert_eq!(copies[0].headers["host"], "shop-shadow:8080");
    gateway.stop().await;
}

/// The same over HTTP/2, where the host is the `:authority` and there is no `Host` header: the
/// marker goes and so does the `-shadow` authority that came with it (Python's `h2` as the client).
#[tokio::test(flavor = "multi_thread")]
async fn a_clients_shadow_marker_over_http2_is_removed_with_its_shadow_authority() {
    if !e2e_tests::python_peer("h2") {
        return;
    }
    let primary = Upstream::start(Behaviour::ok("primary")).await;
    let shadow = Upstream::start(Behaviour::ok("shadow")).await;
    let gateway = TestGateway::builder().file("g.yaml", &mirror_config(primary.addr, shadow.addr, "timeout: 5s")).start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/h2_attacks.py");
    let output = tokio::process::Command::new("python3").args([script, &gateway.addr.to_string(), "spoofed-marker"]).output();
    let output = tokio::time::timeout(Duration::from_secs(60), output).await.expect("the client ends").expect("python3 runs");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the client's JSON report");
    assert_eq!((report["status"].as_str(), report["body"].as_str()), (Some("200"), Some("primary")), "{report}");
    let live = &primary.requests()[0];
    assert!(!live.headers.contains_key("x-shadow"), "a client's marker never reaches the primary");
    assert_eq!(live.headers["host"], "shop:8080", "nor the -shadow authority that came with it");
    let copies = shadow.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(copies.len(), 1, "the request was mirrored as the live traffic it is");
    assert_eq!(copies[0].headers["host"], "shop-shadow:8080");
    gateway.stop().await;
}

/// A two-tier set-up: copies are sent back into the gateway, whose `*-shadow` route serves them.
/// The signed marker makes the gateway recognise its own copies: one copy per request, no more.
#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_pointed_at_the_gateway_itself_sends_one_copy_per_request() {
    let v1 = Upstream::start(Behaviour::ok("v1")).await;
    let v2 = Upstream::start(Behaviour::ok("v2")).await;
    let config = |gateway: &str| {
        format!(
            "services: {{ app: {{ v1: [{v1}], v2: [{v2}] }}, gateway: [{gateway}] }}\nroutes:\n  - name: shadow\n    hosts: [app-shadow]\n    to: app/v2\n  - name: live\n    to: app/v1\n    mirrors: [{{ to: gateway, name: self }}]\n",
            v1 = v1.addr,
            v2 = v2.addr
        )
    };
    let gateway = TestGateway::builder().file("g.yaml", &config("127.0.0.1:9")).start().await;
    std::fs::write(&gateway.files[0], config(&gateway.addr.to_string())).unwrap();
    assert_eq!(gateway.reloader.reload(), Ok(2));
    let n = 5;
    for i in 0..n {
        let response = client().get(gateway.url(&format!("/r/{i}"))).header("host", "app").send().await.unwrap();
        assert_eq!(response.text().await.unwrap(), "v1");
    }
    let copies = v2.wait_for(n, Duration::from_secs(10)).await;
    assert_eq!(copies.len(), n, "each copy came back through the gateway and was served by the shadow route");
    assert!(copies.iter().all(|c| c.headers.contains_key("x-shadow")), "the trusted marker stays on the copy");
    let this = gateway.wait_mirror("every copy counted", "self", |m| m.copies[ShadowOutcome::Ok] == n as u64).await;
    assert_eq!(this.copies.sent, n as u64, "one copy per request, none of a copy: {this:?}");
    assert_eq!(v1.requests().len(), n, "the live side saw each request once");
    gateway.stop().await;
}

/// Two identical httpbin instances (real software that echoes its request) behind a comparing
/// mirror, with tracing on so trace headers are injected: the differences the gateway itself
/// made in each copy (its -shadow host, marker and trace context) must not count as mismatches.
#[tokio::test(flavor = "multi_thread")]
async fn identical_echoing_versions_compare_as_identical() {
    let (Some(primary), Some(shadow)) = (Httpbin::start().await, Httpbin::start().await) else { return };
    let receiver = Receiver::start_local().await.expect("receiver");
    // Noise learning off (it is on by default): identical versions must compare as identical
    // by undoing the copy's own changes alone.
    let config = mirror_config(primary.addr, shadow.addr, "methods: all, compare: { noise_percent: 0 }, timeout: 10s");
    let gateway = TestGateway::builder().file("g.yaml", &config).otlp(&receiver).start().await;
    let client = e2e_tests::client_builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let total = 100;
    for i in 0..total {
        let url = |path: String| gateway.url(&path);
        let request = match i % 10 {
            0 => client.get(url(format!("/anything/{i}?q={i}"))),
            1 => client.get(url("/headers".into())).header("x-custom", format!("value-{i}")),
            2 => client.get(url(format!("/get?page={i}"))),
            3 => client.post(url(format!("/anything/{i}"))).header("content-type", "application/json").body(format!(r#"{{"n":{i}}}"#)),
            4 => client.get(url("/absolute-redirect/1".into())),
            5 => client.get(url(format!("/response-headers?x-seen={i}"))),
            6 => client.get(url("/status/404".into())),
            7 => client.get(url("/json".into())),
            8 => client.put(url(format!("/anything?x={i}"))).body(format!("text body {i}")),
            _ => client.get(url("/cookies".into())).header("cookie", format!("session={i}")),
        };
        send_compared(&gateway, request).await;
    }
    let report = gateway.mirrors().await;
    let mirror = report.mirror(V2).expect("the mirror");
    let comparison = &mirror.comparison;
    let mismatched = comparison.mismatched;
    eprintln!("identical httpbin versions, no noise learning: {comparison:?}");
    assert_eq!(comparison.matched + mismatched, total, "every request compared: {comparison:?}");
    assert!(mismatched * 100 <= total, "at most 1% mismatches, got {mismatched}: {:?}", mirror.recent_mismatches);
    assert_eq!(report.noise[&MirrorKey::new("app", "v2")].sent, 0, "no extra request reached the primary");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_field_random_per_answer_is_learned_as_noise_not_reported_as_a_mismatch() {
    let (Some(primary), Some(shadow)) = (Httpbin::start().await, Httpbin::start().await) else { return };
    let config = mirror_config(primary.addr, shadow.addr, "compare: { noise_percent: 100 }, timeout: 10s");
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    let client = client();
    for _ in 0..5 {
        send_compared(&gateway, client.get(gateway.url("/uuid"))).await;
    }
    let report = gateway.mirrors().await;
    let comparison = &report.mirror(V2).expect("the mirror").comparison;
    let noise = &report.noise[&MirrorKey::new("app", "v2")];
    eprintln!("httpbin /uuid with noise learning: {comparison:?}, noise {noise:?}");
    assert_eq!(comparison.noise, 5, "{comparison:?}");
    assert_eq!(comparison.mismatched, 0, "{comparison:?}");
    assert_eq!(noise.learned[0].pattern, "/uuid", "{noise:?}");
    assert_eq!(noise.learned[0].field, "$.uuid", "{noise:?}");
    assert_eq!(noise.learned[0].samples, 5, "{noise:?}");
    assert_eq!(noise.reclassified, 5, "{noise:?}");
    gateway.stop().await;
}
