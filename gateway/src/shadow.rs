//! A shadow request's marks, and who may set them: the marker `x-shadow`, and the `-shadow`
//! suffix of its host ([`shadow_host`] puts it on a copy; [`ShadowMarker::screen`] takes it off,
//! with the marker, where a client forged them).
//!
//! Copies carry `x-shadow: <mirror>; t=<unix seconds>; sig=<MAC>`: the mirror's name, when the
//! copy was made, and an HMAC-SHA256 of both and the request id under this deployment's key. A
//! service only checks that the header is there (it marks its spans and logs as shadow traffic);
//! the gateway, at its edge, checks who set it:
//!
//! - a marker whose MAC verifies under the key and is at most `shadow.max_age` old was made by a
//!   gateway of this deployment (this one, or another with the same `shadow.key`): the request is
//!   a copy coming back, it keeps its marker and is never copied again (the loop guard);
//! - a marker from a client in `shadow.trusted_networks` is kept as it is (a mesh of gateways
//!   behind a trusted network boundary);
//! - any other marker is a client's, untrusted, as Envoy treats its internal headers from
//!   untrusted downstreams: it is removed, with the `-shadow` host suffix that came with it,
//!   before routing, so the request is routed, mirrored and compared as the live traffic it is.
//!
//! Threat model: a client cannot hide requests from mirroring or make live traffic look like
//! shadow traffic without the key. A client that has seen a copy's marker (it travels only to
//! shadow services) can replay it, for the same request id, within `max_age`.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::header::{HOST, HeaderMap, HeaderValue};
use ipnet::IpNet;
use service_kit::propagation::SHADOW_HEADER;
use sha2::Sha256;

use crate::settings::ShadowSettings;

/// Bytes of the MAC kept in the marker (128 bits).
const MAC_BYTES: usize = 16;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Signs the markers of this gateway's copies and screens those that arrive.
pub struct ShadowMarker {
    /// HMAC-SHA256 keyed once: each marker clones it instead of hashing the key again.
    keyed: Hmac<Sha256>,
    trusted: Vec<IpNet>,
    max_age: Duration,
}

/// What the edge made of a request's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// No marker: live traffic.
    None,
    /// A copy made by this deployment, or sent from a trusted network: shadow traffic.
    Trusted,
    /// A client's marker, removed: live traffic.
    Removed,
}

impl ShadowMarker {
    /// From the settings; an empty key is replaced by a random one (then only this process
    /// recognises its own copies).
    pub fn new(settings: &ShadowSettings) -> Result<Self, String> {
        let key = if settings.key.is_empty() { rand::random::<[u8; 32]>().to_vec() } else { settings.key.as_bytes().to_vec() };
        let trusted = settings
            .trusted_networks
            .iter()
            .map(|net| {
                net.parse::<IpNet>()
                    .or_else(|_| net.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("shadow.trusted_networks: {net:?} is not a network (10.0.0.0/8) or an address"))
            })
            .collect::<Result<_, _>>()?;
        // HMAC takes keys of any length.
        let keyed = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| "shadow.key: not usable as an HMAC key".to_owned())?;
        Ok(Self { keyed, trusted, max_age: settings.max_age })
    }

    /// The `x-shadow` value for a copy of `request_id` made by mirror `name`, now.
    pub fn sign(&self, name: &str, request_id: &[u8]) -> Option<HeaderValue> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // Built in one buffer that becomes the header value: this runs for every copy.
        let mut value = Vec::with_capacity(name.len() + 40 + MAC_BYTES * 2);
        value.extend_from_slice(name.as_bytes());
        value.extend_from_slice(b"; t=");
        std::io::Write::write_fmt(&mut value, format_args!("{now}")).ok()?;
        value.extend_from_slice(b"; sig=");
        for byte in &self.mac(name, now, request_id)[..MAC_BYTES] {
            value.extend_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
        }
        HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).ok()
    }

    /// Keeps a trusted marker, removes an untrusted one (and the `-shadow` host suffix that came
    /// with it); `client` is the connection's peer address.
    pub fn screen(&self, headers: &mut HeaderMap, client: Option<IpAddr>) -> Marker {
        let Some(value) = headers.get(SHADOW_HEADER) else {
            return Marker::None;
        };
        if client.is_some_and(|ip| self.trusted.iter().any(|net| net.contains(&ip))) || self.verifies(value.as_bytes(), headers) {
            return Marker::Trusted;
        }
        headers.remove(SHADOW_HEADER);
        if let Some(live) =
            headers.get(HOST).and_then(|h| h.to_str().ok()).and_then(unshadowed_host).and_then(|h| HeaderValue::from_str(&h).ok())
        {
            headers.insert(HOST, live);
        }
        Marker::Removed
    }

    fn verifies(&self, value: &[u8], headers: &HeaderMap) -> bool {
        let Ok(value) = std::str::from_utf8(value) else { return false };
        let Some((rest, sig)) = value.rsplit_once("; sig=") else { return false };
        let Some((name, at)) = rest.rsplit_once("; t=") else { return false };
        let Ok(at) = at.parse::<u64>() else { return false };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let max_age = self.max_age.as_secs();
        // A little room for clocks of other replicas that run ahead.
        if at > now + max_age || now.saturating_sub(at) > max_age {
            return false;
        }
        let request_id = headers.get("x-request-id").map_or(&b""[..], HeaderValue::as_bytes);
        let Ok(expected) = hex_decode(sig) else { return false };
        let mut mac = self.hmac();
        feed(&mut mac, name, at, request_id);
        mac.verify_truncated_left(&expected).is_ok()
    }

    fn mac(&self, name: &str, at: u64, request_id: &[u8]) -> [u8; 32] {
        let mut mac = self.hmac();
        feed(&mut mac, name, at, request_id);
        mac.finalize().into_bytes().into()
    }

    fn hmac(&self) -> Hmac<Sha256> {
        self.keyed.clone()
    }
}

fn feed(mac: &mut Hmac<Sha256>, name: &str, at: u64, request_id: &[u8]) {
    mac.update(name.as_bytes());
    mac.update(&[0]);
    mac.update(&at.to_be_bytes());
    mac.update(&[0]);
    mac.update(request_id);
}

fn hex_decode(text: &str) -> Result<Vec<u8>, ()> {
    if text.len() != MAC_BYTES * 2 {
        return Err(());
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2).ok_or(())?, 16).map_err(|_| ())).collect()
}

/// The copy's host: `-shadow` appended to the name, the port kept (Envoy's convention).
pub fn shadow_host(host: &str) -> String {
    // "name:port" or "[v6]:port"; a bare IPv6 address has no port to keep.
    if let (_, Some(_)) = http_rules::split_host_port(host)
        && let Some((name, port)) = host.rsplit_once(':')
    {
        return format!("{name}-shadow:{port}");
    }
    format!("{host}-shadow")
}

/// [`shadow_host`] undone: `target-shadow:8090` -> `target:8090`; `None` when the host has no
/// `-shadow` suffix (or is an IPv6 literal, which a client's forged marker cannot have shadowed).
fn unshadowed_host(host: &str) -> Option<String> {
    let (name, port) = http_rules::split_host_port(host);
    let bare = if host.starts_with('[') { return None } else { name.strip_suffix("-shadow")? };
    Some(match port {
        Some(port) => format!("{bare}:{port}"),
        None => bare.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EJECTION: crate::settings::EjectionSettings = crate::settings::EjectionSettings {
        consecutive_failures: 5,
        base_time: Duration::from_secs(30),
        max_time: Duration::from_secs(300),
    };

    fn marker(key: &str, trusted: &[&str]) -> ShadowMarker {
        ShadowMarker::new(&ShadowSettings {
            key: key.into(),
            trusted_networks: trusted.iter().map(|s| s.to_string()).collect(),
            max_age: Duration::from_secs(30),
            ejection: EJECTION,
        })
        .unwrap()
    }

    fn request(marker: &str, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", "r-1".parse().unwrap());
        headers.insert("host", host.parse().unwrap());
        headers.insert("x-shadow", marker.parse().unwrap());
        headers
    }

    #[test]
    fn a_marker_signed_by_this_deployment_is_trusted_and_one_forged_is_removed() {
        let gateway = marker("k", &[]);
        let signed = gateway.sign("v2", b"r-1").unwrap();
        let mut copy = request(signed.to_str().unwrap(), "target-shadow:8090");
        assert_eq!(gateway.screen(&mut copy, None), Marker::Trusted);
        assert_eq!(copy["host"], "target-shadow:8090", "a copy keeps its shadow host");

        let other_replica = marker("k", &[]);
        assert_eq!(other_replica.screen(&mut request(signed.to_str().unwrap(), "t"), None), Marker::Trusted, "same key, same deployment");

        for forged in ["v2", "v2; t=1; sig=00", &signed.to_str().unwrap().replace("v2;", "v3;")] {
            let mut spoofed = request(forged, "target-shadow:8090");
            assert_eq!(gateway.screen(&mut spoofed, None), Marker::Removed, "{forged}");
            assert!(!spoofed.contains_key("x-shadow"));
            assert_eq!(spoofed["host"], "target:8090", "the suffix that came with it goes too");
        }
        let mut other_request = request(signed.to_str().unwrap(), "t");
        other_request.insert("x-request-id", "r-2".parse().unwrap());
        assert_eq!(gateway.screen(&mut other_request, None), Marker::Removed, "a marker is bound to its request id");
        assert_eq!(marker("other key", &[]).screen(&mut request(signed.to_str().unwrap(), "t"), None), Marker::Removed);
    }

    #[test]
    fn a_stale_marker_is_not_trusted() {
        let gateway = marker("k", &[]);
        let old = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 120;
        let sig: String = gateway.mac("v2", old, b"r-1")[..MAC_BYTES].iter().map(|b| format!("{b:02x}")).collect();
        let stale = format!("v2; t={old}; sig={sig}");
        assert_eq!(gateway.screen(&mut request(&stale, "t"), None), Marker::Removed);
    }

    #[test]
    fn markers_from_trusted_networks_are_kept_as_they_are() {
        let gateway = marker("", &["10.0.0.0/8", "192.0.2.7"]);
        assert_eq!(gateway.screen(&mut request("upstream-gateway", "t"), Some("10.1.2.3".parse().unwrap())), Marker::Trusted);
        assert_eq!(gateway.screen(&mut request("upstream-gateway", "t"), Some("192.0.2.7".parse().unwrap())), Marker::Trusted);
        assert_eq!(gateway.screen(&mut request("upstream-gateway", "t"), Some("192.0.2.8".parse().unwrap())), Marker::Removed);
        assert!(
            ShadowMarker::new(&ShadowSettings {
                key: String::new(),
                trusted_networks: vec!["nope".into()],
                max_age: Duration::ZERO,
                ejection: EJECTION
            })
            .is_err()
        );
    }

    #[test]
    fn no_marker_is_live_traffic_and_its_host_is_left_alone() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "my-shadow".parse().unwrap());
        assert_eq!(marker("k", &[]).screen(&mut headers, None), Marker::None);
        assert_eq!(headers["host"], "my-shadow");
        assert_eq!(unshadowed_host("a-shadow"), Some("a".into()));
        assert_eq!(unshadowed_host("a"), None);
    }

    #[test]
    fn the_shadow_host_keeps_the_port() {
        assert_eq!(shadow_host("target"), "target-shadow");
        assert_eq!(shadow_host("target:8090"), "target-shadow:8090");
        assert_eq!(shadow_host("10.0.0.1:80"), "10.0.0.1-shadow:80");
        assert_eq!(shadow_host("[::1]:80"), "[::1]-shadow:80");
    }

    #[test]
    fn removing_the_suffix_undoes_adding_it() {
        for host in ["target", "target:8090", "shop.example.com", "10.0.0.1:80"] {
            assert_eq!(unshadowed_host(&shadow_host(host)).as_deref(), Some(host));
        }
    }
}
