//! Helpers for the end-to-end tests (`tests/e2e/`), shared so no test file writes its own:
//! the gateway under test, built and read through its own admin API types ([`gateway`]), a
//! Prometheus metric matcher ([`metrics`]), a real OTLP receiver ([`otlp`]), misbehaving test
//! upstreams ([`upstream`]), the tutorial's services running in-process, each with its own
//! telemetry ([`services`]), Python peers (`websockets`, `grpcio`: [`peers`]) and byte-level
//! HTTP clients and upstreams ([`wire`]).

pub mod browser;
pub mod gateway;
pub mod httpbin;
pub mod leaks;
pub mod metrics;
pub mod otlp;
pub mod peers;
pub mod running;
pub mod services;
pub mod upstream;
pub mod wire;

/// The HTTP client of the tests: no proxy from the environment, and a timeout, so a request the
/// system under test never answers fails the test with a message instead of hanging it.
pub fn client() -> reqwest::Client {
    client_builder().build().expect("client")
}

/// [`client`]'s settings, for a test that needs one more (no redirects, one connection).
pub fn client_builder() -> reqwest::ClientBuilder {
    service_kit::install_crypto_provider();
    reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(20))
}

/// A GET with the test [`client`]: the status and the body (the test fails if nothing answers).
pub async fn get(url: &str) -> (reqwest::StatusCode, String) {
    let response = client().get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    (status, response.text().await.unwrap_or_else(|e| panic!("GET {url}: the body: {e}")))
}

/// [`get`] of a JSON answer.
pub async fn get_json(url: &str) -> (reqwest::StatusCode, serde_json::Value) {
    let (status, body) = get(url).await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}")))
}

/// Waits until `condition` holds, checking every 20 ms; fails the test naming `what` when it
/// still does not hold after `timeout`. Tests wait with this, never with a bare sleep.
pub async fn eventually<F, Fut>(what: &str, timeout: std::time::Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "still not true after {timeout:?}: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether an outside program the test runs against is available (`python3 -c "import {module}"`
/// for a Python peer). Absent: in CI (`CI` set) the test fails, since `.ci/run` installs every
/// peer; elsewhere it prints a notice and the caller skips.
pub fn python_peer(module: &str) -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "Python module {module} is missing: .ci/run installs .ci/requirements.txt");
        eprintln!("notice: skipped, Python module {module} is not installed (pip install -r .ci/requirements.txt)");
    }
    found
}
