//! Upgrades through the gateway: a WebSocket echo with the `websockets` library (PyPI) on both
//! ends, never mirrored.

use std::time::Duration;

use e2e_tests::gateway::TestGateway;
use e2e_tests::metrics::metric;
use e2e_tests::peers::{PeerServer, run_client};
use e2e_tests::upstream::{Behaviour, Upstream};
use e2e_tests::{client, eventually, python_peer};

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_echo_works_through_the_gateway_and_is_never_mirrored() {
    if !python_peer("websockets") {
        return;
    }
    let echo = PeerServer::start("ws_peer.py", &[]).await;
    let shadow = Upstream::start(Behaviour::ok("shadow")).await;
    let config = format!(
        r#"
services:
  chat: {{ v1: [{echo}], v2: [{shadow}] }}
routes:
  - name: ws-echo
    match: {{ prefix: /ws/ }}
    rewrite: /
    to: chat/v1
    mirror: {{ to: chat/v2, methods: all }}
"#,
        echo = echo.addr(),
        shadow = shadow.addr
    );
    let gateway = TestGateway::builder().file("gateway.yaml", &config).start().await;
    // The route mirrors: a plain request on it is copied to the shadow.
    let _ = client().get(gateway.url("/ws/plain")).send().await.expect("plain request");
    eventually("the plain request is mirrored", Duration::from_secs(10), || async { shadow.requests().len() == 1 }).await;

    let url = format!("ws://{}/ws/chat", gateway.addr);
    let result = run_client("ws_peer.py", &["call", &url, "hello", "world"]).await;
    assert_eq!(result["echo"], serde_json::json!(["hello", "world"]), "{result}");
    assert_eq!(result["large_frame_echoed"], true, "{result}");
    let handshake = echo.events().into_iter().find(|e| e["path"] == "/chat").expect("the echo server saw the handshake");
    assert_eq!(handshake["headers"]["upgrade"], "websocket");
    assert!(handshake["headers"]["x-forwarded-for"].is_string(), "still a proxied request: {handshake}");

    // Upgrades are never copied: the shadow still has only the plain request, and the mirror
    // counts the upgrade as not eligible.
    assert_eq!(shadow.requests().len(), 1, "the handshake was copied: {:?}", shadow.requests());
    metric("gateway_mirror_copies_total")
        .label("route", "ws-echo")
        .label("mirror", "chat/v2")
        .label("outcome", "not_eligible")
        .label("reason", "upgrade")
        .value(1)
        .assert_in(&gateway.metrics().await);
    gateway.stop().await;
}
