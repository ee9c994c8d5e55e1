//! The `/proxy?url=` relay of the tutorial's Go service, made safe: it `GET`s the given URL,
//! forwards the trace headers, and streams the upstream's status, `content-type` and body back.
//!
//! An open relay by design, guarded: destinations whose resolved address is link-local or a cloud
//! metadata address are refused (403) before anything is sent. The check runs after DNS resolution,
//! inside the resolver the HTTP client connects with, so the address checked is the one connected
//! to; IP literals (which skip DNS) are checked up front; every redirect hop passes the same checks.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, RawForm, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Deserialize;
use tracing::Instrument;

use service_kit::propagation;

/// `relay` section of the service settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// How long the upstream may take to answer with its headers (-> 504).
    #[serde(with = "http_rules::duration")]
    pub timeout: Duration,
    /// When non-empty, only these hosts (exact, or `*.example.com` for subdomains) may be fetched.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Lifts the link-local / metadata refusal (never needed in compose or Kubernetes).
    #[serde(default)]
    pub allow_link_local: bool,
}

/// Why a relay request was not served; each maps to a status and a short JSON body.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("missing parameter: url")]
    MissingUrl,
    #[error("url is not a valid absolute URL")]
    InvalidUrl,
    #[error("url scheme {0:?} is not allowed (use http or https)")]
    Scheme(String),
    #[error("destination {0} is not allowed (link-local or metadata address)")]
    Forbidden(String),
    #[error("destination host {0} is not on the allow-list")]
    NotAllowed(String),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream unreachable")]
    Unreachable,
}

impl RelayError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingUrl | Self::InvalidUrl | Self::Scheme(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) | Self::NotAllowed(_) => StatusCode::FORBIDDEN,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Unreachable => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for RelayError {
    fn into_response(self) -> Response {
        (self.status(), Json(serde_json::json!({ "error": self.to_string() }))).into_response()
    }
}

/// The relay: a pooled HTTP client behind the address guard.
#[derive(Clone)]
pub struct Relay {
    client: reqwest::Client,
    guard: Arc<Guard>,
    timeout: Duration,
}

struct Guard {
    allow_hosts: Vec<String>,
    allow_link_local: bool,
}

/// Addresses never fetched by default: link-local (which holds the cloud metadata service at
/// 169.254.169.254) and AWS's IPv6 metadata address.
const BLOCKED: [&str; 3] = ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"];

impl Guard {
    fn blocks(&self, ip: IpAddr) -> bool {
        if self.allow_link_local {
            return false;
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        BLOCKED.iter().any(|net| net.parse::<IpNet>().is_ok_and(|net| net.contains(&ip)))
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.allow_hosts.is_empty()
            || self.allow_hosts.iter().any(|allowed| match allowed.strip_prefix("*.") {
                Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(suffix) && host[..host.len() - suffix.len()].ends_with('.'),
                None => allowed.eq_ignore_ascii_case(host),
            })
    }

    /// Checks a URL before any connection: scheme, allow-list, and IP literals (which skip DNS).
    fn check_url(&self, url: &reqwest::Url) -> Result<(), RelayError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RelayError::Scheme(url.scheme().to_owned()));
        }
        let host = match url.host() {
            Some(url::Host::Domain(domain)) => domain.to_owned(),
            Some(url::Host::Ipv4(ip)) => return self.check_ip(IpAddr::V4(ip), &ip.to_string()),
            Some(url::Host::Ipv6(ip)) => return self.check_ip(IpAddr::V6(ip), &ip.to_string()),
            None => return Err(RelayError::InvalidUrl),
        };
        if self.host_allowed(&host) { Ok(()) } else { Err(RelayError::NotAllowed(host)) }
    }

    fn check_ip(&self, ip: IpAddr, host: &str) -> Result<(), RelayError> {
        if self.blocks(ip) {
            Err(RelayError::Forbidden(host.to_owned()))
        } else if !self.host_allowed(host) {
            Err(RelayError::NotAllowed(host.to_owned()))
        } else {
            Ok(())
        }
    }
}

/// The error the resolver returns when every address of a name is blocked.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to blocked addresses")]
struct BlockedDestination(String);

/// DNS through the system resolver, with blocked addresses removed from the answer.
struct GuardedResolver(Arc<Guard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = resolved.filter(|addr| !guard.blocks(addr.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(BlockedDestination(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Finds our own error inside reqwest's error chain.
fn find_cause<'a, E: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<E>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

impl Relay {
    pub fn new(settings: &RelaySettings) -> Result<Self, reqwest::Error> {
        service_kit::install_crypto_provider();
        let guard = Arc::new(Guard { allow_hosts: settings.allow_hosts.clone(), allow_link_local: settings.allow_link_local });
        let builder = || {
            let redirect_guard = guard.clone();
            reqwest::Client::builder()
                .no_proxy()
                .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
                .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() >= 10 {
                        return attempt.error("too many redirects");
                    }
                    match redirect_guard.check_url(attempt.url()) {
                        Ok(()) => attempt.follow(),
                        Err(refusal) => attempt.error(refusal),
                    }
                }))
                .read_timeout(settings.timeout)
        };
        // Without the system's CA certificates (a minimal image) the service still serves http://
        // destinations; https:// ones then fail verification (502) instead of the service not starting.
        let client = match builder().build() {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "no usable CA certificates: https destinations will be refused");
                builder().tls_certs_only([]).build()?
            }
        };
        Ok(Self { client, guard, timeout: settings.timeout })
    }

    /// Fetches `url` with the forwarded headers of `incoming` and streams the answer back.
    pub async fn fetch(&self, url: &str, incoming: &HeaderMap) -> Result<Response, RelayError> {
        let url = reqwest::Url::parse(url).map_err(|_| RelayError::InvalidUrl)?;
        self.guard.check_url(&url)?;
        let span = tracing::info_span!(
            "relay",
            otel.name = "GET",
            otel.kind = "client",
            http.request.method = "GET",
            url.full = %url,
            server.address = url.host_str().unwrap_or_default(),
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            traffic.shadow = tracing::field::Empty,
        );
        if propagation::is_shadow(incoming) {
            span.record("traffic.shadow", true);
        }
        let mut headers = HeaderMap::new();
        propagation::forward(incoming, &mut headers, &span);
        let request = self.client.get(url).headers(headers);
        let sent = tokio::time::timeout(self.timeout, request.send()).instrument(span.clone()).await;
        let upstream = match sent {
            Err(_) => Err(RelayError::Timeout(self.timeout)),
            Ok(Err(error)) => Err(classify(&error, self.timeout)),
            Ok(Ok(response)) => Ok(response),
        };
        let upstream = upstream.inspect_err(|error| {
            span.record("otel.status_code", "ERROR");
            tracing::warn!(parent: &span, %error, "relay failed");
        })?;
        span.record("http.response.status_code", i64::from(upstream.status().as_u16()));
        let mut response = Response::builder().status(upstream.status().as_u16());
        if let Some(content_type) = upstream.headers().get(header::CONTENT_TYPE) {
            response = response.header(header::CONTENT_TYPE, content_type);
        }
        let body = Body::from_stream(upstream.bytes_stream());
        Ok(response.body(body).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
    }
}

fn classify(error: &reqwest::Error, timeout: Duration) -> RelayError {
    if let Some(blocked) = find_cause::<BlockedDestination>(error) {
        return RelayError::Forbidden(blocked.0.clone());
    }
    if let Some(refusal) = find_cause::<RelayError>(error) {
        return match refusal {
            RelayError::Forbidden(host) => RelayError::Forbidden(host.clone()),
            RelayError::NotAllowed(host) => RelayError::NotAllowed(host.clone()),
            RelayError::Scheme(scheme) => RelayError::Scheme(scheme.clone()),
            _ => RelayError::Unreachable,
        };
    }
    if error.is_timeout() {
        return RelayError::Timeout(timeout);
    }
    RelayError::Unreachable
}

/// `GET|POST /proxy`: the parameter `url` from a form body (first) or the query string, as Go's
/// `Request.ParseForm` reads it.
pub async fn proxy_handler(
    State(relay): State<Relay>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    RawForm(form): RawForm,
) -> Result<Response, RelayError> {
    let from_body = if headers.get(header::CONTENT_TYPE).is_some_and(|ct| ct.as_bytes().starts_with(b"application/x-www-form-urlencoded")) {
        url::form_urlencoded::parse(&form).find(|(key, _)| key == "url").map(|(_, value)| value.into_owned())
    } else {
        None
    };
    let target = from_body.or_else(|| query.get("url").cloned()).filter(|url| !url.is_empty()).ok_or(RelayError::MissingUrl)?;
    tracing::info!(url = %target, "relay request");
    relay.fetch(&target, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allow: &[&str]) -> Guard {
        Guard { allow_hosts: allow.iter().map(|s| s.to_string()).collect(), allow_link_local: false }
    }

    #[test]
    fn link_local_and_metadata_addresses_are_blocked_private_ones_are_not() {
        let g = guard(&[]);
        for blocked in ["169.254.169.254", "169.254.1.1", "fe80::1", "fd00:ec2::254", "::ffff:169.254.169.254"] {
            assert!(g.blocks(blocked.parse().unwrap()), "{blocked}");
        }
        for allowed in ["127.0.0.1", "10.0.0.1", "192.168.1.1", "::1", "172.17.0.2"] {
            assert!(!g.blocks(allowed.parse().unwrap()), "{allowed}");
        }
    }

    #[test]
    fn the_allow_list_matches_exact_hosts_and_subdomains() {
        let g = guard(&["target", "*.svc.cluster.local"]);
        assert!(g.host_allowed("target"));
        assert!(g.host_allowed("target.test.svc.cluster.local"));
        assert!(!g.host_allowed("svc.cluster.local"));
        assert!(!g.host_allowed("evil-svc.cluster.local"));
        assert!(!g.host_allowed("example.com"));
    }

    #[test]
    fn urls_are_checked_before_connecting() {
        let g = guard(&[]);
        let check = |u: &str| g.check_url(&reqwest::Url::parse(u).unwrap());
        assert!(matches!(check("ftp://x/"), Err(RelayError::Scheme(_))));
        assert!(matches!(check("http://169.254.169.254/latest"), Err(RelayError::Forbidden(_))));
        assert!(matches!(check("http://[fe80::1]/"), Err(RelayError::Forbidden(_))));
        assert!(check("http://127.0.0.1:8090/index").is_ok());
    }
}
