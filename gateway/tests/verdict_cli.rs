//! The `gateway verdict` binary's own plumbing: arguments and the "cannot tell" exit status. Its
//! answers against running gateways are tested end to end in `tests/tests/e2e/verdict.rs`.

use std::process::Command;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
}

#[test]
fn an_unreachable_admin_is_exit_2_with_a_message_naming_it() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = gateway().args(["verdict", "--admin", &format!("127.0.0.1:{port}")]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("http://127.0.0.1:{port}/mirrors")) && stderr.contains("onnect"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn bad_arguments_are_usage_errors() {
    let output = gateway().args(["verdict"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--admin <URL>"));
    let output = gateway().args(["verdict", "--admin", "127.0.0.1:1", "--wait", "soon"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--wait"), "{}", String::from_utf8_lossy(&output.stderr));
}
