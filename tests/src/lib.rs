//! Helpers for the end-to-end tests (`tests/e2e/`), shared so no test file writes its own:
//! a real OTLP receiver ([`otlp`]), misbehaving test upstreams ([`upstream`]), and the tutorial's
//! services running in-process, each with its own telemetry ([`services`]).

pub mod browser;
pub mod gateway;
pub mod otlp;
pub mod running;
pub mod services;
pub mod upstream;
