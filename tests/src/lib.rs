//! Helpers for the end-to-end tests (`tests/e2e/`), shared so no test file writes its own:
//! a real OTLP receiver ([`otlp`]), misbehaving test upstreams ([`upstream`]), and the tutorial's
//! services running in-process, each with its own telemetry ([`services`]).

pub mod browser;
pub mod gateway;
pub mod otlp;
pub mod running;
pub mod services;
pub mod upstream;

/// The HTTP client of the tests: no proxy from the environment, and a timeout, so a request the
/// system under test never answers fails the test with a message instead of hanging it.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(20)).build().expect("client")
}
