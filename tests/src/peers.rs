//! Python peers (`tests/peers/*.py`: `websockets`, `grpcio`) run as child processes: a server
//! that prints `{"listening": port}` and then one JSON line per event, and one-shot clients that
//! print one JSON line with their result.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers").join(name)
}

/// A Python server peer; killed when dropped.
pub struct PeerServer {
    child: Child,
    pub port: u16,
    events: Arc<Mutex<Vec<Value>>>,
}

impl PeerServer {
    /// Starts `tests/peers/{script} serve {args}` and waits (up to 20 s) for its port.
    pub async fn start(script_name: &str, args: &[&str]) -> Self {
        let mut child = Command::new("python3")
            .arg(script(script_name))
            .arg("serve")
            .args(args)
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("events").push(value);
                }
            }
        });
        let listening = || events.lock().expect("events").iter().find_map(|e| e["listening"].as_u64());
        crate::eventually(&format!("{script_name} listens"), Duration::from_secs(20), || {
            let port = listening();
            async move { port.is_some() }
        })
        .await;
        let port = listening().and_then(|p| u16::try_from(p).ok()).expect("a port");
        Self { child, port, events }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every line printed so far after the `listening` one.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().expect("events").iter().filter(|e| e.get("listening").is_none()).cloned().collect()
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tests/peers/{script} {args}` to completion (at most 30 s) and returns the JSON it printed
/// last, whatever its exit status (a failed call reports its error as JSON).
pub async fn run_client(script_name: &str, args: &[&str]) -> Value {
    let mut command = Command::new("python3");
    command.arg(script(script_name)).args(args).env_remove("http_proxy").env_remove("https_proxy");
    let output = tokio::time::timeout(Duration::from_secs(30), tokio::task::spawn_blocking(move || command.output()))
        .await
        .expect("the peer client finishes within 30 s")
        .expect("join")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|_| panic!("{script_name} printed no JSON; stdout: {stdout}; stderr: {}", String::from_utf8_lossy(&output.stderr)))
}
