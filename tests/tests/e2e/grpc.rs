//! gRPC through the gateway with `grpcio` (PyPI) client and servers: unary and server-streaming
//! calls routed over h2c with their trailers, and mirrored to a shadow as whole gRPC calls.

use std::time::Duration;

use e2e_tests::gateway::TestGateway;
use e2e_tests::peers::{PeerServer, run_client};
use e2e_tests::{eventually, python_peer};
use gateway::admin::api::ShadowOutcome;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn grpc_unary_and_streaming_calls_keep_their_trailers_and_are_mirrored() {
    if !python_peer("grpc") {
        return;
    }
    let primary = PeerServer::start("grpc_peer.py", &["primary"]).await;
    let shadow = PeerServer::start("grpc_peer.py", &["shadow"]).await;
    let config = format!(
        r#"
services:
  greeter: {{ protocol: http2, v1: [{primary}], v2: [{shadow}] }}
routes:
  - name: grpc-echo
    match: {{ prefix: /test.Echo/ }}
    to: greeter/v1
    mirror:
      to: greeter/v2
      methods: all
      compare: {{ ignore_headers: [x-served-by, x-initial] }}
"#,
        primary = primary.addr(),
        shadow = shadow.addr()
    );
    let gateway = TestGateway::builder().file("gateway.yaml", &config).start().await;
    let target = gateway.addr.to_string();

    let unary = run_client("grpc_peer.py", &["call", &target, "Unary", "hi"]).await;
    assert_eq!(unary["code"], "OK", "{unary}");
    assert_eq!(unary["messages"], json!(["primary:hi"]));
    assert_eq!(unary["trailers"]["x-served-by"], "primary", "custom trailers arrive: {unary}");
    assert_eq!(unary["initial"]["x-initial"], "primary");

    let stream = run_client("grpc_peer.py", &["call", &target, "Stream", "s"]).await;
    assert_eq!(stream["code"], "OK", "{stream}");
    assert_eq!(stream["messages"], json!(["0:primary:s", "1:primary:s", "2:primary:s"]));
    assert_eq!(stream["trailers"], json!({"x-served-by": "primary", "x-count": "3"}));

    let failed = run_client("grpc_peer.py", &["call", &target, "Fail", "f"]).await;
    assert_eq!(failed["code"], "NOT_FOUND", "grpc-status travels in the trailers: {failed}");
    assert_eq!(failed["details"], "no such thing");
    assert_eq!(failed["trailers"]["x-served-by"], "primary");

    // Each call was also made, whole, to the shadow, marked as a copy.
    eventually("the shadow got the three calls", Duration::from_secs(10), || async { shadow.events().len() == 3 }).await;
    let calls = shadow.events();
    let methods: Vec<&str> = calls.iter().filter_map(|c| c["method"].as_str()).collect();
    assert_eq!(methods, ["Unary", "Stream", "Fail"]);
    assert_eq!(calls.iter().map(|c| c["request"].as_str().unwrap_or_default()).collect::<Vec<_>>(), ["hi", "s", "f"]);
    assert!(calls.iter().all(|c| c["metadata"]["x-shadow"].is_string() && c["metadata"]["x-caller"] == "test"), "{calls:?}");
    assert_eq!(primary.events().len(), 3, "the primary got each call once");

    // Each copy's answer was a whole gRPC call, compared by status, grpc-status and message bytes:
    // Unary and Stream differ ("shadow:hi"), Fail is the same NOT_FOUND with no message.
    let report = gateway.wait_compared("greeter/v2", 3).await;
    assert_eq!(report.copies[ShadowOutcome::Ok], 3, "{report:?}");
    let c = &report.comparison;
    if c.skipped == 0 {
        assert_eq!((c.matched, c.mismatched), (1, 2), "{report:?}");
    } else {
        assert!(c.matched <= 1, "{report:?}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auto_destination_speaks_http2_to_an_http2_client() {
    if !python_peer("grpc") {
        return;
    }
    let server = PeerServer::start("grpc_peer.py", &["auto"]).await;
    let config = format!(
        "services:\n  greeter: {{ protocol: auto, endpoints: [{}] }}\nroutes: [{{ name: grpc-auto, to: greeter }}]\n",
        server.addr()
    );
    let gateway = TestGateway::builder().file("gateway.yaml", &config).start().await;
    let unary = run_client("grpc_peer.py", &["call", &gateway.addr.to_string(), "Unary", "hi"]).await;
    assert_eq!((unary["code"].as_str(), unary["trailers"]["x-served-by"].as_str()), (Some("OK"), Some("auto")), "{unary}");
    gateway.stop().await;
}

/// NGINX (Debian's, as an h2c server with `listen ... http2`) as an HTTP/2 upstream. It refuses
/// a request that carries a `Host` header beside `:authority` (400, "client sent duplicate host
/// header"), as RFC 9113 section 8.3.1 allows for differing ones: the gateway sent both, the
/// endpoint's address as `:authority` and the client's host as `Host`. Now the client's host is
/// the `:authority`, as Envoy sends it, and the connection still goes to the endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn an_http2_upstream_gets_the_clients_host_as_its_authority() {
    let Some(nginx) = Nginx::start(r#"location / { return 200 "host=$host http_host=$http_host"; }"#).await else {
        return;
    };
    let config = format!("services:\n  shop: {{ protocol: http2, endpoints: [{}] }}\nroutes: [{{ name: shop, to: shop }}]\n", nginx.addr);
    let gateway = TestGateway::builder().file("gateway.yaml", &config).start().await;
    let response = e2e_tests::client().get(gateway.url("/items")).header("host", "shop.example.com").send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "host=shop.example.com http_host=shop.example.com"), "{}", nginx.log());
    gateway.stop().await;
}

/// An NGINX serving h2c on a free port with one `server` body; stopped when dropped. `None`
/// (the test is skipped with a notice) when nginx is not installed, outside CI.
struct Nginx {
    addr: std::net::SocketAddr,
    dir: std::path::PathBuf,
    process: std::process::Child,
}

impl Nginx {
    async fn start(server: &str) -> Option<Self> {
        if std::process::Command::new("nginx").arg("-v").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "nginx is missing: .ci/run installs .ci/apt-packages.txt");
            eprintln!("notice: skipped, nginx is not installed (apt-get install nginx-light)");
            return None;
        }
        let dir = e2e_tests::gateway::scratch_dir("nginx");
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; pid {dir}/nginx.pid; error_log {dir}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; server {{ listen {addr} http2; {server} }} }}\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let process = std::process::Command::new("nginx")
            .args(["-e", &format!("{}/error.log", dir.display()), "-p", &dir.display().to_string(), "-c", "nginx.conf"])
            .spawn()
            .expect("nginx starts");
        let nginx = Self { addr, dir, process };
        eventually(&format!("nginx listens on {addr}"), Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await;
        Some(nginx)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A gRPC call (HTTP/2) mirrored to an `auto` destination: the copy follows the client's
/// version as the primary request does. Before, copies always went over HTTP/1.1, which a gRPC
/// server does not speak: every copy failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_call_mirrored_to_an_auto_destination_reaches_it_over_http2() {
    if !python_peer("grpc") {
        return;
    }
    let primary = PeerServer::start("grpc_peer.py", &["primary"]).await;
    let shadow = PeerServer::start("grpc_peer.py", &["shadow"]).await;
    let config = format!(
        "services:\n  greeter: {{ protocol: auto, v1: [{}], v2: [{}] }}\nroutes:\n  - {{ name: grpc, to: greeter/v1, mirror: {{ to: greeter/v2, methods: all }} }}\n",
        primary.addr(),
        shadow.addr()
    );
    let gateway = TestGateway::builder().file("gateway.yaml", &config).start().await;
    let unary = run_client("grpc_peer.py", &["call", &gateway.addr.to_string(), "Unary", "hi"]).await;
    assert_eq!(unary["code"], "OK", "{unary}");
    eventually("the copy reached the shadow", Duration::from_secs(10), || async { shadow.events().len() == 1 }).await;
    gateway.wait_mirror("the copy is counted ok", "greeter/v2", |m| m.copies[ShadowOutcome::Ok] == 1).await;
    gateway.stop().await;
}
