//! The configuration loaders (native, Istio, Gateway API) on arbitrary text: an error or a table,
//! never a panic. The input is tried as is and behind each format's opening line, so the fuzzer
//! reaches each front-end's own code without having to find its header first.
#![no_main]

use libfuzzer_sys::fuzz_target;

const PREFIXES: [&str; 4] = [
    "",
    "apiVersion: networking.istio.io/v1\nkind: VirtualService\n",
    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n",
    "services:\n  a: [127.0.0.1:1]\n",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let prefix = PREFIXES[usize::from(selector) % PREFIXES.len()];
    let document = format!("{prefix}{text}");
    if let Ok(loaded) = gateway_config::load_str("fuzz.yaml", &document) {
        // Whatever loads can be served as /config.
        let _ = format!("{:?}", loaded.table.routes.len());
    }
});
