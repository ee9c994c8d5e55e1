//! The response differ on arbitrary pairs of answers (statuses, headers, bodies that may be JSON,
//! text, bytes, or claim a content-encoding): never a panic; a response compared with itself
//! never mismatches; a mismatch is never empty and never shows a secret header's value.
#![no_main]

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use response_diff::{Captured, Comparison, DiffOptions};

fn captured(data: &[u8]) -> Captured {
    // status (2 bytes), then header name/value pairs separated by 0xff, then 0xfe, then the body.
    let (status, rest) = data.split_at(data.len().min(2));
    let status = status.iter().fold(0_u16, |s, b| s.wrapping_mul(256).wrapping_add(u16::from(*b))) % 600;
    let (head, body) = match rest.iter().position(|b| *b == 0xfe) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let mut headers = HeaderMap::new();
    let mut fields = head.split(|b| *b == 0xff);
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    Captured { status, headers, body: Bytes::copy_from_slice(body), truncated: false }
}

fuzz_target!(|data: &[u8]| {
    let (primary, shadow) = match data.windows(2).position(|w| w == [0xfd, 0xfd]) {
        Some(at) => (captured(&data[..at]), captured(&data[at + 2..])),
        None => (captured(data), captured(&[])),
    };
    let options = DiffOptions::default();
    assert!(!matches!(response_diff::compare(&primary, &primary, &options), Comparison::Mismatch(_)), "a response differs from itself");
    if let Comparison::Mismatch(differences) = response_diff::compare(&primary, &shadow, &options) {
        assert!(!differences.is_empty());
        for secret in ["authorization", "cookie", "set-cookie", "proxy-authorization"] {
            let field = format!("header:{secret}");
            for d in differences.iter().filter(|d| d.field == field) {
                for shown in [&d.primary, &d.shadow].into_iter().flatten() {
                    assert_eq!(shown, response_diff::REDACTED, "a secret header's value was shown");
                }
            }
        }
    }
});
