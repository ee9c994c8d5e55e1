//! HTTP/2 floods against the gateway's data listener, with Python's `h2` as the attacking client
//! (`tests/peers/h2_attacks.py`): the settings that turn hyper's and h2's protections on are
//! advertised, each attack is answered as those protections allow, memory stays bounded, and the
//! gateway keeps serving.

use std::time::Duration;

use e2e_tests::gateway::TestGateway;
use e2e_tests::upstream::{Behaviour, Upstream};
use e2e_tests::{client, python_peer};
use serde_json::Value;

/// Runs one attack from the script against `addr`; its JSON report.
async fn attack(addr: std::net::SocketAddr, name: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/h2_attacks.py");
    let output = tokio::process::Command::new("python3").args([script, &addr.to_string(), name]).kill_on_drop(true).output();
    let output = tokio::time::timeout(Duration::from_secs(90), output).await.expect("the attack script ends").expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{name}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{name}: {e}: {stdout}"));
    eprintln!("h2 | {name} | {report}");
    report
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_floods_are_answered_as_hyper_and_h2_allow_and_the_gateway_keeps_serving() {
    if !python_peer("h2") {
        return;
    }
    let upstream = Upstream::start(Behaviour::ok("ok")).await;
    let config = format!("services: {{ up: [{}] }}\nroutes: [{{ name: all, to: up }}]\n", upstream.addr);
    let gateway = TestGateway::builder().file("g.yaml", &config).start().await;
    let serves = || async {
        let response = client().get(gateway.url("/after")).send().await.expect("the gateway still answers");
        assert_eq!(response.status(), 200);
    };

    let settings = attack(gateway.addr, "settings").await;
    assert_eq!(settings["MAX_CONCURRENT_STREAMS"], 100, "{settings}");
    assert_eq!(settings["INITIAL_WINDOW_SIZE"], 65536, "{settings}");
    assert_eq!(settings["MAX_HEADER_LIST_SIZE"], 61440, "{settings}");
    let rss_before = rss_kib();

    // Rapid reset: the connection is closed with ENHANCE_YOUR_CALM long before 2000 streams.
    let reset = attack(gateway.addr, "rapid-reset").await;
    assert_eq!(reset["goaway"]["error_code"], "ENHANCE_YOUR_CALM", "{reset}");
    assert!(reset["streams_sent"].as_u64().unwrap() < 2000, "{reset}");
    serves().await;

    // CONTINUATION flood: a header block that never ends is cut off with GOAWAY.
    let continuation = attack(gateway.addr, "continuation").await;
    assert_eq!(continuation["goaway"]["error_code"], "ENHANCE_YOUR_CALM", "{continuation}");
    assert_eq!(continuation["closed"], true, "{continuation}");
    serves().await;

    // SETTINGS flood: h2 acknowledges one at a time and stops reading while the client does not
    // read its acknowledgements, so the flood ends in backpressure, not in a growing queue.
    let flood = attack(gateway.addr, "settings-flood").await;
    assert!(flood["blocked_by_backpressure"] == true || flood["closed"] == true || !flood["goaway"].is_null(), "{flood}");
    serves().await;

    // One header list over the limit: 431 on that stream, the connection stays.
    let big = attack(gateway.addr, "big-headers").await;
    assert_eq!(big["responses"], serde_json::json!(["431"]), "{big}");

    // 150 streams opened at once, ignoring the advertised limit: those past 100 are refused.
    let streams = attack(gateway.addr, "streams").await;
    assert_eq!(streams["refused"], 50, "{streams}");
    serves().await;

    // Memory stays bounded through all of it (a loose bound: no queue grew with the floods).
    let growth = rss_kib().saturating_sub(rss_before);
    assert!(growth < 64 * 1024, "RSS grew by {growth} KiB during the floods");
    gateway.stop().await;
}
