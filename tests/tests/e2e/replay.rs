//! `gateway replay`: a capture recorded by a running gateway, replayed by the gateway binary
//! against the same version (pass, no mismatch), a changed one (fail, the field named) and one
//! that is down (cannot tell, and why).

use std::path::Path;
use std::process::Output;

use e2e_tests::gateway::{TestGateway, scratch_dir};
use e2e_tests::httpbin::Httpbin;
use e2e_tests::metrics::metric;
use e2e_tests::upstream::{Behaviour, Upstream};
use gateway::admin::api::MirrorsDocument;

use crate::capture::{capture_config, capture_file};

const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// Requests recorded per capture: enough for the test verdict's `min_compared: 30`.
const REQUESTS: u64 = 40;

async fn replay(args: &[&str]) -> (u8, String, String) {
    let Output { status, stdout, stderr } =
        tokio::process::Command::new(GATEWAY).arg("replay").args(args).output().await.expect("gateway replay runs");
    let code = status.code().expect("an exit status") as u8;
    (code, String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

/// Sends `REQUESTS` GETs (and one POST) through `gateway`, each compared before the next, and
/// waits until the capture wrote them all.
async fn record(gateway: &TestGateway, route: &str) {
    let client = e2e_tests::client();
    for n in 0..REQUESTS {
        let url = gateway.url(&format!("/get?item={n}"));
        gateway.send_compared("v2", || client.get(&url).header("x-request-id", format!("replay-{n}")).send()).await;
    }
    gateway.send_compared("v2", || client.post(gateway.url("/post")).body("written once").send()).await;
    e2e_tests::eventually("the capture wrote every entry", std::time::Duration::from_secs(20), || async {
        metric("gateway_capture_entries_total")
            .label("route", route)
            .label("mirror", "v2")
            .label("outcome", "written")
            .value((REQUESTS + 1) as f64)
            .is_in(&gateway.metrics().await)
    })
    .await;
}

fn document(path: &Path) -> MirrorsDocument {
    serde_json::from_slice(&std::fs::read(path).expect("--json written")).expect("the report is /mirrors's document")
}

#[tokio::test(flavor = "multi_thread")]
async fn httpbin_traffic_replayed_against_the_same_version_passes_and_against_a_down_one_cannot_tell() {
    let (Some(primary), Some(shadow)) = (Httpbin::start().await, Httpbin::start().await) else { return };
    let file = capture_file("replay-same");
    let gateway = TestGateway::builder().file("g.yaml", &capture_config(&primary, &shadow, &file)).start().await;
    record(&gateway, "bin").await;
    let config = gateway.files[0].to_str().unwrap().to_owned();
    gateway.stop().await;

    let out = scratch_dir("replay-out");
    let (json, html) = (out.join("report.json"), out.join("report.html"));
    let candidate = format!("http://{}", primary.addr);
    let (code, stdout, stderr) = replay(&[
        file.to_str().unwrap(),
        "--candidate",
        &candidate,
        "--config",
        &config,
        "--json",
        json.to_str().unwrap(),
        "--report",
        html.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "pass: {stdout} {stderr}");
    assert!(stdout.starts_with("PASS bin → v2 (40 compared"), "{stdout}");
    assert!(stderr.contains("1 write left out"), "the POST is not replayed by default: {stderr}");
    let report = document(&json);
    let mirror = &report.mirrors[0];
    assert_eq!((mirror.comparison.matched, mirror.comparison.mismatched), (REQUESTS, 0), "{mirror:?}");
    let page = std::fs::read_to_string(&html).expect("--report written");
    assert!(page.contains("data-mirror=\"bin/v2\""), "the admin page's row for the mirror");

    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (code, stdout, stderr) = replay(&[file.to_str().unwrap(), "--candidate", &format!("http://{down}"), "--timeout", "5s"]).await;
    assert_eq!(code, 2, "cannot tell: {stdout} {stderr}");
    assert!(stderr.contains("answered none of the 40 requests") && stderr.contains(&down.to_string()), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capture_replayed_against_a_changed_version_fails_naming_the_field_and_linking_its_trace() {
    let receiver = e2e_tests::otlp::Receiver::start_local().await.unwrap();
    let v1 = r#"{"name":"Ann","price":10}"#;
    let (primary, shadow) = (Upstream::start(Behaviour::json(v1)).await, Upstream::start(Behaviour::json(v1)).await);
    let changed = Upstream::start(Behaviour::json(r#"{"name":"Ann","price":12}"#)).await;
    let file = scratch_dir("replay-changed").join("shop.har");
    let config = format!(
        r#"services: {{ shop: {{ v1: [{}], v2: [{}] }} }}
routes:
  - name: shop
    to: shop/v1
    mirrors:
      - to: shop/v2
        name: v2
        methods: all
        compare: {{ noise_percent: 0 }}
        verdict: {{ min_compared: 30, max_mismatch_rate: 20%, max_error_rate_increase: 20%, max_latency_increase: 1000% }}
        capture: {{ file: {} }}
"#,
        primary.addr,
        shadow.addr,
        file.display()
    );
    let gateway = TestGateway::builder().file("g.yaml", &config).otlp(&receiver).start().await;
    record(&gateway, "shop").await;
    let routing = gateway.files[0].to_str().unwrap().to_owned();
    gateway.stop().await;

    let json = scratch_dir("replay-changed-out").join("report.json");
    let args = |candidate: &Upstream| {
        vec![
            file.to_str().unwrap().to_owned(),
            "--candidate".into(),
            format!("http://{}", candidate.addr),
            "--config".into(),
            routing.clone(),
            "--json".into(),
            json.to_str().unwrap().to_owned(),
        ]
    };
    let same = args(&primary);
    let (code, stdout, stderr) = replay(&same.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(code, 0, "the recorded version itself passes: {stdout} {stderr}");

    let html = json.with_extension("html");
    let mut changed_args = args(&changed);
    changed_args.extend(["--report".into(), html.to_str().unwrap().to_owned(), "--trace-url".into(), "http://jaeger.example:16686".into()]);
    let (code, stdout, stderr) = replay(&changed_args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(code, 1, "fail: {stdout} {stderr}");
    assert!(stdout.starts_with("FAIL shop → v2") && stdout.contains("$.price"), "the changed field is named: {stdout}");
    let report = document(&json);
    let mismatch = &report.mirrors[0].recent_mismatches[0];
    assert_eq!(mismatch.differences[0].field, "$.price");
    assert_eq!((mismatch.differences[0].primary.as_deref(), mismatch.differences[0].shadow.as_deref()), (Some("10"), Some("12")));

    // The mismatch carries the trace id the capture recorded, and the page links to it.
    let capture: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let recorded =
        capture["log"]["entries"].as_array().unwrap().iter().find(|e| e["_requestId"] == mismatch.request_id.as_str()).expect("the entry");
    let trace = recorded["_traceId"].as_str().expect("the capture holds the trace id");
    assert_eq!((trace.len(), mismatch.trace_id.as_str()), (32, trace));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains(&format!(r#"href="http://jaeger.example:16686/trace/{trace}""#)), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_live_baseline_asked_twice_what_differs_between_its_own_answers_is_noise_not_a_mismatch() {
    let (primary, shadow) = (Upstream::start(Behaviour::json(r#"{"n":1}"#)).await, Upstream::start(Behaviour::json(r#"{"n":1}"#)).await);
    let file = scratch_dir("replay-baseline").join("c.har");
    let config = format!(
        "services: {{ s: {{ v1: [{}], v2: [{}] }} }}\nroutes:\n  - {{ name: s, to: s/v1, mirrors: [{{ to: s/v2, name: v2, methods: all, compare: {{ noise_percent: 0 }}, capture: {{ file: {} }} }}] }}\n",
        primary.addr,
        shadow.addr,
        file.display()
    );
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    record(&gateway, "s").await;
    gateway.stop().await;

    // Both answer `seq` differently on every call: the recorded answers are no use, the
    // baseline's two answers show that `seq` is noise.
    let (baseline, candidate) =
        (Upstream::start(Behaviour::Noisy { name: "Ann".into() }).await, Upstream::start(Behaviour::Noisy { name: "Ann".into() }).await);
    let json = scratch_dir("replay-baseline-out").join("report.json");
    let (code, stdout, stderr) = replay(&[
        file.to_str().unwrap(),
        "--candidate",
        &format!("http://{}", candidate.addr),
        "--baseline",
        &format!("http://{}", baseline.addr),
        "--concurrency",
        "1",
        "--json",
        json.to_str().unwrap(),
    ])
    .await;
    let report = document(&json);
    let counts = &report.mirrors[0].comparison;
    assert_eq!(counts.mismatched, 0, "{counts:?} {stdout} {stderr}");
    assert!(counts.noise > 0, "{counts:?}");
    assert_eq!(report.noise_fields[&gateway::admin::api::MirrorKey::new("s", "v2")], ["$.seq"]);
    assert_eq!(code, 3, "noise is not evidence: too few compared to decide: {stdout}");
}
