//! The native format lowered into sources: routes whose destinations are still names, and the
//! services that resolve them; `defaults.mirror` applies within the file.

use std::collections::BTreeMap;
use std::time::Duration;

use http::HeaderName;
use serde_norway::Value;

use super::spec::{CommonMirror, DestText, File, Methods, NMirror, NRoute, NVerdict};
use crate::de::{Count, Doc, Dur, HName, HValue, Result, Scalar, ShortOrMap, Size, typed};
use crate::model::{
    CaptureSpec, CompareSpec, DEFAULT_CAPTURE_FILE_BYTES, DEFAULT_CAPTURE_KEEP, DEFAULT_CAPTURE_MAX_BODY, DEFAULT_MAX_BODY,
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_MIRROR_TIMEOUT, DEFAULT_SAMPLE_HEADER, MethodSet, Protocol, RetryOn, RetryPolicy, UriRewrite,
    VerdictSpec,
};
use crate::sources::{DestRef, NativeService, NativeShape, Origin, PendingMirror, PendingPromote, PendingRoute, Sources};

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
        sources.services.push(NativeService { host, origin: doc.origin(&path), shape, protocol });
    }
    for (i, r) in file.routes.into_iter().enumerate() {
        sources.routes.push(route(doc, (order.0, order.1, i), &format!("routes[{i}]"), r, &defaults)?);
    }
    Ok(())
}

fn dest_ref(doc: Doc<'_>, path: &str, d: DestText) -> DestRef {
    DestRef {
        written: d.host.clone(),
        host: d.host,
        subset: d.subset,
        port: None,
        origin: doc.origin(path),
        subset_origin: doc.origin(path),
        fallback: None,
    }
}

fn route(doc: Doc<'_>, order: (usize, usize, usize), path: &str, r: NRoute, defaults: &MirrorSettings) -> Result<PendingRoute> {
    let retries = match r.retries {
        None => None,
        Some(n) => {
            let on = match n.retry_on {
                None => None,
                Some(list) => {
                    let (on, unknown) = RetryOn::parse(&list);
                    if let Some(token) = unknown.first() {
                        return Err(doc.err(&format!("{path}.retries.retry_on"), format!("unknown retry condition \"{token}\"")));
                    }
                    Some(on)
                }
            };
            Some(RetryPolicy {
                retries: Some(n.attempts.0),
                per_try_timeout: n.per_try_timeout.map(|d| d.0),
                on,
                backoff: n.backoff.map(|d| d.0),
            })
        }
    };
    let (rewrite_uri, rewrite_authority) = match r.rewrite {
        None => (None, None),
        Some(ShortOrMap::Short(Scalar(uri))) => (Some(UriRewrite::Native(uri)), None),
        Some(ShortOrMap::Map(rw)) => (rw.uri.map(|s| UriRewrite::Native(s.0)), rw.authority.map(|s| s.0)),
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
    Ok(PendingRoute {
        retries,
        plain_http: Default::default(),
        catch_all_last: false,
        name: r.name.map(|n| n.0),
        origin: doc.origin(path),
        order,
        answer: None,
        request_headers: Default::default(),
        hosts: r.hosts.map(|h| h.items).unwrap_or_default(),
        matches: r.matches.map(|m| m.items.into_iter().map(|m| m.0).collect()).unwrap_or_default(),
        rewrite_uri,
        rewrite_authority,
        destinations,
        destinations_origin: doc.origin(&to_path),
        mirrors,
        timeout: r.timeout.map(|t| t.0),
        upgrades: r.upgrades,
        promote: r.promote.map(|p| PendingPromote {
            origin: doc.origin(&format!("{path}.promote")),
            to: dest_ref(doc, &format!("{path}.promote.to"), p.to),
            steps: p.steps.map_or_else(|| vec![10, 25, 50, 100], |s| s.into_iter().map(|s| s.0).collect()),
            hold: p.hold.map_or(Duration::from_secs(300), |h| h.0),
        }),
    })
}

fn mirror(doc: Doc<'_>, path: &str, m: ShortOrMap<DestText, NMirror>, defaults: &MirrorSettings) -> PendingMirror {
    let m = match m {
        ShortOrMap::Short(to) => return pending_mirror(None, doc.origin(path), dest_ref(doc, path, to), 100.0, defaults.clone()),
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
    let mut p = pending_mirror(m.name.map(|n| n.0), doc.origin(path), to, m.percent.map_or(100.0, |p| p.0), settings);
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
    p.capture = m.capture.map(|c| CaptureSpec {
        file: c.file.0.into(),
        sample_percent: c.sample.map_or(100.0, |p| p.0),
        max_body_bytes: c.max_body.map_or(DEFAULT_CAPTURE_MAX_BODY, |s| s.0),
        max_file_bytes: c.rotate.as_ref().and_then(|r| r.max_size.as_ref()).map_or(DEFAULT_CAPTURE_FILE_BYTES, |s| s.0 as u64),
        keep_files: c.rotate.as_ref().and_then(|r| r.keep.as_ref()).map_or(DEFAULT_CAPTURE_KEEP, |k| k.0),
        redact_headers: c.redact_headers.map(|h| h.items.into_iter().map(|h| h.0).collect()).unwrap_or_default(),
        redact_paths: c.redact_paths.map(|p| p.items.into_iter().map(|p| p.0).collect()).unwrap_or_default(),
    });
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
        capture: None,
    }
}
