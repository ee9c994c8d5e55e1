//! Capture: a running gateway records httpbin (gunicorn) traffic to a HAR file, which a HAR
//! reader nobody here wrote (Python `haralyzer`) parses, and in which no secret is found.

use std::path::{Path, PathBuf};

use e2e_tests::gateway::{TestGateway, scratch_dir};
use e2e_tests::httpbin::Httpbin;
use e2e_tests::metrics::metric;
use e2e_tests::peers::run_client;
use serde_json::Value;

/// Secrets the client sends; none may reach the capture file.
const SECRETS: [&str; 4] = ["SECRET-TOKEN-1", "SECRET-COOKIE-2", "SECRET-KEY-3", "SECRET-PASS-5"];

/// A gateway routing to one httpbin and mirroring, compared and captured, to another.
pub fn capture_config(primary: &Httpbin, shadow: &Httpbin, file: &Path) -> String {
    format!(
        r#"services: {{ bin: {{ v1: [{}], v2: [{}] }} }}
routes:
  - name: bin
    to: bin/v1
    mirrors:
      - to: bin/v2
        name: v2
        methods: all
        compare: {{ noise_percent: 0 }}
        verdict: {{ min_compared: 30, max_mismatch_rate: 20%, max_error_rate_increase: 20%, max_latency_increase: 1000% }}
        capture:
          file: {}
          redact_headers: [x-api-key]
          redact_paths: [$.password, $.headers.Authorization, $.headers.Cookie, $.headers.X-Api-Key, $.json.password, $.data]
"#,
        primary.addr,
        shadow.addr,
        file.display()
    )
}

/// Sends httpbin traffic through `gateway` (each request compared before the next) and waits
/// until the capture wrote `sent` entries; returns how many were sent.
pub async fn send_traffic(gateway: &TestGateway) -> u64 {
    let client = e2e_tests::client_builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = |path: &str| gateway.url(path);
    gateway
        .send_compared("v2", || {
            client
                .get(url("/get?page=2"))
                .header("authorization", "Bearer SECRET-TOKEN-1")
                .header("cookie", "sid=SECRET-COOKIE-2")
                .header("x-api-key", "SECRET-KEY-3")
                .header("x-request-id", "capture-1")
                .send()
        })
        .await;
    gateway
        .send_compared("v2", || {
            client
                .post(url("/post"))
                .header("authorization", "Bearer SECRET-TOKEN-1")
                .header("content-type", "application/json")
                .body(r#"{"user":"ann","password":"SECRET-PASS-5"}"#)
                .send()
        })
        .await;
    gateway.send_compared("v2", || client.get(url("/uuid")).header("x-request-id", "capture-3").send()).await;
    let status = gateway.send_compared("v2", || client.get(url("/cookies/set?sid=abc")).send()).await;
    assert_eq!(status, 302, "httpbin sets the cookie and redirects");
    let sent = 4;
    e2e_tests::eventually("the capture wrote every entry", std::time::Duration::from_secs(20), || async {
        metric("gateway_capture_entries_total")
            .label("route", "bin")
            .label("mirror", "v2")
            .label("outcome", "written")
            .value(sent as f64)
            .is_in(&gateway.metrics().await)
    })
    .await;
    sent
}

/// A fresh capture file path.
pub fn capture_file(tag: &str) -> PathBuf {
    scratch_dir(tag).join("bin.har")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capture_of_httpbin_traffic_opens_in_haralyzer_and_holds_no_secret() {
    let (Some(primary), Some(shadow)) = (Httpbin::start().await, Httpbin::start().await) else { return };
    if !e2e_tests::python_peer("haralyzer") {
        return;
    }
    let file = capture_file("capture");
    let gateway = TestGateway::builder().file("g.yaml", &capture_config(&primary, &shadow, &file)).start().await;
    let sent = send_traffic(&gateway).await;

    let read = run_client("har_read.py", &[file.to_str().unwrap()]).await;
    assert_eq!(read["version"], "1.2", "{read}");
    let entries = read["entries"].as_array().expect("entries");
    assert_eq!(entries.len() as u64, sent, "every compared exchange at sample 100%: {read}");
    let by_path = |path: &str| {
        entries.iter().find(|e| e["url"].as_str().is_some_and(|u| u.contains(path))).unwrap_or_else(|| panic!("{path}: {read}"))
    };
    let get = by_path("/get?page=2");
    assert_eq!((get["method"].as_str(), get["status"].as_u64()), (Some("GET"), Some(200)));
    assert_eq!((get["route"].as_str(), get["mirror"].as_str()), (Some("bin"), Some("v2")));
    assert_eq!(get["request_headers"]["authorization"], "[redacted]");
    assert_eq!(get["request_headers"]["x-api-key"], "[redacted]");
    assert_eq!(get["shadow_status"], 200, "the shadow's answer is recorded beside the primary's");
    assert!(get["started"].as_str().is_some_and(|s| s.starts_with("20")), "startedDateTime parses: {get}");
    let body: Value = serde_json::from_str(get["response_text"].as_str().unwrap()).expect("the primary's JSON answer");
    assert_eq!(body["args"]["page"], "2");
    let post = by_path("/post");
    assert!(post["request_text"].as_str().is_some_and(|t| t.contains("ann") && t.contains("[redacted]")), "{post}");
    assert_eq!(by_path("/uuid")["result"], "mismatch", "two httpbins answer different uuids: {read}");
    let cookie = by_path("/cookies/set");
    assert_eq!(cookie["status"], 302);

    let text = std::fs::read_to_string(&file).unwrap();
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} is in the capture file");
    }
    assert!(text.contains(r#"{"name":"set-cookie","value":"[redacted]"}"#), "set-cookie is redacted");
    gateway.stop().await;
}
