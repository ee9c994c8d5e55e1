//! Host names and authorities: the one copy of these rules for the whole workspace.

/// Splits an authority into its host and port text: `host:port`, `[v6]:port`, `[v6]`, a bare
/// IPv6 address (no port), or a host alone. The host comes back without IPv6 brackets; the port
/// is returned as written (the caller decides what a bad one means).
pub fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.split_once(':') {
        // A second colon: an IPv6 address without brackets, which cannot carry a port.
        Some((_, port)) if port.contains(':') => (authority, None),
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

/// Envoy's virtual-host name rule: `*` matches any host; `*suffix` (as in `*.example.com`)
/// matches a host that ends with the suffix and has at least one character before it; any other
/// pattern matches the host exactly. Case-insensitive; `host` is given without its port.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            host.len() > suffix.len() && host.get(host.len() - suffix.len()..).is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        }
        None => host.eq_ignore_ascii_case(pattern),
    }
}

/// Header values that are secrets: never shown in `/config`, logs or diff reports.
pub fn is_secret_header(name: &http::HeaderName) -> bool {
    name == http::header::AUTHORIZATION
        || name == http::header::PROXY_AUTHORIZATION
        || name == http::header::COOKIE
        || name == http::header::SET_COOKIE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(split_host_port("example.com:8080"), ("example.com", Some("8080")));
        assert_eq!(split_host_port("example.com"), ("example.com", None));
        assert_eq!(split_host_port("[::1]:80"), ("::1", Some("80")));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port("a:"), ("a", Some("")));
    }

    #[test]
    fn wildcards() {
        assert!(host_matches("*", "anything"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(host_matches("*.example.com", "A.b.EXAMPLE.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", ".example.com"));
        assert!(!host_matches("*.example.com", "badexample.com"));
        assert!(host_matches("api.test", "API.test"));
        assert!(!host_matches("api.test", "api.test2"));
    }
}
