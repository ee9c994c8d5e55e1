//! httpbin (PyPI) under gunicorn: a real, widely used echo service as an upstream.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running httpbin; stopped when dropped.
pub struct Httpbin {
    pub addr: SocketAddr,
    child: Child,
}

impl Httpbin {
    /// Starts httpbin on a free 127.0.0.1 port and waits until it answers; `None` (after a
    /// notice) when httpbin or gunicorn is not installed outside CI.
    pub async fn start() -> Option<Self> {
        if !crate::python_peer("httpbin") || !crate::python_peer("gunicorn") {
            return None;
        }
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("local address")
        };
        let child = Command::new("python3")
            .args(["-m", "gunicorn", "--workers", "1", "--threads", "4", "--bind", &addr.to_string(), "httpbin:app"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gunicorn");
        let running = Self { addr, child };
        let client = crate::client();
        crate::eventually("httpbin answers", Duration::from_secs(30), || {
            let client = client.clone();
            async move { client.get(format!("http://{addr}/get")).send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        Some(running)
    }
}

impl Drop for Httpbin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
