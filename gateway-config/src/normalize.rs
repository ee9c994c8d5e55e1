//! Request path normalisation, done before route matching so that the path a route matches is
//! the path the upstream gets (Istio's `BASE` option, Envoy's `normalize_path`).
//!
//! Without it `/api/../secret` matches a `/api/` route and reaches the upstream as
//! `/../secret` (after a `/` rewrite), which a backend that resolves dot segments itself serves
//! from outside the route's prefix (CVE-2021-31920 is the Istio instance of this).
//!
//! In Envoy's order, on the path only (the query string is never touched):
//! 1. `%2F` / `%5C` (any case): kept, rejected, or unescaped, per [`EscapedSlashes`]
//!    (Envoy's `path_with_escaped_slashes_action`);
//! 2. RFC 3986 section 6.2.2 normalisation: percent-encoded unreserved characters decoded (so
//!    `%2e%2e` is `..`), a backslash read as a slash, then dot segments removed (section 5.2.4);
//!    `%00` is always rejected, as Istio does;
//! 3. optionally, runs of slashes merged into one (Istio's `MERGE_SLASHES`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// What to do with `%2F` and `%5C` in a path (Envoy's `path_with_escaped_slashes_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EscapedSlashes {
    /// Left as they are: not a path separator for matching, forwarded escaped (Envoy's
    /// `KEEP_UNCHANGED`, Istio's `BASE`).
    #[default]
    Keep,
    /// The request is refused with 400 (`REJECT_REQUEST`).
    Reject,
    /// Decoded to `/` and `\` before normalising, so they separate segments for matching and
    /// upstream alike (`UNESCAPE_AND_FORWARD`, Istio's `DECODE_AND_MERGE_SLASHES`).
    Unescape,
}

/// How request paths are normalised; the default is Istio's `BASE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathNormalization {
    /// Percent-decoding of unreserved characters, backslashes and dot segments (RFC 3986).
    /// Off, the path is matched and forwarded exactly as received (Istio's `NONE`).
    pub normalize: bool,
    /// `//` becomes `/` (Istio's `MERGE_SLASHES`).
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
}

impl Default for PathNormalization {
    fn default() -> Self {
        PathNormalization { normalize: true, merge_slashes: false, escaped_slashes: EscapedSlashes::Keep }
    }
}

/// Why a path was refused (the request gets 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRejected {
    #[error("escaped slash (%2F or %5C) in the path")]
    EscapedSlash,
    #[error("encoded NUL (%00) in the path")]
    EncodedNul,
}

impl PathNormalization {
    /// Istio's `NONE`: paths are used as received.
    pub const NONE: PathNormalization = PathNormalization { normalize: false, merge_slashes: false, escaped_slashes: EscapedSlashes::Keep };

    /// The normalised form of a request target's path-and-query; borrowed when nothing changes
    /// (the common case costs one scan). Targets that are not a path (`*`, an authority for
    /// CONNECT) are returned as they are.
    pub fn apply<'a>(&self, path_and_query: &'a str) -> Result<Cow<'a, str>, PathRejected> {
        let (path, query) = match path_and_query.find('?') {
            Some(i) => path_and_query.split_at(i),
            None => (path_and_query, ""),
        };
        if !path.starts_with('/') {
            return Ok(Cow::Borrowed(path_and_query));
        }
        let escaped_action = self.escaped_slashes;
        if !self.normalize && !self.merge_slashes && escaped_action == EscapedSlashes::Keep {
            return Ok(Cow::Borrowed(path_and_query));
        }
        if !self.needs_work(path) {
            return Ok(Cow::Borrowed(path_and_query));
        }
        let decoded = self.decode(path)?;
        let resolved = if self.normalize { remove_dot_segments(&decoded) } else { decoded };
        let mut out = if self.merge_slashes { merge_slashes(&resolved) } else { resolved };
        out.push_str(query);
        if out == path_and_query {
            return Ok(Cow::Borrowed(path_and_query));
        }
        Ok(Cow::Owned(out))
    }

    /// Whether any step could change `path`: a `%`, a backslash, a dot segment, or `//`.
    fn needs_work(&self, path: &str) -> bool {
        let bytes = path.as_bytes();
        if bytes.contains(&b'%') {
            return true;
        }
        if self.normalize && (bytes.contains(&b'\\') || path.split('/').any(|s| s == "." || s == "..")) {
            return true;
        }
        self.merge_slashes && path.contains("//")
    }

    /// Step 1 and the decoding half of step 2, in one pass.
    fn decode(&self, path: &str) -> Result<String, PathRejected> {
        // Bytes, not chars: a path may carry raw UTF-8 (or other non-ASCII bytes hyper accepts),
        // which must reach the upstream unchanged. Every substitution below is ASCII for ASCII,
        // so the result is as valid UTF-8 as the input.
        let bytes = path.as_bytes();
        let mut out: Vec<u8> = Vec::with_capacity(path.len());
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'%'
                && let Some(value) = hex_pair(bytes.get(i + 1..i + 3))
            {
                let escape = &bytes[i..i + 3];
                i += 3;
                match value {
                    0 => return Err(PathRejected::EncodedNul),
                    b'/' | b'\\' => match self.escaped_slashes {
                        EscapedSlashes::Keep => out.extend_from_slice(escape),
                        EscapedSlashes::Reject => return Err(PathRejected::EscapedSlash),
                        // An unescaped backslash is a separator too when normalising.
                        EscapedSlashes::Unescape => out.push(if self.normalize { b'/' } else { value }),
                    },
                    v if self.normalize && is_unreserved(v) => out.push(v),
                    _ => out.extend_from_slice(escape),
                }
                continue;
            }
            out.push(if b == b'\\' && self.normalize { b'/' } else { b });
            i += 1;
        }
        Ok(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }
}

fn hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    let [hi, lo] = pair? else { return None };
    let digit = |c: u8| char::from(c).to_digit(16);
    u8::try_from(digit(*hi)? * 16 + digit(*lo)?).ok()
}

/// RFC 3986 section 2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 section 5.2.4 on an absolute path: `.` segments go, `..` removes the segment before
/// it and never climbs above the root. A trailing `.` or `..` leaves the path ending in `/`.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {}
            ".." => {
                kept.pop();
            }
            other => {
                kept.push(other);
                continue;
            }
        }
        if i == last {
            kept.push("");
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(p: &str) -> Result<String, PathRejected> {
        PathNormalization::default().apply(p).map(Cow::into_owned)
    }

    fn with(escaped: EscapedSlashes, merge: bool, p: &str) -> Result<String, PathRejected> {
        PathNormalization { normalize: true, merge_slashes: merge, escaped_slashes: escaped }.apply(p).map(Cow::into_owned)
    }

    /// Found by the `path_normalize` fuzz target: each byte of a non-ASCII character was pushed as
    /// a char of its own, so `/a/./ǝ` reached the upstream as `/a/Ç\u{9d}`, and normalising again
    /// changed it again.
    #[test]
    fn non_ascii_bytes_pass_through_unchanged_and_normalising_is_idempotent() {
        assert_eq!(base("/a/./\u{1dd}/%41").unwrap(), "/a/\u{1dd}/A");
        assert_eq!(base("/\u{e9}t\u{e9}/../caf\u{e9}?q=\u{e9}").unwrap(), "/caf\u{e9}?q=\u{e9}");
        let once = base("/aC/\u{5}%/2\u{1dd}/c/./x").unwrap();
        assert_eq!(base(&once).unwrap(), once);
    }

    #[test]
    fn dot_segments_are_resolved_per_rfc_3986() {
        for (input, expected) in [
            ("/a/b/c/./../../g", "/a/g"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/../../x", "/x"),
            ("/.", "/"),
            ("/", "/"),
            ("/a//../b", "/a/b"),
            ("/a/..b/c", "/a/..b/c"),
            ("/a/.b", "/a/.b"),
            ("/a/b...", "/a/b..."),
        ] {
            assert_eq!(base(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn a_dot_segment_never_leaves_the_prefix_it_climbs_out_of() {
        assert_eq!(base("/api/../secret").as_deref(), Ok("/secret"));
        assert_eq!(base("/api/v1/../../secret").as_deref(), Ok("/secret"));
        assert_eq!(base("/api/%2e%2e/secret").as_deref(), Ok("/secret"));
        assert_eq!(base("/api/%2E%2e/secret").as_deref(), Ok("/secret"));
        assert_eq!(base("/api/.%2E/secret").as_deref(), Ok("/secret"));
        assert_eq!(base("/api\\..\\secret").as_deref(), Ok("/secret"));
        assert!(!base("/api/%2e%2e/secret").unwrap().starts_with("/api/"));
    }

    #[test]
    fn unreserved_characters_are_decoded_and_others_kept() {
        assert_eq!(base("/%61%62%63/%7Euser/%2D%5F").as_deref(), Ok("/abc/~user/-_"));
        assert_eq!(base("/a%20b/%3F/%25").as_deref(), Ok("/a%20b/%3F/%25"), "reserved and other escapes stay");
        assert_eq!(base("/%252e%252e/x").as_deref(), Ok("/%252e%252e/x"), "decoded once, never twice");
        assert_eq!(base("/a%zz/%4").as_deref(), Ok("/a%zz/%4"), "malformed escapes are not decoded");
    }

    #[test]
    fn the_query_string_is_never_touched() {
        assert_eq!(base("/a/../b?x=/../y&%2e=%2F").as_deref(), Ok("/b?x=/../y&%2e=%2F"));
        assert_eq!(with(EscapedSlashes::Reject, true, "/a?path=%2F%2Fx//y").as_deref(), Ok("/a?path=%2F%2Fx//y"));
        assert!(matches!(PathNormalization::default().apply("/plain?q=/../"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn escaped_slashes_are_kept_rejected_or_unescaped() {
        assert_eq!(with(EscapedSlashes::Keep, false, "/api/..%2Fsecret").as_deref(), Ok("/api/..%2Fsecret"));
        assert_eq!(with(EscapedSlashes::Keep, false, "/a%2fb%5Cc").as_deref(), Ok("/a%2fb%5Cc"));
        assert_eq!(with(EscapedSlashes::Reject, false, "/a%2fb"), Err(PathRejected::EscapedSlash));
        assert_eq!(with(EscapedSlashes::Reject, false, "/a%5cb"), Err(PathRejected::EscapedSlash));
        assert_eq!(with(EscapedSlashes::Reject, false, "/a/b").as_deref(), Ok("/a/b"));
        assert_eq!(with(EscapedSlashes::Unescape, false, "/api/..%2Fsecret").as_deref(), Ok("/secret"));
        assert_eq!(with(EscapedSlashes::Unescape, false, "/a%2fb%5Cc").as_deref(), Ok("/a/b/c"));
        assert_eq!(with(EscapedSlashes::Unescape, true, "/a%2F%2Fb").as_deref(), Ok("/a/b"));
    }

    #[test]
    fn slashes_are_merged_only_when_asked() {
        assert_eq!(base("/a//b///c").as_deref(), Ok("/a//b///c"));
        assert_eq!(with(EscapedSlashes::Keep, true, "/a//b///c").as_deref(), Ok("/a/b/c"));
        assert_eq!(with(EscapedSlashes::Keep, true, "//a/./b//").as_deref(), Ok("/a/b/"));
    }

    #[test]
    fn encoded_nul_is_always_refused() {
        assert_eq!(base("/a%00b"), Err(PathRejected::EncodedNul));
        assert_eq!(with(EscapedSlashes::Unescape, true, "/a/%00"), Err(PathRejected::EncodedNul));
    }

    #[test]
    fn none_and_non_path_targets_are_left_alone() {
        assert_eq!(PathNormalization::NONE.apply("/a/../b%2e").as_deref(), Ok("/a/../b%2e"));
        assert_eq!(base("*").as_deref(), Ok("*"));
        assert_eq!(base("example.com:443").as_deref(), Ok("example.com:443"));
        assert!(matches!(PathNormalization::default().apply("/target/index"), Ok(Cow::Borrowed(_))));
        let unescape_only = PathNormalization { normalize: false, merge_slashes: false, escaped_slashes: EscapedSlashes::Unescape };
        assert_eq!(unescape_only.apply("/a%2Fb/../c%5c").as_deref(), Ok("/a/b/../c\\"));
    }

    /// Every path over a small alphabet of tricky pieces, up to five pieces long: the result is
    /// absolute, has no dot segment, is a fixed point, and never gains an escape it did not have.
    #[test]
    fn every_short_path_normalises_to_a_fixed_point_without_dot_segments() {
        const PIECES: [&str; 9] = ["/", ".", "..", "%2e", "%2E%2e", "%2F", "a", "\\", "//"];
        let options = [
            PathNormalization::default(),
            PathNormalization { merge_slashes: true, ..PathNormalization::default() },
            PathNormalization { escaped_slashes: EscapedSlashes::Unescape, merge_slashes: true, normalize: true },
        ];
        let mut stack = vec![(String::from("/"), 0)];
        let mut checked = 0usize;
        while let Some((path, depth)) = stack.pop() {
            for options in &options {
                let once = options.apply(&path).expect("nothing here is rejected").into_owned();
                assert!(once.starts_with('/'), "{path:?} -> {once:?}");
                assert!(once.split('/').all(|s| s != "." && s != ".."), "{path:?} -> {once:?} keeps a dot segment");
                let twice = options.apply(&once).expect("fixed point").into_owned();
                assert_eq!(once, twice, "{path:?} is not a fixed point under {options:?}");
                if options.merge_slashes {
                    assert!(!once.contains("//"), "{path:?} -> {once:?}");
                }
                checked += 1;
            }
            if depth < 5 {
                for piece in PIECES {
                    stack.push((format!("{path}{piece}"), depth + 1));
                }
            }
        }
        assert!(checked > 10_000, "{checked}");
    }
}
