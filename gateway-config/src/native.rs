//! The native front-end: the gateway's own YAML, as specified in `docs/CONTRACT.md`.
//! Unknown keys are errors naming the key; defaults (`defaults.mirror`) apply within the file.

use std::collections::BTreeMap;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_norway::Value;

use crate::de::{
    Count, Doc, Dur, HName, HValue, JsonPathText, MatchSpec, MethodName, OneOrMany, Ordered, Percent, RegexText, Result, Scalar,
    ShortOrMap, Size, U32, typed,
};
use crate::model::{
    CompareSpec, DEFAULT_MAX_BODY, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MIRROR_TIMEOUT, DEFAULT_SAMPLE_HEADER, HeaderMatch, MethodSet, Protocol,
    RouteMatch, StringMatch, UriRewrite, VerdictSpec,
};
use crate::sources::{DestRef, HostPort, NativeService, NativeShape, Origin, PendingMirror, PendingPromote, PendingRoute, Sources};
use http_rules::split_host_port;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    services: Ordered<Service>,
    #[serde(default)]
    routes: Vec<NRoute>,
    #[serde(default)]
    defaults: Defaults,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Defaults {
    mirror: Option<CommonMirror>,
}

/// `echo: [127.0.0.1:9000]`, `echo: 127.0.0.1:9000` or `target: {v1: [...], v2: [...]}`.
type Service = ShortOrMap<OneOrMany<EndpointText>, ServiceMap>;

/// A service's mapping form: subsets, with two reserved keys, `protocol` (http1 | http2 | auto)
/// and `endpoints` (the endpoints of a service without subsets).
struct ServiceMap {
    protocol: Option<Protocol>,
    endpoints: Option<Vec<HostPort>>,
    subsets: Vec<(String, Vec<HostPort>)>,
}

/// `http1`, `http2` or `auto` (Istio's names, `HTTP2`, `GRPC`, ..., are accepted too).
struct ProtocolName(Protocol);

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
struct NRoute {
    name: Option<Scalar>,
    hosts: Option<OneOrMany<String>>,
    #[serde(rename = "match")]
    matches: Option<OneOrMany<NMatch>>,
    rewrite: Option<ShortOrMap<Scalar, NRewrite>>,
    to: OneOrMany<ShortOrMap<DestText, Weighted>>,
    timeout: Option<Dur>,
    mirror: Option<ShortOrMap<DestText, NMirror>>,
    mirrors: Option<Vec<ShortOrMap<DestText, NMirror>>>,
    promote: Option<NPromote>,
}

/// `promote: { to: shop/v2, steps: [10, 25, 50, 100], hold: 5m }` (steps and hold optional);
/// checked in validation, which names the key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NPromote {
    to: DestText,
    steps: Option<Vec<U32>>,
    hold: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NRewrite {
    uri: Option<Scalar>,
    authority: Option<Scalar>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Weighted {
    to: DestText,
    weight: Option<U32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawMatch")]
struct NMatch(RouteMatch);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    prefix: Option<Scalar>,
    exact: Option<Scalar>,
    regex: Option<RegexText>,
    methods: Option<OneOrMany<MethodName>>,
    #[serde(default)]
    headers: Ordered<ShortOrMap<Scalar, MatchSpec>, HName>,
    authority: Option<ShortOrMap<Scalar, MatchSpec>>,
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
struct DestText {
    host: String,
    subset: Option<String>,
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

struct EndpointText(HostPort);

impl<'de> Deserialize<'de> for EndpointText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_endpoint(&text).map(EndpointText).map_err(|e| de::Error::custom(format!("bad endpoint \"{text}\": {e}")))
    }
}

/// `host:port` or `[v6]:port`.
pub(crate) fn parse_endpoint(text: &str) -> std::result::Result<HostPort, String> {
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
struct CommonMirror {
    timeout: Option<Dur>,
    max_in_flight: Option<Count>,
    max_body: Option<Size>,
    methods: Option<Methods>,
    sample_header: Option<HName>,
    shadow_host: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NMirror {
    to: DestText,
    name: Option<Scalar>,
    percent: Option<Percent>,
    timeout: Option<Dur>,
    max_in_flight: Option<Count>,
    max_body: Option<Size>,
    methods: Option<Methods>,
    sample_header: Option<HName>,
    shadow_host: Option<bool>,
    headers: Option<MirrorHeaders>,
    compare: Option<ShortOrMap<bool, NCompare>>,
    verdict: Option<ShortOrMap<bool, NVerdict>>,
}

/// `verdict:` keys, each read by [`VerdictSpec::set`]: the grammar the Istio annotation shares.
struct NVerdict(VerdictSpec);

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
struct MirrorHeaders {
    #[serde(default)]
    set: Ordered<HValue, HName>,
    remove: Option<OneOrMany<HName>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NCompare {
    ignore_headers: Option<OneOrMany<HName>>,
    ignore_paths: Option<OneOrMany<JsonPathText>>,
    max_body: Option<Size>,
    noise_percent: Option<Percent>,
    redact_bodies: Option<bool>,
}

/// `safe`, `all`, one method or a list of them.
#[derive(Clone)]
struct Methods(MethodSet);

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

/// Mirror settings after the file's defaults.
#[derive(Clone)]
struct MirrorSettings {
    timeout: Duration,
    max_in_flight: usize,
    max_body_bytes: usize,
    methods: MethodSet,
    sample_header: HeaderName,
    shadow_host_suffix: bool,
}

impl Default for MirrorSettings {
    fn default() -> Self {
        MirrorSettings {
            timeout: DEFAULT_MIRROR_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_body_bytes: DEFAULT_MAX_BODY,
            methods: MethodSet::Safe,
            sample_header: HeaderName::from_static(DEFAULT_SAMPLE_HEADER),
            shadow_host_suffix: true,
        }
    }
}

impl MirrorSettings {
    fn apply(&mut self, c: CommonMirror) {
        if let Some(Dur(t)) = c.timeout {
            self.timeout = t;
        }
        if let Some(Count(n)) = c.max_in_flight {
            self.max_in_flight = n;
        }
        if let Some(Size(n)) = c.max_body {
            self.max_body_bytes = n;
        }
        if let Some(Methods(m)) = c.methods {
            self.methods = m;
        }
        if let Some(HName(h)) = c.sample_header {
            self.sample_header = h;
        }
        if let Some(b) = c.shadow_host {
            self.shadow_host_suffix = b;
        }
    }
}

/// Adds one native document to `sources`.
pub(crate) fn load(doc: Doc<'_>, order: (usize, usize), value: Value, sources: &mut Sources) -> Result<()> {
    if !value.is_mapping() {
        return Err(doc.err("", format!("expected a mapping with `services` and `routes`, found {}", crate::de::kind_of(&value))));
    }
    // Unknown keys are errors (deny_unknown_fields), so nothing is ever ignored here.
    let (file, _ignored): (File, _) = typed(value, doc)?;
    let mut defaults = MirrorSettings::default();
    if let Some(d) = file.defaults.mirror {
        defaults.apply(d);
    }
    for (host, shape) in file.services.0 {
        let path = format!("services.{host}");
        if host.is_empty() || host.contains('/') {
            return Err(doc.err(&path, format!("invalid host name \"{host}\"")));
        }
        let mut protocol = Protocol::default();
        let shape = match shape {
            ShortOrMap::Short(eps) => NativeShape::Plain(eps.items.into_iter().map(|e| e.0).collect()),
            ShortOrMap::Map(service) => {
                protocol = service.protocol.unwrap_or_default();
                let mut map = BTreeMap::new();
                for (subset, eps) in service.subsets {
                    if subset.is_empty() || subset.contains('/') {
                        return Err(doc.err(&format!("{path}.{subset}"), format!("invalid subset name \"{subset}\"")));
                    }
                    map.insert(subset, eps);
                }
                match service.endpoints {
                    Some(_) if !map.is_empty() => {
                        return Err(doc.err(&path, "a service has either `endpoints` or subsets (v1: [...]), not both"));
                    }
                    Some(eps) => NativeShape::Plain(eps),
                    None => NativeShape::Subsets(map),
                }
            }
        };
        sources.services.push(NativeService { host, origin: origin(doc, &path), shape, protocol });
    }
    for (i, r) in file.routes.into_iter().enumerate() {
        sources.routes.push(route(doc, (order.0, order.1, i), &format!("routes[{i}]"), r, &defaults));
    }
    Ok(())
}

fn origin(doc: Doc<'_>, path: &str) -> Origin {
    Origin { file: doc.file.to_string(), path: doc.path(path) }
}

fn dest_ref(doc: Doc<'_>, path: &str, d: DestText) -> DestRef {
    DestRef {
        written: d.host.clone(),
        host: d.host,
        subset: d.subset,
        port: None,
        origin: origin(doc, path),
        subset_origin: origin(doc, path),
        fallback: None,
    }
}

fn route(doc: Doc<'_>, order: (usize, usize, usize), path: &str, r: NRoute, defaults: &MirrorSettings) -> PendingRoute {
    let (rewrite_uri, rewrite_authority) = match r.rewrite {
        None => (None, None),
        Some(ShortOrMap::Short(Scalar(uri))) => (Some(UriRewrite::Istio(uri)), None),
        Some(ShortOrMap::Map(rw)) => (rw.uri.map(|s| UriRewrite::Istio(s.0)), rw.authority.map(|s| s.0)),
    };
    let to_path = format!("{path}.to");
    let destinations =
        r.to.items
            .into_iter()
            .map(|item| match item {
                ShortOrMap::Short(d) => (dest_ref(doc, &to_path, d), None),
                ShortOrMap::Map(w) => (dest_ref(doc, &to_path, w.to), w.weight.map(|w| w.0)),
            })
            .collect();
    let mut mirrors = Vec::new();
    if let Some(m) = r.mirror {
        mirrors.push(mirror(doc, &format!("{path}.mirror"), m, defaults));
    }
    for (i, m) in r.mirrors.into_iter().flatten().enumerate() {
        mirrors.push(mirror(doc, &format!("{path}.mirrors[{i}]"), m, defaults));
    }
    PendingRoute {
        name: r.name.map(|n| n.0),
        origin: origin(doc, path),
        order,
        answer: None,
        request_headers: Default::default(),
        hosts: r.hosts.map(|h| h.items).unwrap_or_default(),
        matches: r.matches.map(|m| m.items.into_iter().map(|m| m.0).collect()).unwrap_or_default(),
        rewrite_uri,
        rewrite_authority,
        destinations,
        destinations_origin: origin(doc, &to_path),
        mirrors,
        timeout: r.timeout.map(|t| t.0),
        promote: r.promote.map(|p| PendingPromote {
            origin: origin(doc, &format!("{path}.promote")),
            to: dest_ref(doc, &format!("{path}.promote.to"), p.to),
            steps: p.steps.map_or_else(|| vec![10, 25, 50, 100], |s| s.into_iter().map(|s| s.0).collect()),
            hold: p.hold.map_or(Duration::from_secs(300), |h| h.0),
        }),
    }
}

fn mirror(doc: Doc<'_>, path: &str, m: ShortOrMap<DestText, NMirror>, defaults: &MirrorSettings) -> PendingMirror {
    let m = match m {
        ShortOrMap::Short(to) => return pending_mirror(None, origin(doc, path), dest_ref(doc, path, to), 100.0, defaults.clone()),
        ShortOrMap::Map(m) => m,
    };
    let mut settings = defaults.clone();
    settings.apply(CommonMirror {
        timeout: m.timeout,
        max_in_flight: m.max_in_flight,
        max_body: m.max_body,
        methods: m.methods,
        sample_header: m.sample_header,
        shadow_host: m.shadow_host,
    });
    let to = dest_ref(doc, &format!("{path}.to"), m.to);
    let mut p = pending_mirror(m.name.map(|n| n.0), origin(doc, path), to, m.percent.map_or(100.0, |p| p.0), settings);
    if let Some(h) = m.headers {
        p.set_headers = h.set.0.into_iter().map(|(HName(name), HValue(value))| (name, value)).collect();
        p.remove_headers = h.remove.map(|r| r.items.into_iter().map(|h| h.0).collect()).unwrap_or_default();
    }
    p.compare = match m.compare {
        None | Some(ShortOrMap::Short(false)) => None,
        Some(ShortOrMap::Short(true)) => Some(CompareSpec::default()),
        Some(ShortOrMap::Map(c)) => {
            let defaults = CompareSpec::default();
            Some(CompareSpec {
                ignore_headers: c.ignore_headers.map(|h| h.items.into_iter().map(|h| h.0).collect()).unwrap_or_default(),
                ignore_paths: c.ignore_paths.map(|p| p.items.into_iter().map(|p| p.0).collect()).unwrap_or_default(),
                max_body_bytes: c.max_body.map_or(defaults.max_body_bytes, |s| s.0),
                noise_percent: c.noise_percent.map_or(defaults.noise_percent, |p| p.0),
                redact_bodies: c.redact_bodies.unwrap_or(defaults.redact_bodies),
            })
        }
    };
    // On by default when the mirror compares; a verdict without `compare` is refused in validation.
    p.verdict = match m.verdict {
        None => p.compare.as_ref().map(|_| VerdictSpec::default()),
        Some(ShortOrMap::Short(on)) => on.then(VerdictSpec::default),
        Some(ShortOrMap::Map(NVerdict(spec))) => Some(spec),
    };
    p
}

fn pending_mirror(name: Option<String>, origin: Origin, to: DestRef, percent: f64, d: MirrorSettings) -> PendingMirror {
    PendingMirror {
        name,
        origin,
        to,
        percent,
        sample_header: d.sample_header,
        timeout: d.timeout,
        max_in_flight: d.max_in_flight,
        max_body_bytes: d.max_body_bytes,
        methods: d.methods,
        shadow_host_suffix: d.shadow_host_suffix,
        set_headers: Vec::new(),
        remove_headers: Vec::new(),
        compare: None,
        verdict: None,
    }
}
