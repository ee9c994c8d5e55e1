//! The README's run command, started as a user would: both curls of the tutorial answer `index`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Stops the mesh however the test ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the local mesh on free ports (with `extra` flags) and returns the first two `curl` lines
/// it prints, trimmed, as a user would copy them; the mesh runs until the guard is dropped.
fn start_mesh(extra: &[&str]) -> (Running, Vec<String>) {
    let mut mesh = Command::new(env!("CARGO_BIN_EXE_local-mesh"))
        .args(extra)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"])
        .args(["--target-v1-listen", "127.0.0.1:0", "--target-v2-listen", "127.0.0.1:0"])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start local-mesh");
    let stdout = BufReader::new(mesh.stdout.take().expect("stdout"));
    let running = Running(mesh);
    let curls =
        stdout.lines().map_while(Result::ok).map(|line| line.trim().to_owned()).filter(|line| line.starts_with("curl ")).take(2).collect();
    (running, curls)
}

#[test]
fn the_local_mesh_serves_both_curls_of_the_tutorial() {
    service_kit::install_crypto_provider();
    let (_mesh, curls) = start_mesh(&[]);
    // The printed curl commands, exactly as a user would copy them.
    let curls: Vec<String> =
        curls.iter().filter_map(|line| line.strip_prefix("curl ").map(|url| url.trim_matches('\'').to_owned())).collect();
    assert_eq!(curls.len(), 2, "two curl lines printed");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    for url in &curls {
        let body = runtime.block_on(async { client.get(url).send().await.unwrap().text().await.unwrap() });
        assert_eq!(body, "index", "{url}");
    }
}

#[test]
fn with_tls_the_printed_curls_work_over_https_with_the_generated_certificate() {
    let (_mesh, curls) = start_mesh(&["--tls"]);
    assert_eq!(curls.len(), 2, "two curl lines printed");
    for line in &curls {
        assert!(line.contains("https://"), "{line}");
        // Run as a user pastes it (the shell removes the quotes), without proxies.
        let output = Command::new("sh").args(["-c", &format!("{line} -sS --noproxy '*' --max-time 10")]).output().expect("sh runs curl");
        let body = String::from_utf8_lossy(&output.stdout);
        assert_eq!(body, "index", "{line}: {}", String::from_utf8_lossy(&output.stderr));
    }
}
