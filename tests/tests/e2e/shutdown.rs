//! Graceful shutdown of the real gateway binary (issue 11), with real signals: on SIGTERM new
//! connections are refused, in-flight requests finish, spans are flushed to the OTLP receiver;
//! a second SIGTERM, or the shutdown deadline, ends a drain that does not finish.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e_tests::otlp::Receiver;
use e2e_tests::upstream::{Behaviour, Upstream};
use e2e_tests::{client, eventually};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;

/// The gateway binary, built from `gateway/src/main.rs` by this package (see tests/Cargo.toml).
const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

struct Process {
    child: Child,
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    output: Arc<Mutex<String>>,
}

impl Process {
    /// Starts the gateway on `config` with 127.0.0.1 ports of its own choosing, exporting spans to
    /// `receiver`; returns once it logged where it listens.
    async fn start(config: &str, receiver: &Receiver, env: &[(&str, &str)]) -> Self {
        let dir = e2e_tests::gateway::scratch_dir("shutdown");
        let file = dir.join("g.yaml");
        std::fs::write(&file, config).unwrap();
        let mut child = Command::new(GATEWAY)
            .arg("--config")
            .arg(&file)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", receiver.http_addr))
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("OTEL_SERVICE_NAME", "gateway")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("GATEWAY_RELOAD__POLL_INTERVAL", "0s")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the gateway binary starts");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    output.lock().unwrap().push_str(&format!("{line}\n"));
                }
            });
        }
        let mut listening = None;
        eventually("the gateway logs where it listens", Duration::from_secs(60), || {
            listening = addresses(&output.lock().unwrap());
            let found = listening.is_some();
            async move { found }
        })
        .await;
        let (addr, admin) = listening.unwrap();
        Self { child, addr, admin, output }
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status().expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to end; its exit code.
    async fn exited(&mut self, within: Duration) -> Option<i32> {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait").code(),
            Err(_) => panic!("the gateway still runs after {within:?}:\n{}", self.output.lock().unwrap()),
        }
    }

    async fn refuses_connections(&self) -> bool {
        tokio::net::TcpStream::connect(self.addr).await.is_err() && tokio::net::TcpStream::connect(self.admin).await.is_err()
    }
}

/// `addr=` and `admin=` of the "gateway listening" log line.
fn addresses(log: &str) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
    let line = log.lines().find(|l| l.contains("gateway listening"))?;
    let field = |key: &str| line.split_whitespace().find_map(|w| w.strip_prefix(key)).and_then(|v| v.trim_matches('"').parse().ok());
    Some((field("addr=")?, field("admin=")?))
}

fn config(fast: &Upstream, gated: &Upstream) -> String {
    format!(
        "services: {{ fast: [{}], gated: [{}] }}\nroutes:\n  - {{ name: slow, match: {{ prefix: /slow }}, to: gated }}\n  - {{ name: fast, to: fast }}\n",
        fast.addr, gated.addr
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_refuses_new_connections_finishes_in_flight_requests_and_flushes_spans() {
    let receiver = Receiver::start_local().await.unwrap();
    let fast = Upstream::start(Behaviour::ok("fast")).await;
    let gate = Arc::new(Semaphore::new(0));
    let gated = Upstream::start(Behaviour::Gated { gate: gate.clone(), body: "slow".into() }).await;
    let mut gateway = Process::start(&config(&fast, &gated), &receiver, &[]).await;
    assert_eq!(client().get(format!("http://{}/fast", gateway.addr)).send().await.unwrap().status(), 200);

    let url = format!("http://{}/slow/in-flight", gateway.addr);
    let in_flight = tokio::spawn(async move {
        let response = client().get(url).send().await?;
        Ok::<_, reqwest::Error>((response.status(), response.text().await?))
    });
    assert_eq!(gated.wait_for(1, Duration::from_secs(30)).await.len(), 1, "the request is in flight at the upstream");

    gateway.signal("TERM");
    eventually("new connections are refused once SIGTERM arrived", Duration::from_secs(30), || gateway.refuses_connections()).await;
    assert!(!in_flight.is_finished(), "the in-flight request is still waiting on its upstream");
    gate.add_permits(1);
    let (status, body) = in_flight.await.unwrap().expect("the in-flight request finishes");
    assert_eq!((status.as_u16(), body.as_str()), (200, "slow"));
    assert_eq!(gateway.exited(Duration::from_secs(60)).await, Some(0), "{}", gateway.output.lock().unwrap());

    // The in-flight request's span ended after SIGTERM: only the flush at exit can have sent it.
    let spans = receiver.spans();
    assert!(
        spans
            .iter()
            .any(|s| s.service_name == "gateway" && s.kind == "server" && s.attr("url.path").is_some_and(|p| p == "/slow/in-flight")),
        "the in-flight request's span was flushed: {:?}",
        spans.iter().map(|s| (&s.service_name, &s.name, s.attr("url.path"))).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigterm_ends_a_drain_at_once() {
    let receiver = Receiver::start_local().await.unwrap();
    let fast = Upstream::start(Behaviour::ok("fast")).await;
    let gated = Upstream::start(Behaviour::Gated { gate: Arc::new(Semaphore::new(0)), body: "never".into() }).await;
    // A deadline far beyond the test's own limits: only the second signal can end the drain.
    let mut gateway = Process::start(&config(&fast, &gated), &receiver, &[("GATEWAY_SHUTDOWN_DEADLINE", "1h")]).await;
    let url = format!("http://{}/slow/held", gateway.addr);
    let held = tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) });
    assert_eq!(gated.wait_for(1, Duration::from_secs(30)).await.len(), 1, "the request is in flight at the upstream");

    gateway.signal("TERM");
    eventually("the drain began", Duration::from_secs(30), || gateway.refuses_connections()).await;
    gateway.signal("TERM");
    assert_eq!(gateway.exited(Duration::from_secs(60)).await, Some(1));
    assert!(gateway.output.lock().unwrap().contains("received again"), "{}", gateway.output.lock().unwrap());
    assert!(held.await.unwrap().is_err(), "the held request was cut, not answered");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shutdown_deadline_ends_a_drain_that_does_not_finish() {
    let receiver = Receiver::start_local().await.unwrap();
    let fast = Upstream::start(Behaviour::ok("fast")).await;
    let gated = Upstream::start(Behaviour::Gated { gate: Arc::new(Semaphore::new(0)), body: "never".into() }).await;
    let mut gateway = Process::start(&config(&fast, &gated), &receiver, &[("GATEWAY_SHUTDOWN_DEADLINE", "1s")]).await;
    let url = format!("http://{}/slow/held", gateway.addr);
    let held = tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) });
    assert_eq!(gated.wait_for(1, Duration::from_secs(30)).await.len(), 1, "the request is in flight at the upstream");

    gateway.signal("TERM");
    assert_eq!(gateway.exited(Duration::from_secs(60)).await, Some(0), "{}", gateway.output.lock().unwrap());
    assert!(gateway.output.lock().unwrap().contains("shutdown deadline passed"), "{}", gateway.output.lock().unwrap());
    assert!(held.await.unwrap().is_err(), "the held request was cut at the deadline");
}
