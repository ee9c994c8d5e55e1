//! Loader tests: the tutorial files, both front-ends, error messages and robustness.

mod errors;
mod examples;
mod fidelity;
mod fixtures;
mod gateway_api;
mod helpers;
mod istio;
mod istio_semantics;
mod layout;
mod native;
mod objects;
mod protocols;
mod robustness;
mod verdict;
