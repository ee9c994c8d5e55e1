//! No input makes the loader panic: garbage, truncations and mutations of real files.

use gateway_config::load_texts;

const TUTORIAL: &str = include_str!("../../../examples/istio/istio.yaml");
const ENTRIES: &str = include_str!("../../../examples/istio/service-entries.yaml");
const NATIVE: &str = include_str!("../../../examples/native.yaml");

fn try_load(text: &str) {
    // Alone, and together with files that make it otherwise valid; errors stay on one line.
    let results = [gateway_config::load_str("fuzz.yaml", text), load_texts([("fuzz.yaml", text), ("entries.yaml", ENTRIES)])];
    for r in results {
        match r {
            Err(e) => assert!(!e.to_string().contains('\n'), "{e:?}"),
            Ok(l) => {
                for w in l.warnings {
                    assert!(!w.to_string().contains('\n'), "{w:?}");
                }
            }
        }
    }
}

#[test]
fn garbage_yaml_is_an_error_not_a_panic() {
    let cases = [
        "",
        "---",
        "- a\n- b",
        ":",
        "{",
        "[[[[",
        "a: [",
        "\t\tx: y",
        "routes: 3",
        "routes: [3]",
        "routes: [{to: []}]",
        "services: [a]",
        "services: {a: {v1: 3}}",
        "apiVersion: 3",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: 3",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: 3\nspec: {http: 3}",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {http: [{route: [{destination: 3}]}]}",
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nspec: {hosts: [a], endpoints: [{address: 'unix:///x'}]}",
        "!!binary aGVsbG8=",
        "a: &x [*x]",
        "a: !tag {b: c}",
        "routes: [{to: \"é/ü\", match: {prefix: \"ü\"}}]",
        "services: {\"*.é\": [\"[::1]:80\"]}\nroutes: [{to: \"x.é\"}]",
        "? [a]\n: b",
        "routes: [{to: a, timeout: 99999999999999999999h}]",
        "routes: [{to: a, mirrors: [{to: a, max_body: 99999999999999999999GiB}]}]",
    ];
    for c in cases {
        try_load(c);
    }
    let deep = "[".repeat(10_000);
    try_load(&deep);
    let deep_map = "a: ".repeat(2_000);
    try_load(&deep_map);
}

#[test]
fn truncated_and_mutated_real_files_never_panic() {
    // A small deterministic generator: no extra dependency for a property test.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b" \n:-[]{}'\"#&*!|>/.0123456789abcvxyz";
    for base in [TUTORIAL, ENTRIES, NATIVE] {
        for end in (0..base.len()).step_by(7) {
            if base.is_char_boundary(end) {
                try_load(&base[..end]);
            }
        }
        for _ in 0..300 {
            let mut bytes = base.as_bytes().to_vec();
            for _ in 0..(1 + next() % 4) {
                let pos = (next() as usize) % bytes.len();
                let byte = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => bytes[pos] = byte,
                    1 => bytes.insert(pos, byte),
                    _ => {
                        bytes.remove(pos);
                    }
                }
            }
            if let Ok(text) = String::from_utf8(bytes) {
                try_load(&text);
            }
        }
    }
}
