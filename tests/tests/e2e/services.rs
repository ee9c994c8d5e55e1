//! proxy-svc and target-svc: the tutorial's behaviour, its defects fixed.

use std::time::Duration;

use e2e_tests::otlp::Receiver;
use e2e_tests::services::{RunningService, service_settings, service_settings_with_env};
use e2e_tests::upstream::{Behaviour, Upstream};
use reqwest::StatusCode;
use serde_json::Value;
use service_kit::propagation::FORWARDED_HEADERS;

async fn target(version: &str) -> RunningService {
    RunningService::start("target", version, &service_settings(&[]), None).await
}

use e2e_tests::metrics::{Metrics, metric};
use e2e_tests::{client, get};

async fn error_of(url: &str) -> (StatusCode, String) {
    let (status, body) = get(url).await;
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("JSON error body, got {body:?}"));
    (status, json["error"].as_str().expect("error field").to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_and_v2_answer_index_side_by_side() {
    let (v1, v2) = (target("v1").await, target("v2").await);
    assert_eq!(get(&v1.url("/index")).await, (StatusCode::OK, "index".to_owned()));
    assert_eq!(get(&v2.url("/index")).await, (StatusCode::OK, "index".to_owned()));
    assert_eq!(get(&v1.url("/healthz")).await.0, StatusCode::OK);
    assert_eq!(get(&v2.url("/readyz")).await.0, StatusCode::OK);
    assert_eq!(get(&v1.url("/nope")).await.0, StatusCode::NOT_FOUND);
    metric("http_server_requests_total")
        .label("route", "/index")
        .label("status", 200)
        .label("version", "v2")
        .label("shadow", false)
        .value(1)
        .assert_in(&Metrics::scrape(&v2.url("/metrics")).await);
    v1.stop().await;
    v2.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_relays_status_content_type_body_and_every_trace_header() {
    let upstream = Upstream::start(Behaviour::Answer {
        status: StatusCode::IM_A_TEAPOT,
        body: "{\"tea\":true}".into(),
        headers: vec![("content-type", "application/json".into())],
    })
    .await;
    let proxy = RunningService::start("proxy", "v1", &service_settings(&[]), None).await;

    let mut request = client().get(proxy.url("/proxy")).query(&[("url", upstream.url("/brew?x=1"))]);
    for name in &FORWARDED_HEADERS {
        request = request.header(name, format!("value-of-{name}"));
    }
    let response = request.header("authorization", "Bearer secret").send().await.expect("relay");

    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), "{\"tea\":true}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/brew?x=1");
    for name in &FORWARDED_HEADERS {
        assert_eq!(seen[0].headers.get(name).map(|v| v.to_str().unwrap().to_owned()), Some(format!("value-of-{name}")), "{name}");
    }
    assert!(!seen[0].headers.contains_key("authorization"), "only the trace headers are forwarded");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_takes_url_from_a_form_body_like_go_parse_form() {
    let upstream = Upstream::start(Behaviour::ok("from-form")).await;
    let proxy = target("v1").await;
    let response = client()
        .post(proxy.url("/proxy?url=http://127.0.0.1:1/not-this"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("url={}", upstream.url("/index")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "from-form");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_status_and_json_error() {
    let svc = RunningService::start("target", "v1", &service_settings(&[("relay.timeout", "300ms")]), None).await;
    let refused = Upstream::refusing().await;
    let slow = Upstream::start(Behaviour::Slow { delay: Duration::from_secs(5), body: "late".into() }).await;

    let (status, error) = error_of(&svc.url("/proxy")).await;
    assert_eq!((status, error.as_str()), (StatusCode::BAD_REQUEST, "missing parameter: url"));
    assert_eq!(error_of(&svc.url("/proxy?url=not%20a%20url")).await.0, StatusCode::BAD_REQUEST);
    let (status, error) = error_of(&svc.url("/proxy?url=ftp://127.0.0.1/x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error.contains("ftp"), "{error}");
    let (status, error) = error_of(&svc.url(&format!("/proxy?url=http://{refused}/index"))).await;
    assert_eq!((status, error.as_str()), (StatusCode::BAD_GATEWAY, "upstream unreachable"));
    assert_eq!(error_of(&svc.url(&format!("/proxy?url={}", slow.url("/index")))).await.0, StatusCode::GATEWAY_TIMEOUT);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn link_local_and_metadata_destinations_are_refused_even_through_redirects() {
    let svc = target("v1").await;
    for url in ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://[fd00:ec2::254]/"] {
        let (status, error) = error_of(&svc.url(&format!("/proxy?url={url}"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{url}: {error}");
    }
    let redirect = Upstream::start(Behaviour::Answer {
        status: StatusCode::FOUND,
        body: String::new(),
        headers: vec![("location", "http://169.254.169.254/latest/meta-data/".into())],
    })
    .await;
    let (status, _) = error_of(&svc.url(&format!("/proxy?url={}", redirect.url("/go")))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allow_list_narrows_the_relay() {
    let upstream = Upstream::start(Behaviour::ok("fine")).await;
    let svc = RunningService::start(
        "target",
        "v1",
        &service_settings_with_env(&[], &[("SVC_RELAY__ALLOW_HOSTS", "target,*.svc.cluster.local")]),
        None,
    )
    .await;
    let (status, error) = error_of(&svc.url(&format!("/proxy?url={}", upstream.url("/")))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    assert!(upstream.requests().is_empty(), "nothing fetched");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_nest_under_the_callers_traceparent_with_name_version_and_shadow_mark() {
    let receiver = Receiver::start_local().await.expect("receiver");
    let upstream = Upstream::start(Behaviour::ok("index")).await;
    let v2 = RunningService::start("target", "v2", &service_settings(&[]), Some(&receiver)).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";

    let response = client()
        .get(v2.url("/proxy"))
        .query(&[("url", upstream.url("/index"))])
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .header("x-shadow", "target/v2")
        .header("x-request-id", "req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "index");
    v2.flush().await;
    let spans = receiver.wait_until(Duration::from_secs(10), |s| s.iter().filter(|s| s.trace_id == trace_id).count() >= 2).await;

    let server = spans.iter().find(|s| s.kind == "server").expect("server span");
    let client_span = spans.iter().find(|s| s.kind == "client").expect("client span");
    assert_eq!((server.trace_id.as_str(), server.parent_span_id.as_str()), (trace_id, parent));
    assert_eq!((server.service_name.as_str(), server.service_version.as_str()), ("target", "v2"));
    assert_eq!(client_span.parent_span_id, server.span_id, "client span nests under the server span");
    assert!(server.is_shadow() && client_span.is_shadow(), "x-shadow marks both spans");

    let forwarded = &upstream.requests()[0].headers;
    let traceparent = forwarded["traceparent"].to_str().unwrap();
    assert_eq!(traceparent, format!("00-{trace_id}-{}-01", client_span.span_id), "next hop nests under the client span");
    assert_eq!(forwarded["x-b3-traceid"], trace_id);
    assert_eq!(forwarded["x-request-id"], "req-1");
    assert_eq!(forwarded["x-shadow"], "target/v2");
    v2.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn primary_requests_carry_no_shadow_mark() {
    let receiver = Receiver::start_local().await.expect("receiver");
    let v1 = RunningService::start("target", "v1", &service_settings(&[]), Some(&receiver)).await;
    assert_eq!(get(&v1.url("/index")).await.1, "index");
    v1.flush().await;
    let spans = receiver.wait_until(Duration::from_secs(10), |s| !s.is_empty()).await;
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].service_version, "v1");
    assert!(!spans[0].is_shadow());
    v1.stop().await;
}
