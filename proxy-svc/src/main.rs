//! `proxy-svc [--listen ADDR] [--config FILE]`: the tutorial's front service (name `proxy`,
//! version v1). Reached through the gateway as `<gateway>/proxy/proxy?url=http://target:8090/index`.

fn main() -> std::process::ExitCode {
    mesh_service::service_main("proxy", "v1")
}
