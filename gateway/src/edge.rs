//! The gateway's own request checks, before routing, as named phases over the request head:
//! what a request must be to be routed at all, and the one form of its head that matching,
//! rewriting, the primary and the copies all see. The generic rules (sizes, one `Host`, the
//! target's authority as `Host`) are the listener's (`service_kit::serve`), met before this;
//! none is checked twice.
//!
//! In order:
//! 1. `screen_shadow_marker`: a client's `x-shadow` that this deployment did not make is
//!    removed, so the request is routed, mirrored and compared as the live traffic it is
//!    ([`crate::shadow`] says who may set it). First, so that it happens to every request,
//!    refused ones included (their spans say whether they were shadow traffic).
//! 2. `refuse_method`: `TRACE` is refused unless the settings forward it: it reflects the
//!    request, credentials included, back to whoever can read the answer.
//! 3. `normalize_path` ([`gateway_config::PathNormalization`]): `/api/../secret` is matched,
//!    rewritten and sent as `/secret`.
//! 4. `join_cookies`: HTTP/2 cookie fields are joined with `"; "` (RFC 9113 section 8.2.3),
//!    since an HTTP/1.1 upstream takes one `Cookie` header.

use http::header::COOKIE;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};
use service_kit::serve::ClientAddr;

use crate::error::GatewayError;
use crate::settings::{RequestSettings, TracePolicy};
use crate::shadow::ShadowMarker;

/// Every phase, in order, on `request`, in place.
pub fn check<B>(request: &mut Request<B>, settings: &RequestSettings, marker: &ShadowMarker) -> Result<(), GatewayError> {
    screen_shadow_marker(request, marker);
    refuse_method(request.method(), settings.trace)?;
    normalize_path(request.uri_mut(), &settings.path)?;
    if request.version() == Version::HTTP_2 {
        join_cookies(request.headers_mut());
    }
    Ok(())
}

/// Phase 1: an untrusted shadow marker goes, with the `-shadow` host suffix that came with it.
fn screen_shadow_marker<B>(request: &mut Request<B>, marker: &ShadowMarker) {
    let client = request.extensions().get::<ClientAddr>().map(|ClientAddr(addr)| addr.ip());
    marker.screen(request.headers_mut(), client);
}

/// Phase 2.
fn refuse_method(method: &Method, trace: TracePolicy) -> Result<(), GatewayError> {
    if method == Method::TRACE && trace == TracePolicy::Reject {
        return Err(GatewayError::MethodNotAllowed);
    }
    Ok(())
}

/// Phase 3.
fn normalize_path(uri: &mut Uri, normalization: &gateway_config::PathNormalization) -> Result<(), GatewayError> {
    let Some(original) = uri.path_and_query() else {
        return Ok(());
    };
    let normalized = match normalization.apply(original.as_str()) {
        Ok(std::borrow::Cow::Borrowed(_)) => return Ok(()),
        Ok(std::borrow::Cow::Owned(normalized)) => normalized,
        Err(rejected) => return Err(GatewayError::RejectedPath(rejected)),
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(normalized).map_err(|_| GatewayError::BadRequestUri)?);
    *uri = Uri::from_parts(parts).map_err(|_| GatewayError::BadRequestUri)?;
    Ok(())
}

/// Phase 4 (HTTP/2 only).
fn join_cookies(headers: &mut HeaderMap) {
    let mut fields = headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (fields.next(), fields.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for field in headers.get_all(COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(field.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gateway_config::{EscapedSlashes, PathNormalization};

    use super::*;
    use crate::settings::{EjectionSettings, ShadowSettings};

    fn settings() -> RequestSettings {
        RequestSettings { trace: TracePolicy::Reject, buffer_body: 0, path: PathNormalization::default() }
    }

    fn marker() -> ShadowMarker {
        let ejection = EjectionSettings { consecutive_failures: 5, base_time: Duration::from_secs(30), max_time: Duration::from_secs(300) };
        ShadowMarker::new(&ShadowSettings { key: "k".into(), trusted_networks: Vec::new(), max_age: Duration::from_secs(30), ejection })
            .unwrap()
    }

    fn request(version: Version, method: Method, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().version(version).method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn check(r: &mut Request<()>, settings: &RequestSettings) -> Result<(), GatewayError> {
        super::check(r, settings, &marker())
    }

    fn refusal(r: &mut Request<()>, settings: &RequestSettings) -> Option<String> {
        check(r, settings).err().map(|e| e.to_string())
    }

    #[test]
    fn trace_is_refused_unless_forwarded() {
        let mut trace = request(Version::HTTP_11, Method::TRACE, "/", &[("host", "a")]);
        assert!(matches!(check(&mut trace, &settings()), Err(GatewayError::MethodNotAllowed)));
        let forward = RequestSettings { trace: TracePolicy::Forward, ..settings() };
        assert!(check(&mut trace, &forward).is_ok());
    }

    #[test]
    fn a_client_s_shadow_marker_is_removed_first_even_from_a_request_refused_later() {
        let forged = &[("host", "shop-shadow"), ("x-shadow", "v2")];
        let mut trace = request(Version::HTTP_11, Method::TRACE, "/", forged);
        assert!(matches!(check(&mut trace, &settings()), Err(GatewayError::MethodNotAllowed)));
        assert!(!trace.headers().contains_key("x-shadow"));
        assert_eq!(trace.headers()["host"], "shop", "the suffix that came with it goes too");
        let mut get = request(Version::HTTP_11, Method::GET, "/", forged);
        check(&mut get, &settings()).unwrap();
        assert!(!get.headers().contains_key("x-shadow"));
    }

    #[test]
    fn the_path_is_normalised_in_place_and_the_authority_kept() {
        let mut r = request(Version::HTTP_11, Method::GET, "http://shop.test:8080/api/%2e%2e/secret?x=/../", &[("host", "a")]);
        check(&mut r, &settings()).unwrap();
        assert_eq!(r.uri().to_string(), "http://shop.test:8080/secret?x=/../");
        let mut origin_form = request(Version::HTTP_11, Method::GET, "/a/./b/../c", &[("host", "a")]);
        check(&mut origin_form, &settings()).unwrap();
        assert_eq!(origin_form.uri().to_string(), "/a/c");
        let reject =
            RequestSettings { path: PathNormalization { escaped_slashes: EscapedSlashes::Reject, ..Default::default() }, ..settings() };
        let mut escaped = request(Version::HTTP_11, Method::GET, "/a%2Fb", &[("host", "a")]);
        assert_eq!(refusal(&mut escaped, &reject).as_deref(), Some("escaped slash in the path"));
    }

    #[test]
    fn http2_cookie_fields_are_joined_with_semicolons() {
        let crumbs = &[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")];
        let mut h2 = request(Version::HTTP_2, Method::GET, "http://a/", crumbs);
        check(&mut h2, &settings()).unwrap();
        let cookies: Vec<_> = h2.headers().get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2; c=3"]);
        let mut single = request(Version::HTTP_2, Method::GET, "http://a/", &[("cookie", "a=1")]);
        check(&mut single, &settings()).unwrap();
        assert_eq!(single.headers()["cookie"], "a=1");
    }
}
