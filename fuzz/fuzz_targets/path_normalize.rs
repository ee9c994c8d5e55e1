//! Path normalisation (done before route matching) on arbitrary request targets, under every
//! option: never a panic; the query is never touched; a normalised path has no dot segment left
//! (`.` or `..`, also percent-encoded) and, when no `%` is left, normalising it again changes
//! nothing (non-ASCII bytes included: that found a defect).
#![no_main]

use gateway_config::{EscapedSlashes, PathNormalization};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else { return };
    let Ok(target) = std::str::from_utf8(rest) else { return };
    let normalization = PathNormalization {
        normalize: true,
        merge_slashes: options & 1 != 0,
        escaped_slashes: match (options >> 1) % 3 {
            0 => EscapedSlashes::Keep,
            1 => EscapedSlashes::Reject,
            _ => EscapedSlashes::Unescape,
        },
    };
    let Ok(normalized) = normalization.apply(target) else { return };
    let query = |t: &str| t.find('?').map(|i| t[i..].to_owned());
    assert_eq!(query(&normalized), query(target), "the query is kept as received");
    if target.starts_with('/') {
        let path = normalized.split('?').next().unwrap_or_default();
        for segment in path.split('/') {
            assert!(segment != "." && segment != "..", "a dot segment survived: {target:?} -> {normalized:?}");
        }
        // Decoding is one pass, as in Envoy: `%6%44` becomes `%6D`, which a second pass would
        // decode again. Idempotence holds whenever no `%` is left.
        if !path.contains('%') {
            let again = normalization.apply(&normalized).expect("a normalised path is accepted");
            assert_eq!(again.as_ref(), normalized.as_ref(), "normalising is idempotent: {target:?}");
        }
    }
});
