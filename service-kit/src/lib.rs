//! Shared plumbing of the workspace's binaries (`gateway`, and `proxy-svc`/`target-svc` through
//! `mesh-service`), and nothing of the tutorial's service itself:
//!
//! - [`telemetry`]: `tracing` logs plus OpenTelemetry spans over OTLP, configured by `OTEL_*`;
//! - [`propagation`]: W3C and B3 trace context, and the headers forwarded from hop to hop;
//! - [`settings`]: layered settings (embedded defaults, file, environment, flags);
//! - [`serve`]: serving a listener the caller bound, with graceful shutdown ([`stop`]: one stop
//!   signal for several listeners and tasks) and the generic request limits;
//! - [`reply`]: the one JSON error reply, for the listener's refusals and the services' errors;
//! - [`tls`]: TLS termination (certificates by SNI, client certificates, reload on change);
//! - [`metrics`]: the Prometheus recorder behind `/metrics`;
//! - [`cli`]: what the binaries' `main` functions share.

pub mod cli;
pub mod metrics;
pub mod propagation;
pub mod reply;
pub mod serve;
pub mod settings;
pub mod stop;
pub mod telemetry;
pub mod tls;
pub mod watch;

/// Installs the process-wide TLS crypto provider (ring) that every HTTP client here uses.
/// Idempotent; called before any client is built.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
