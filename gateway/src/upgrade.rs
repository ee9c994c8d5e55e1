//! Upgrades proxied end to end, by allow-list, as Envoy's `upgrade_configs` do: a route tunnels
//! the protocols it lists (`websocket` unless it says otherwise; `h2c` never, which the
//! configuration refuses), and the handshake goes to the upstream over HTTP/1.1 with `Upgrade`
//! and `Connection: upgrade` kept; once both sides have switched (101) the two connections are
//! spliced, bytes both ways, until either closes. A request asking for any other protocol is an
//! ordinary request: the hop-by-hop rules take its `Upgrade` and `Connection` off, so what the
//! client sends after it is parsed, routed and checked as requests of its own, never tunnelled
//! to the upstream (the h2c smuggling bypass). Upgrades are never mirrored: a copy cannot hold a
//! conversation.

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::Instrument;

/// The client asked to switch protocols: its `Upgrade` value, and hyper's handle on the
/// connection it will hand over after the 101.
pub struct Requested {
    protocol: HeaderValue,
    client: OnUpgrade,
}

/// An HTTP/1.1 request whose `Connection` names `upgrade` and whose `Upgrade` is one protocol
/// in `allowed` (lowercase names; a version, `foo/2`, is not compared).
pub fn requested<B>(request: &mut Request<B>, allowed: &[String]) -> Option<Requested> {
    if request.version() != Version::HTTP_11 || !connection_names_upgrade(request.headers()) {
        return None;
    }
    let protocol = request.headers().get(UPGRADE)?;
    if !is_allowed(protocol, allowed) {
        return None;
    }
    let protocol = protocol.clone();
    let client = request.extensions_mut().remove::<OnUpgrade>()?;
    Some(Requested { protocol, client })
}

/// One protocol (a list such as `h2c, websocket` is not tunnelled: the upstream would choose),
/// named in `allowed`; `h2c` never, whatever a list says.
fn is_allowed(protocol: &HeaderValue, allowed: &[String]) -> bool {
    let Ok(protocol) = protocol.to_str() else {
        return false;
    };
    let name = protocol.trim().split('/').next().unwrap_or_default();
    !protocol.contains(',') && !name.eq_ignore_ascii_case("h2c") && allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

fn connection_names_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

impl Requested {
    /// Puts back the two hop-by-hop headers the upstream needs to see the handshake.
    pub fn restore(&self, headers: &mut HeaderMap) {
        headers.insert(UPGRADE, self.protocol.clone());
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }

    /// When the upstream switched, puts its `Upgrade` back on the 101 (the hop-by-hop rules
    /// took it off) and splices the two connections in a task of their own; any other answer
    /// is an ordinary response.
    /// `upstream_protocol`: the `Upgrade` header the upstream answered with, if any.
    pub fn finish<B>(self, upstream: &mut Response<B>, upstream_protocol: Option<HeaderValue>) {
        if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
            return;
        }
        let Some(server) = upstream.extensions_mut().remove::<OnUpgrade>() else {
            return;
        };
        let protocol = upstream_protocol.unwrap_or(self.protocol);
        upstream.headers_mut().insert(UPGRADE, protocol);
        upstream.headers_mut().insert(CONNECTION, HeaderValue::from_static("upgrade"));
        let client = self.client;
        tokio::spawn(
            async move {
                let (client, server) = match tokio::join!(client, server) {
                    (Ok(client), Ok(server)) => (client, server),
                    (client, server) => {
                        tracing::debug!(client = client.is_ok(), server = server.is_ok(), "upgrade abandoned");
                        return;
                    }
                };
                let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
                match tokio::io::copy_bidirectional(&mut client, &mut server).await {
                    Ok((up, down)) => tracing::debug!(bytes_to_upstream = up, bytes_to_client = down, "upgraded connection closed"),
                    Err(error) => tracing::debug!(%error, "upgraded connection ended with an error"),
                }
            }
            .in_current_span(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn websocket() -> Vec<String> {
        vec!["websocket".into()]
    }

    fn upgrade_to(protocol: &str, allowed: &[String]) -> bool {
        let mut request = Request::builder().header(CONNECTION, "Upgrade").header(UPGRADE, protocol).body(()).unwrap();
        request.extensions_mut().insert(hyper::upgrade::on(Request::new(())));
        requested(&mut request, allowed).is_some()
    }

    #[test]
    fn only_listed_protocols_are_upgrades_and_h2c_never() {
        assert!(upgrade_to("websocket", &websocket()));
        assert!(upgrade_to("WebSocket", &websocket()));
        assert!(!upgrade_to("h2c", &websocket()));
        assert!(!upgrade_to("foo/1", &websocket()));
        assert!(upgrade_to("foo/1", &["foo".into()]));
        assert!(!upgrade_to("h2c", &["h2c".into()]), "h2c is never tunnelled, even listed");
        assert!(!upgrade_to("h2c, websocket", &websocket()), "a list is not one protocol");
        assert!(!upgrade_to("websocket", &[]), "a route that lists none tunnels none");
    }

    #[test]
    fn only_http_1_1_requests_whose_connection_names_upgrade_are_upgrades() {
        let with = |version, connection: &str, upgrade: Option<&str>| {
            let mut builder = Request::builder().version(version).header(CONNECTION, connection);
            if let Some(u) = upgrade {
                builder = builder.header(UPGRADE, u);
            }
            let mut request = builder.body(()).unwrap();
            // hyper puts this in every request it serves with upgrades enabled.
            request.extensions_mut().insert(hyper::upgrade::on(Request::new(())));
            requested(&mut request, &websocket()).is_some()
        };
        assert!(with(Version::HTTP_11, "keep-alive, Upgrade", Some("websocket")));
        assert!(!with(Version::HTTP_11, "keep-alive", Some("websocket")), "Upgrade not named in Connection");
        assert!(!with(Version::HTTP_11, "upgrade", None));
        assert!(!with(Version::HTTP_10, "upgrade", Some("websocket")));
    }

    #[test]
    fn the_handshake_headers_are_restored_for_the_upstream() {
        let mut request = Request::builder().header(CONNECTION, "Upgrade").header(UPGRADE, "websocket").body(()).unwrap();
        request.extensions_mut().insert(hyper::upgrade::on(Request::new(())));
        let upgrade = requested(&mut request, &websocket()).expect("an upgrade");
        let mut headers = HeaderMap::new();
        upgrade.restore(&mut headers);
        assert_eq!((headers["upgrade"].to_str().unwrap(), headers["connection"].to_str().unwrap()), ("websocket", "upgrade"));
    }
}
