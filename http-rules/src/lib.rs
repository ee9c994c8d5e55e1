//! HTTP rules that the gateway, its configuration, the differ and the services must apply
//! alike, kept in one place so they cannot drift apart:
//!
//! - [`strip_hop_by_hop`]: the headers that describe one connection (RFC 9110 section 7.6.1);
//! - [`is_secret_header`]: headers whose values are never logged, stored or shown;
//! - [`split_host_port`] and [`host_matches`]: an authority's host, and Istio's host patterns;
//! - [`duration`]: the one duration grammar (Istio's), for routing files and settings alike.

pub mod duration;

use http::header::{self, HeaderMap, HeaderName};

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1). `Trailer` is not
/// one: it names the trailer fields end to end (RFC 9110 section 6.6.2), and hyper sends an
/// HTTP/1.1 client only the trailers it lists.
pub static HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including any that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CONNECTION) {
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Headers that carry credentials: their values are never logged, stored, compared in the clear
/// or shown (`/config`, `/mirrors`, the report page, spans).
pub static SECRET_HEADERS: [HeaderName; 4] = [header::AUTHORIZATION, header::PROXY_AUTHORIZATION, header::COOKIE, header::SET_COOKIE];

pub fn is_secret_header(name: &HeaderName) -> bool {
    SECRET_HEADERS.contains(name)
}

/// An authority's host and port: `name:80`, `10.0.0.1:80`, `[::1]:80`, or any of them without
/// a port (a bare IPv6 address has none). The host of `[::1]` comes back without brackets.
pub fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, port.parse().ok())
        }
        _ => (authority, None),
    }
}

/// Istio's host patterns, case-insensitively: `*` is any host, `*.example.com` any name under
/// `example.com` at any depth (not `example.com` itself), anything else that exact name.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        // "*.example.com": the suffix keeps its dot, so "badexample.com" does not fit.
        Some(suffix) => {
            host.len() > suffix.len() && host.get(host.len() - suffix.len()..).is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", "keep-alive, x-private".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert("x-private", "1".parse().unwrap());
        headers.insert("transfer-encoding", "chunked".parse().unwrap());
        headers.insert("upgrade", "websocket".parse().unwrap());
        headers.insert("x-request-id", "r".parse().unwrap());
        headers.insert("trailer", "x-checksum".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 2);
        assert!(headers.contains_key("x-request-id"));
        assert!(headers.contains_key("trailer"), "end to end (RFC 9110 section 7.6.1)");
    }

    #[test]
    fn host_and_port_forms() {
        assert_eq!(split_host_port("target:8090"), ("target", Some(8090)));
        assert_eq!(split_host_port("target"), ("target", None));
        assert_eq!(split_host_port("10.0.0.1:80"), ("10.0.0.1", Some(80)));
        assert_eq!(split_host_port("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port("host:"), ("host:", None));
    }

    #[test]
    fn host_patterns_as_istio_reads_them() {
        assert!(host_matches("*", "anything.example"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(host_matches("*.example.com", "a.b.EXAMPLE.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "badexample.com"));
        assert!(host_matches("Target", "target"));
        assert!(!host_matches("target", "target.other"));
    }

    #[test]
    fn credentials_are_secret() {
        assert!(is_secret_header(&header::AUTHORIZATION) && is_secret_header(&header::SET_COOKIE));
        assert!(!is_secret_header(&header::CONTENT_TYPE));
    }
}
