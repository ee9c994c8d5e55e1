//! End-to-end tests: real sockets on 127.0.0.1 ports chosen by the system, real HTTP clients,
//! a real OTLP receiver. One test binary for the workspace (`cargo nextest run` runs them all).

mod capture;
mod compare;
mod controller;
mod corpus;
mod datasette;
mod faults;
mod framing;
mod gateway;
mod gateway_api;
mod grpc;
mod hostile;
mod hostile_h2;
mod istio;
mod properties;
mod reload;
mod replay;
mod retries;
mod secrets;
mod services;
mod shadow;
mod shutdown;
mod timeouts;
mod tls;
mod tutorial;
mod upstream_framing;
mod upstream_pools;
mod verdict;
mod websocket;
