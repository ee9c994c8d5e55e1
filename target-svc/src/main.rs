//! `target-svc [--listen ADDR] [--config FILE]`: the tutorial's target service, v1 by default,
//! v2 when built with `cargo build -p target-svc --features v2`.

fn main() -> std::process::ExitCode {
    mesh_service::service_main(target_svc::NAME, target_svc::VERSION)
}
