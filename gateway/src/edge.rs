//! Request checks at the edge, before routing: what a request must be to be routed at all, and
//! the one form of its head that matching, rewriting, the primary and the copies all see.
//!
//! - `Host`: exactly one in HTTP/1.1 (RFC 9112 section 3.2), at most one otherwise; two could
//!   route by one and be served by the other.
//! - `TRACE` is refused unless the settings forward it: it reflects the request, credentials
//!   included, back to whoever can read the answer.
//! - The path is normalised ([`gateway_config::PathNormalization`]): `/api/../secret` is
//!   matched, rewritten and sent as `/secret`.
//! - HTTP/2 cookie fields are joined with `"; "` (RFC 9113 section 8.2.3), since an HTTP/1.1
//!   upstream takes one `Cookie` header.

use http::header::{COOKIE, HOST};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};

use crate::proxy::GatewayError;
use crate::settings::{RequestSettings, TracePolicy};

/// Applies every check and normalisation to `request`, in place.
pub fn check<B>(request: &mut Request<B>, settings: &RequestSettings) -> Result<(), GatewayError> {
    host_framing(request.version(), request.headers())?;
    if request.method() == Method::TRACE && settings.trace == TracePolicy::Reject {
        return Err(GatewayError::MethodNotAllowed);
    }
    normalize_path(request.uri_mut(), &settings.path)?;
    if request.version() == Version::HTTP_2 {
        join_cookies(request.headers_mut());
    }
    Ok(())
}

fn host_framing(version: Version, headers: &HeaderMap) -> Result<(), GatewayError> {
    match headers.get_all(HOST).iter().count() {
        0 if version == Version::HTTP_11 => Err(GatewayError::BadRequest("missing Host header")),
        0 | 1 => Ok(()),
        _ => Err(GatewayError::BadRequest("more than one Host header")),
    }
}

fn normalize_path(uri: &mut Uri, normalization: &gateway_config::PathNormalization) -> Result<(), GatewayError> {
    let Some(original) = uri.path_and_query() else {
        return Ok(());
    };
    let normalized = match normalization.apply(original.as_str()) {
        Ok(std::borrow::Cow::Borrowed(_)) => return Ok(()),
        Ok(std::borrow::Cow::Owned(normalized)) => normalized,
        Err(gateway_config::PathRejected::EscapedSlash) => return Err(GatewayError::BadRequest("escaped slash in the path")),
        Err(gateway_config::PathRejected::EncodedNul) => return Err(GatewayError::BadRequest("encoded NUL in the path")),
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(normalized).map_err(|_| GatewayError::BadRequestUri)?);
    *uri = Uri::from_parts(parts).map_err(|_| GatewayError::BadRequestUri)?;
    Ok(())
}

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
    use gateway_config::{EscapedSlashes, PathNormalization};

    use super::*;

    fn settings() -> RequestSettings {
        RequestSettings { trace: TracePolicy::Reject, buffer_body: 0, path: PathNormalization::default() }
    }

    fn request(version: Version, method: Method, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().version(version).method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn refusal(r: &mut Request<()>, settings: &RequestSettings) -> Option<String> {
        check(r, settings).err().map(|e| e.to_string())
    }

    #[test]
    fn http_1_1_needs_exactly_one_host() {
        let s = settings();
        assert_eq!(refusal(&mut request(Version::HTTP_11, Method::GET, "/", &[("host", "a")]), &s), None);
        assert_eq!(refusal(&mut request(Version::HTTP_11, Method::GET, "/", &[]), &s).as_deref(), Some("missing Host header"));
        let two = &[("host", "a"), ("host", "b")];
        assert_eq!(refusal(&mut request(Version::HTTP_11, Method::GET, "/", two), &s).as_deref(), Some("more than one Host header"));
        assert_eq!(refusal(&mut request(Version::HTTP_10, Method::GET, "/", &[]), &s), None, "HTTP/1.0 may omit it");
        assert_eq!(refusal(&mut request(Version::HTTP_2, Method::GET, "http://a/", &[]), &s), None, "h2 has :authority");
        assert!(refusal(&mut request(Version::HTTP_2, Method::GET, "http://a/", two), &s).is_some());
    }

    #[test]
    fn trace_is_refused_unless_forwarded() {
        let mut trace = request(Version::HTTP_11, Method::TRACE, "/", &[("host", "a")]);
        assert!(matches!(check(&mut trace, &settings()), Err(GatewayError::MethodNotAllowed)));
        let forward = RequestSettings { trace: TracePolicy::Forward, ..settings() };
        assert!(check(&mut trace, &forward).is_ok());
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
