//! `gateway --check-config`, the command: it prints the loader's one-line error last and fails
//! on every invalid configuration the test suite knows (gateway-config's
//! `tests/fixtures/invalid/`), accepts the examples, and reports per file what loaded.
//!
//! That start-up accepts exactly what `--check-config` accepts needs no test of its own: both
//! run `gateway_config::load_files_with`, and building the serving state from what it returns
//! cannot fail (the model holds parsed values).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What `gateway --check-config FILES` says: `Ok` or the error it printed.
fn check_config(files: &[PathBuf]) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway")).arg("--check-config").args(files).output().expect("run gateway --check-config");
    // Warnings come first, one per line; the error is the last line.
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() { Ok(()) } else { Err(stderr.trim().lines().last().unwrap_or("").to_string()) }
}

fn invalid_fixtures() -> Vec<PathBuf> {
    let dir = repo().join("gateway-config/tests/fixtures/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).expect("fixtures").map(|e| e.expect("entry").path()).collect();
    files.sort();
    files
}

fn name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[test]
fn check_config_refuses_every_invalid_fixture_with_the_loaders_message() {
    let fixtures = invalid_fixtures();
    assert!(fixtures.len() > 30, "{} fixtures", fixtures.len());
    for file in &fixtures {
        let files = std::slice::from_ref(file);
        // Refused whole, or the object in it rejected (the rest would serve: there is none).
        let loaded = match gateway_config::load_files(files) {
            Err(e) => Err(e.to_string()),
            Ok(l) => match l.rejected().next() {
                Some(o) => {
                    Err(format!("rejected: {} ({}): {}", o.title(), o.conditions[0].reason.as_str(), o.rejection().unwrap_or_default()))
                }
                None => Ok(()),
            },
        };
        assert!(loaded.is_err(), "{}: the loader accepts it", name(file));
        assert_eq!(check_config(files), loaded, "{}", name(file));
    }
}

#[test]
fn check_config_accepts_the_examples() {
    let examples = repo().join("examples");
    for files in [vec![examples.join("native.yaml")], vec![examples.join("istio/istio.yaml"), examples.join("istio/service-entries.yaml")]]
    {
        assert_eq!(check_config(&files), Ok(()), "{files:?}");
    }
}

#[test]
fn check_config_prints_per_file_what_loaded_what_was_scoped_out_and_what_is_not_implemented() {
    let dir = std::env::temp_dir().join(format!("check-config-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let istio = repo().join("examples/istio/istio.yaml");
    let mesh = dir.join("mesh.yaml");
    std::fs::write(
        &mesh,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: internal, namespace: test}\nspec:\n  hosts: [target]\n  http: [{route: [{destination: {host: target, subset: v1}}], fault: {abort: {httpStatus: 503}}}]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--check-config")
        .args([&istio, &repo().join("examples/istio/service-entries.yaml"), &mesh])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let expect = [
        format!("{}:", istio.display()),
        "  loaded: VirtualService test/target: 1 route".to_string(),
        format!("{}:", mesh.display()),
        "  scoped out: VirtualService test/internal: mesh-only (no `gateways`, or only `mesh`): not served at the edge unless scope.mesh is true".to_string(),
        "  not implemented / warning: document 1 (VirtualService internal): spec.http[0].fault: not implemented by this gateway; ignored".to_string(),
        "ok: 2 routes, 1 mirrors, 3 destinations".to_string(),
    ];
    for line in expect {
        assert!(stdout.lines().any(|l| l == line), "missing {line:?} in:\n{stdout}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
