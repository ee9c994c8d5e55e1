//! Header filtering on arbitrary header lists: afterwards no hop-by-hop header remains, nor any
//! header the `Connection` values named, and every other header is kept.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    let mut fields = data.split(|b| *b == 0xff);
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let before = headers.clone();
    http_rules::strip_hop_by_hop(&mut headers);
    for name in http_rules::HOP_BY_HOP.iter().chain(&named) {
        assert!(!headers.contains_key(name), "{name} survived");
    }
    for name in before.keys() {
        if !http_rules::HOP_BY_HOP.contains(name) && !named.contains(name) {
            assert_eq!(before.get_all(name).iter().count(), headers.get_all(name).iter().count(), "{name} was touched");
        }
    }
});
