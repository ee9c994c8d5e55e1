//! The native format's documents as serde reads them: what `docs/CONTRACT.md` ("Native gateway
//! configuration") allows, each value checked where it is written. Unknown keys are errors
//! naming the key (`deny_unknown_fields`), so nothing is ever ignored.

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::de::{
    Count, Dur, HName, HValue, JsonPathText, MatchSpec, MethodName, OneOrMany, Ordered, Percent, RegexText, Scalar, ShortOrMap, Size, U32,
};
use crate::model::{HeaderMatch, MethodSet, Protocol, RouteMatch, StringMatch, VerdictSpec};
use crate::sources::HostPort;
use http_rules::split_host_port;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(default)]
    pub(super) services: Ordered<Service>,
    #[serde(default)]
    pub(super) routes: Vec<NRoute>,
    #[serde(default)]
    pub(super) defaults: Defaults,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Defaults {
    pub(super) mirror: Option<CommonMirror>,
}

/// `echo: [127.0.0.1:9000]`, `echo: 127.0.0.1:9000` or `target: {v1: [...], v2: [...]}`.
pub(super) type Service = ShortOrMap<OneOrMany<EndpointText>, ServiceMap>;

/// A service's mapping form: subsets, with two reserved keys, `protocol` (http1 | http2 | auto)
/// and `endpoints` (the endpoints of a service without subsets).
pub(super) struct ServiceMap {
    pub(super) protocol: Option<Protocol>,
    pub(super) endpoints: Option<Vec<HostPort>>,
    pub(super) subsets: Vec<(String, Vec<HostPort>)>,
}

/// `http1`, `http2` or `auto` (Istio's names, `HTTP2`, `GRPC`, ..., are accepted too).
pub(super) struct ProtocolName(pub(super) Protocol);

impl<'de> Deserialize<'de> for ProtocolName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Protocol::from_name(&name)
            .map(ProtocolName)
            .ok_or_else(|| de::Error::custom(format!("unknown protocol \"{name}\" (expected http1, http2 or auto)")))
    }
}

impl<'de> Deserialize<'de> for ServiceMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = ServiceMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("subsets (v1: [host:port]), or protocol and endpoints")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<ServiceMap, A::Error> {
                let mut service = ServiceMap { protocol: None, endpoints: None, subsets: Vec::new() };
                let endpoints = |eps: OneOrMany<EndpointText>| eps.items.into_iter().map(|e| e.0).collect::<Vec<_>>();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "protocol" => service.protocol = Some(map.next_value::<ProtocolName>()?.0),
                        "endpoints" => service.endpoints = Some(endpoints(map.next_value()?)),
                        _ => service.subsets.push((key, endpoints(map.next_value()?))),
                    }
                }
                Ok(service)
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NRoute {
    pub(super) name: Option<Scalar>,
    pub(super) hosts: Option<OneOrMany<String>>,
    #[serde(rename = "match")]
    pub(super) matches: Option<OneOrMany<NMatch>>,
    pub(super) rewrite: Option<ShortOrMap<Scalar, NRewrite>>,
    pub(super) to: OneOrMany<ShortOrMap<DestText, Weighted>>,
    pub(super) timeout: Option<Dur>,
    pub(super) mirror: Option<ShortOrMap<DestText, NMirror>>,
    pub(super) mirrors: Option<Vec<ShortOrMap<DestText, NMirror>>>,
    pub(super) promote: Option<NPromote>,
    /// `upgrades: [websocket, my-proto]`: the `Upgrade` protocols tunnelled (default websocket).
    pub(super) upgrades: Option<Vec<String>>,
    /// `retries: { attempts: 2, per_try_timeout: 1s, retry_on: "connect-failure,503", backoff: 25ms }`.
    pub(super) retries: Option<NRetries>,
}

/// A native route's retry policy; `retry_on` uses Envoy's and Istio's tokens, and one the gateway
/// does not implement is refused by name (in Istio files it is a warning: they are written for Envoy).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NRetries {
    pub(super) attempts: U32,
    pub(super) per_try_timeout: Option<Dur>,
    pub(super) retry_on: Option<String>,
    pub(super) backoff: Option<Dur>,
}

/// `promote: { to: shop/v2, steps: [10, 25, 50, 100], hold: 5m }` (steps and hold optional);
/// checked in validation, which names the key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NPromote {
    pub(super) to: DestText,
    pub(super) steps: Option<Vec<U32>>,
    pub(super) hold: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NRewrite {
    pub(super) uri: Option<Scalar>,
    pub(super) authority: Option<Scalar>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Weighted {
    pub(super) to: DestText,
    pub(super) weight: Option<U32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawMatch")]
pub(super) struct NMatch(pub(super) RouteMatch);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub(super) prefix: Option<Scalar>,
    pub(super) exact: Option<Scalar>,
    pub(super) regex: Option<RegexText>,
    pub(super) methods: Option<OneOrMany<MethodName>>,
    #[serde(default)]
    pub(super) headers: Ordered<ShortOrMap<Scalar, MatchSpec>, HName>,
    pub(super) authority: Option<ShortOrMap<Scalar, MatchSpec>>,
}

impl TryFrom<RawMatch> for NMatch {
    type Error = String;
    fn try_from(m: RawMatch) -> std::result::Result<Self, String> {
        let uris = [m.prefix.map(|Scalar(p)| StringMatch::Prefix(p)), m.exact.map(|Scalar(e)| StringMatch::Exact(e)), m.regex.map(|r| r.0)];
        let mut uris = uris.into_iter().flatten();
        let uri = uris.next();
        if uris.next().is_some() {
            return Err("a match takes at most one of prefix, exact or regex".into());
        }
        let mut headers = Vec::new();
        for (HName(name), value) in m.headers.0 {
            headers.push(HeaderMatch { name, value: bare_or_match(value) });
        }
        Ok(NMatch(RouteMatch {
            uri,
            methods: m.methods.map(|m| m.items.into_iter().map(|m| m.0).collect()).unwrap_or_default(),
            headers,
            authority: m.authority.map(bare_or_match),
            query_params: Vec::new(),
            ignore_uri_case: false,
        }))
    }
}

/// A bare string means an exact match.
fn bare_or_match(v: ShortOrMap<Scalar, MatchSpec>) -> StringMatch {
    match v {
        ShortOrMap::Short(Scalar(s)) => StringMatch::Exact(s),
        ShortOrMap::Map(MatchSpec(m)) => m,
    }
}

/// `host` or `host/subset`.
pub(super) struct DestText {
    pub(super) host: String,
    pub(super) subset: Option<String>,
}

impl<'de> Deserialize<'de> for DestText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let (host, subset) = match text.split_once('/') {
            Some((h, s)) => (h, Some(s)),
            None => (text.as_str(), None),
        };
        if host.is_empty() || subset.is_some_and(|s| s.is_empty() || s.contains('/')) {
            return Err(de::Error::custom(format!("invalid destination \"{text}\": expected host or host/subset")));
        }
        Ok(DestText { host: host.to_string(), subset: subset.map(str::to_string) })
    }
}

pub(super) struct EndpointText(pub(super) HostPort);

impl<'de> Deserialize<'de> for EndpointText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_endpoint(&text).map(EndpointText).map_err(|e| de::Error::custom(format!("bad endpoint \"{text}\": {e}")))
    }
}

/// `host:port` or `[v6]:port`.
fn parse_endpoint(text: &str) -> std::result::Result<HostPort, String> {
    let (host, port) = split_host_port(text);
    let Some(port) = port else {
        return Err(if text.starts_with('[') { "expected [address]:port for IPv6".into() } else { "expected host:port".into() });
    };
    if host.is_empty() || host.contains(['/', ' ', '[', ']']) {
        return Err("invalid host".into());
    }
    if port == 0 {
        return Err("port 0 is not a valid port".into());
    }
    Ok(HostPort { host: host.to_string(), port })
}

/// The settings a mirror shares with `defaults.mirror`.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct CommonMirror {
    pub(super) timeout: Option<Dur>,
    pub(super) max_in_flight: Option<Count>,
    pub(super) max_body: Option<Size>,
    pub(super) methods: Option<Methods>,
    pub(super) sample_header: Option<HName>,
    pub(super) shadow_host: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NMirror {
    pub(super) to: DestText,
    pub(super) name: Option<Scalar>,
    pub(super) percent: Option<Percent>,
    pub(super) timeout: Option<Dur>,
    pub(super) max_in_flight: Option<Count>,
    pub(super) max_body: Option<Size>,
    pub(super) methods: Option<Methods>,
    pub(super) sample_header: Option<HName>,
    pub(super) shadow_host: Option<bool>,
    pub(super) headers: Option<MirrorHeaders>,
    pub(super) compare: Option<ShortOrMap<bool, NCompare>>,
    pub(super) verdict: Option<ShortOrMap<bool, NVerdict>>,
    pub(super) capture: Option<NCapture>,
}

/// `capture:` of a mirror: `{ file: shop.har, sample: 10%, max_body: 64KiB,
/// rotate: { max_size: 100MiB, keep: 5 }, redact_headers: [x-api-key], redact_paths: [$.card] }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NCapture {
    pub(super) file: Scalar,
    pub(super) sample: Option<Percent>,
    pub(super) max_body: Option<Size>,
    pub(super) rotate: Option<NRotate>,
    pub(super) redact_headers: Option<OneOrMany<HName>>,
    pub(super) redact_paths: Option<OneOrMany<JsonPathText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NRotate {
    pub(super) max_size: Option<Size>,
    pub(super) keep: Option<Count>,
}

/// `verdict:` keys, each read by [`VerdictSpec::set`]: the grammar the Istio annotation shares.
pub(super) struct NVerdict(pub(super) VerdictSpec);

impl<'de> Deserialize<'de> for NVerdict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let keys = Ordered::<Scalar>::deserialize(d)?;
        let mut spec = VerdictSpec::default();
        for (key, Scalar(value)) in keys.0 {
            spec.set(&key, &value).map_err(de::Error::custom)?;
        }
        Ok(NVerdict(spec))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MirrorHeaders {
    #[serde(default)]
    pub(super) set: Ordered<HValue, HName>,
    pub(super) remove: Option<OneOrMany<HName>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NCompare {
    pub(super) ignore_headers: Option<OneOrMany<HName>>,
    pub(super) ignore_paths: Option<OneOrMany<JsonPathText>>,
    pub(super) max_body: Option<Size>,
    pub(super) noise_percent: Option<Percent>,
    pub(super) redact_bodies: Option<bool>,
}

/// `safe`, `all`, one method or a list of them.
#[derive(Clone)]
pub(super) struct Methods(pub(super) MethodSet);

impl<'de> Deserialize<'de> for Methods {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let list = OneOrMany::<Scalar>::deserialize(d)?;
        if !list.list
            && let Some(Scalar(s)) = list.items.first()
        {
            match s.to_ascii_lowercase().as_str() {
                "safe" => return Ok(Methods(MethodSet::Safe)),
                "all" => return Ok(Methods(MethodSet::All)),
                _ => {}
            }
        }
        let methods = list.items.iter().map(|Scalar(s)| crate::de::method(s)).collect::<std::result::Result<_, _>>();
        methods.map(|m| Methods(MethodSet::List(m))).map_err(de::Error::custom)
    }
}
