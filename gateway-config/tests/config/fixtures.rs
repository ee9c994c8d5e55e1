//! The invalid configurations in `tests/fixtures/invalid/`, each with the error it must give.
//! The gateway's own tests run `--check-config` and start-up on the same files.

use std::path::PathBuf;

fn fixtures() -> Vec<(PathBuf, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).expect("fixtures dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("fixture");
            let expect = text.lines().next().and_then(|l| l.strip_prefix("# expect: ")).expect("first line `# expect: ...`").to_string();
            (path, expect)
        })
        .collect()
}

#[test]
fn every_invalid_fixture_fails_with_its_message() {
    let all = fixtures();
    assert!(all.len() > 30, "{} fixtures", all.len());
    for (path, expect) in all {
        // Refused whole, or (a Kubernetes object) rejected on its own.
        let err = gateway_config::load_files(std::slice::from_ref(&path))
            .and_then(gateway_config::Loaded::strict)
            .expect_err(&path.display().to_string());
        let shown = format!("{}: {}", err.path, err.message);
        assert!(shown.starts_with(&expect), "{}:\n expected {expect:?}\n got      {shown:?}", path.display());
        assert!(!err.to_string().contains('\n'), "one line: {err}");
    }
}

/// The valid edge cases in `tests/fixtures/valid/`: each loads, with the warning its first line
/// (`# warns: ...`) names.
#[test]
fn every_valid_fixture_loads_with_its_warning() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).expect("fixtures dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(!files.is_empty());
    for path in files {
        let text = std::fs::read_to_string(&path).expect("fixture");
        let expect = text.lines().next().and_then(|l| l.strip_prefix("# warns: ")).expect("first line `# warns: ...`").to_string();
        let loaded = gateway_config::load_files(std::slice::from_ref(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let warnings: Vec<String> = loaded.warnings.iter().map(|w| format!("{}: {}", w.path, w.message)).collect();
        assert!(warnings.iter().any(|w| w.starts_with(&expect)), "{}: expected {expect:?} in {warnings:?}", path.display());
    }
}
