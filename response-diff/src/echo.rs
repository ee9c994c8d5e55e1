//! Reading a shadow's answer in the light of what the gateway changed in its copy of the request.
//!
//! A copy differs from the primary's request by design: the `-shadow` host, the `x-shadow`
//! marker, its own trace context, and the mirror's header changes. Services that echo their
//! request (httpbin's `/anything`, redirects' `Location`, APIs that return the host or the trace
//! id) answer with those differences in them. They are the gateway's doing, not the shadow's, so
//! before diffing, the copy's values found in the shadow's answer are put back to the primary's,
//! echoes of headers only the copy carried are dropped from the shadow's answer, and echoes of
//! headers only the primary carried from the primary's.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use crate::Captured;

/// What the gateway changed in one copy of a request, taken from the two requests as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyChanges {
    /// (in the copy, in the primary's request), longest first so that a longer value is put
    /// back before a shorter one inside it.
    replaced: Vec<(String, String)>,
    /// Headers only the copy carried: (lower-case name, value).
    added: Vec<(String, String)>,
    /// Headers only the primary's request carried: (lower-case name, value).
    removed: Vec<(String, String)>,
}

impl CopyChanges {
    /// The changes from the primary's request headers to the copy's.
    pub fn between(primary: &HeaderMap, copy: &HeaderMap) -> Self {
        let mut changes = CopyChanges::default();
        let text = |value: &HeaderValue| value.to_str().ok().map(str::to_owned);
        for name in copy.keys() {
            let Some(copied) = copy.get(name).and_then(text) else { continue };
            match primary.get(name).and_then(text) {
                Some(original) if original == copied => {}
                Some(original) => {
                    if name == http::header::HOST {
                        // The host also appears without its port (in URLs, X-Forwarded-Host).
                        let (a, b) = (http_rules::split_host_port(&copied).0, http_rules::split_host_port(&original).0);
                        if a != b && (a != copied || b != original) {
                            changes.replaced.push((a.to_owned(), b.to_owned()));
                        }
                    }
                    changes.replaced.push((copied, original));
                }
                None => changes.added.push((name.as_str().to_owned(), copied)),
            }
        }
        for name in primary.keys().filter(|name| !copy.contains_key(*name)) {
            if let Some(original) = primary.get(name).and_then(text) {
                changes.removed.push((name.as_str().to_owned(), original));
            }
        }
        changes.replaced.retain(|(copied, _)| !copied.is_empty());
        changes.replaced.sort_by_key(|(copied, _)| std::cmp::Reverse(copied.len()));
        changes.replaced.dedup();
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.replaced.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }

    /// The shadow's answer with the copy's values put back and its echoes of copy-only headers
    /// dropped; `body` is the decoded body.
    pub(crate) fn undo_in_shadow(&self, headers: &HeaderMap, body: &[u8]) -> (HeaderMap, Vec<u8>) {
        let mut out = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            if self.added.iter().any(|(added, v)| added == name.as_str() && v.as_bytes() == value.as_bytes()) {
                continue;
            }
            let value = match value.to_str() {
                Ok(text) => match self.put_back(text) {
                    Cow::Owned(text) => HeaderValue::from_str(&text).unwrap_or_else(|_| value.clone()),
                    Cow::Borrowed(_) => value.clone(),
                },
                Err(_) => value.clone(),
            };
            out.append(name.clone(), value);
        }
        (out, self.rewrite_body(body, &self.added, true))
    }

    /// The primary's answer with its echoes of headers the copy did not carry dropped.
    pub(crate) fn undo_in_primary(&self, body: &[u8]) -> Vec<u8> {
        self.rewrite_body(body, &self.removed, false)
    }

    fn put_back<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for (copied, original) in &self.replaced {
            if out.contains(copied.as_str()) {
                out = Cow::Owned(out.replace(copied.as_str(), original));
            }
        }
        out
    }

    fn rewrite_body(&self, body: &[u8], only_here: &[(String, String)], put_back: bool) -> Vec<u8> {
        if let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(body) {
            self.rewrite_json(&mut json, only_here, put_back);
            return serde_json::to_vec(&json).unwrap_or_else(|_| body.to_vec());
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return body.to_vec();
        };
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            let lower = line.to_ascii_lowercase();
            // An echoed header line, `Name: value`.
            if only_here.iter().any(|(name, value)| lower.contains(&format!("{name}: ")) && line.contains(value.as_str())) {
                continue;
            }
            out.push_str(&if put_back { self.put_back(line) } else { Cow::Borrowed(line) });
        }
        out.into_bytes()
    }

    fn rewrite_json(&self, value: &mut serde_json::Value, only_here: &[(String, String)], put_back: bool) {
        match value {
            serde_json::Value::String(text) if put_back => {
                if let Cow::Owned(replaced) = self.put_back(text) {
                    *text = replaced;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|item| self.rewrite_json(item, only_here, put_back)),
            serde_json::Value::Object(map) => {
                map.retain(|key, value| {
                    !only_here.iter().any(|(name, echoed)| key.eq_ignore_ascii_case(name) && value.as_str() == Some(echoed.as_str()))
                });
                for item in map.values_mut() {
                    self.rewrite_json(item, only_here, put_back);
                }
            }
            _ => {}
        }
    }
}

/// Both answers with the copy's changes undone, bodies decoded; `None` when there is nothing to
/// undo or a body does not decode (the plain comparison then says why).
pub(crate) fn undo(primary: &Captured, shadow: &Captured, changes: &CopyChanges) -> Option<(Captured, Captured)> {
    if changes.is_empty() || primary.truncated || shadow.truncated {
        return None;
    }
    let primary_body = crate::decode::decode(&primary.body, &crate::decode::codings(&primary.headers)).ok()?;
    let shadow_body = crate::decode::decode(&shadow.body, &crate::decode::codings(&shadow.headers)).ok()?;
    let (shadow_headers, shadow_body) = changes.undo_in_shadow(&shadow.headers, &shadow_body);
    let primary_body = changes.undo_in_primary(&primary_body);
    // Bodies are now decoded and may have been re-serialised: their encodings and lengths say
    // nothing any more (the bodies themselves are still compared).
    let strip = |mut headers: HeaderMap| {
        headers.remove(http::header::CONTENT_ENCODING);
        headers.remove(http::header::CONTENT_LENGTH);
        headers
    };
    Some((
        Captured { status: primary.status, headers: strip(primary.headers.clone()), body: Bytes::from(primary_body), truncated: false },
        Captured { status: shadow.status, headers: strip(shadow_headers), body: Bytes::from(shadow_body), truncated: false },
    ))
}
