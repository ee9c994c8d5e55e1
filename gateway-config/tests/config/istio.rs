//! The Istio front-end: supported fields, warnings for the rest, apiVersions, resolution.

use std::time::Duration;

use gateway_config::{MethodSet, StringMatch, load_texts_with};
use http::{HeaderMap, HeaderValue, Method};

use crate::helpers::{get, load, load_err, mesh};

const ENTRIES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: shop }
spec:
  hosts: [shop]
  resolution: STATIC
  ports:
    - { number: 80, name: http, protocol: HTTP }
    - { number: 9090, name: admin, protocol: HTTP, targetPort: 9999 }
  endpoints:
    - { address: 10.0.0.1, ports: { http: 8081 }, labels: { app: shop, version: v1 } }
    - { address: 10.0.0.2, labels: { app: shop, version: v2, zone: a } }
    - { address: "2001:db8::3", labels: { app: shop, version: v3 } }
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: { name: external }
spec:
  hosts: [api.example.org]
  resolution: DNS
  ports: [{ number: 80, name: http }]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 80, name: http, protocol: HTTP }, hosts: ["*"] }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: shop }
spec:
  host: shop
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
    - { name: v3, labels: { version: v3 } }
"#;

fn with_entries(vs: &str) -> gateway_config::Loaded {
    load_texts_with([("entries.yaml", ENTRIES), ("vs.yaml", vs)], &mesh()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn mirrors_percentages_and_matches() {
    let loaded = with_entries(
        r#"
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: shop
  annotations:
    mirror.gateway/compare: "true"
    mirror.gateway/compare-ignore-paths: "$.timestamp,$.items[*].id"
    mirror.gateway/compare-ignore-headers: "etag, date"
    mirror.gateway/noise-percent: "10"
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
    - name: orders
      match:
        - uri: { regex: "/orders/[0-9]+" }
          method: { exact: POST }
          headers: { x-tenant: { prefix: acme } }
          authority: { exact: shop.local }
      route:
        - destination: { host: shop, subset: v1 }
          weight: 80
        - destination: { host: shop, subset: v2, port: { number: 9090 } }
          weight: 20
      mirrors:
        - destination: { host: shop, subset: v3 }
          percentage: { value: 12.5 }
        - destination: { host: shop, subset: v2 }
          percentage: { value: 50 }
        - destination: { host: api.example.org }
      timeout: 10s
    - route:
        - destination: { host: shop.default.svc.cluster.local }
      mirror: { host: shop, subset: v2 }
      mirror_percent: 5
"#,
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let t = &loaded.table;
    let r = &t.routes[0];
    assert_eq!(r.name, "shop.orders");
    assert_eq!(r.timeout, Some(Duration::from_secs(10)));
    assert!(matches!(&r.matches[0].uri, Some(StringMatch::Regex(_))));
    assert_eq!(r.matches[0].methods, vec![Method::POST]);
    let ep = |i: usize| t.destination(r.destinations[i].id).endpoints.iter().map(|e| e.authority()).collect::<Vec<_>>();
    assert_eq!(ep(0), vec!["10.0.0.1:8081"]); // endpoint port by port name
    assert_eq!(ep(1), vec!["10.0.0.2:9999"]); // port 9090 -> targetPort
    assert_eq!(r.destinations[1].weight, 20);

    let names: Vec<_> = r.mirrors.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["shop/v3", "shop/v2", "api.example.org"]);
    let percents: Vec<_> = r.mirrors.iter().map(|m| m.percent).collect();
    assert_eq!(percents, vec![12.5, 50.0, 100.0]);
    assert!(r.mirrors.iter().all(|m| m.methods == MethodSet::All));
    let v3 = t.destination(r.mirrors[0].destination);
    assert_eq!(v3.endpoints[0].authority(), "[2001:db8::3]:80");
    let dns = t.destination(r.mirrors[2].destination);
    assert_eq!(dns.endpoints[0].authority(), "api.example.org:80");
    let c = r.mirrors[0].compare.as_ref().unwrap();
    assert_eq!(c.ignore_paths, vec!["$.timestamp", "$.items[*].id"]);
    assert_eq!(c.ignore_headers, vec![http::header::ETAG, http::header::DATE]);
    assert_eq!(c.noise_percent, 10.0);

    let second = &t.routes[1];
    assert_eq!(second.name, "shop.1");
    assert_eq!(second.mirrors[0].percent, 5.0);
    // No subset: every endpoint of the entry.
    assert_eq!(t.destination(second.destinations[0].id).endpoints.len(), 3);

    // Matching.
    let mut h = HeaderMap::new();
    h.insert("x-tenant", HeaderValue::from_static("acme-1"));
    let hit = t.find(&Method::POST, "/orders/12", &h, Some("shop.local")).unwrap();
    assert_eq!(hit.route.name, "shop.orders");
    assert_eq!(t.find(&Method::GET, "/orders/12", &h, Some("shop.local")).unwrap().route.name, "shop.1");
}

#[test]
fn unimplemented_fields_are_warnings_with_their_paths() {
    let loaded = with_entries(
        r#"
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: { name: gw2 }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 443, name: https, protocol: HTTPS }
      hosts: ["*"]
      tls: { mode: SIMPLE, credentialName: cert }
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: { name: shop }
spec:
  hosts: ["*"]
  exportTo: ["."]
  tcp: [{ route: [] }]
  http:
    - match:
        - uri: { prefix: / }
          withoutHeaders: { a: { exact: b } }
      retries: { attempts: 3, retryRemoteLocalities: true }
      fault: { delay: { fixedDelay: 1s } }
      corsPolicy: {}
      headers: { request: { set: { a: b } }, response: { set: { c: d } } }
      route:
        - destination: { host: shop, subset: v1 }
          headers: { response: { remove: [x] } }
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: { name: extra }
spec:
  host: shop
  trafficPolicy: { loadBalancer: { simple: ROUND_ROBIN } }
  exportTo: ["."]
  workloadSelector: { matchLabels: { a: b } }
  subsets:
    - name: v9
      labels: { version: v9 }
      trafficPolicy: { connectionPool: {} }
---
apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: { name: default }
spec: {}
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: shop }
spec: {}
"#,
    );
    let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    let expect = [
        "vs.yaml: document 1 (Gateway gw2): spec.servers[0]: HTTPS: the hosts only this server exposes (*) are served on TLS connections only",
        "vs.yaml: document 1 (Gateway gw2): spec.servers[0].tls.credentialName: the Secret cert is not read",
        "vs.yaml: document 1 (Gateway gw2): spec.servers[0].tls.mode: SIMPLE: the TLS mode (and client certificates) are those of the gateway's `tls:` settings",
        "vs.yaml: document 2 (VirtualService shop): spec.exportTo: not implemented",
        "vs.yaml: document 2 (VirtualService shop): spec.tcp: not implemented",
        "vs.yaml: document 2 (VirtualService shop): spec.http[0].match[0].withoutHeaders: match condition not implemented",
        "vs.yaml: document 2 (VirtualService shop): spec.http[0].retries.retryRemoteLocalities: not implemented",
        "vs.yaml: document 2 (VirtualService shop): spec.http[0].fault: not implemented",
        "vs.yaml: document 2 (VirtualService shop): spec.http[0].corsPolicy: not implemented",
        "vs.yaml: document 2 (VirtualService shop): spec.http[0].headers.response: not implemented",
        "vs.yaml: document 2 (VirtualService shop): spec.http[0].route[0].headers: not implemented",
        "vs.yaml: document 3 (DestinationRule extra): spec.trafficPolicy.loadBalancer: not implemented",
        "vs.yaml: document 3 (DestinationRule extra): spec.exportTo: not implemented",
        "vs.yaml: document 3 (DestinationRule extra): spec.workloadSelector: not implemented",
        "vs.yaml: document 3 (DestinationRule extra): spec.subsets[0].trafficPolicy.connectionPool: not implemented",
        "vs.yaml: document 4 (Sidecar default): kind Sidecar is not implemented",
        "vs.yaml: document 5 (Deployment shop): apiVersion \"apps/v1\" is not networking.istio.io or gateway.networking.k8s.io",
    ];
    for e in expect {
        assert!(warnings.iter().any(|w| w.starts_with(e)), "missing warning {e:?} in {warnings:#?}");
    }
    assert_eq!(warnings.len(), expect.len(), "{warnings:#?}");
}

#[test]
fn api_versions() {
    for v in ["v1alpha3", "v1beta1", "v1"] {
        let text = ENTRIES.replace("networking.istio.io/v1\n", &format!("networking.istio.io/{v}\n"));
        let vs = format!(
            "apiVersion: networking.istio.io/{v}\nkind: VirtualService\nmetadata: {{name: s}}\nspec:\n  hosts: ['*']\n  http:\n    - route: [{{destination: {{host: shop, subset: v1}}}}]\n"
        );
        let loaded = load_texts_with([("e.yaml", text.as_str()), ("v.yaml", vs.as_str())], &mesh()).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(loaded.table.routes.len(), 1);
    }
    let err = load_err("apiVersion: networking.istio.io/v2\nkind: VirtualService\nspec: {}\n");
    assert!(err.contains("unsupported apiVersion"), "{err}");
    assert!(err.starts_with("test.yaml: document 1 (VirtualService): apiVersion:"), "{err}");
}

#[test]
fn virtual_service_hosts_select_by_authority() {
    let loaded = with_entries(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: s}\nspec:\n  hosts: [shop.example.com]\n  http:\n    - route: [{destination: {host: shop, subset: v1}}]\n",
    );
    let t = &loaded.table;
    let h = HeaderMap::new();
    assert!(t.find(&Method::GET, "/", &h, Some("shop.example.com:8080")).is_some());
    assert!(t.find(&Method::GET, "/", &h, Some("other.example.com")).is_none());
    assert!(get(t, "/").is_none());
}

#[test]
fn istio_routes_may_use_native_services() {
    let loaded = load_texts_with([
        ("services.yaml", "services:\n  target:\n    v1: [127.0.0.1:8092]\n    v2: [127.0.0.1:8093]\n"),
        (
            "vs.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: t}\nspec:\n  hosts: ['*']\n  http:\n    - route: [{destination: {host: target, subset: v1}}]\n      mirror: {host: target, subset: v2}\n",
        ),
    ], &mesh())
    .unwrap();
    let r = &loaded.table.routes[0];
    assert_eq!(loaded.table.destination(r.mirrors[0].destination).endpoints[0].authority(), "127.0.0.1:8093");
}

#[test]
fn mixing_native_and_istio_in_one_file_is_an_error() {
    let err = load_err("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nspec: {hosts: [a]}\n---\nroutes: []\n");
    assert!(err.starts_with("test.yaml: document 2: "), "{err}");
    assert!(err.contains("without apiVersion"), "{err}");
}

#[test]
fn an_istio_only_with_no_routes_loads_with_no_routes() {
    let l = load(ENTRIES);
    assert!(l.table.routes.is_empty());
    assert!(l.warnings.iter().any(|w| w.to_string().contains("no routes are defined")), "{:?}", l.warnings);
    // And loads once there is a route.
    let l = load(&format!(
        "{ENTRIES}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: x}}\nspec:\n  hosts: ['*']\n  http: [{{route: [{{destination: {{host: shop}}}}]}}]\n"
    ));
    assert_eq!(l.table.routes[0].name, "x");
}

#[test]
fn a_destination_rule_s_outlier_detection_reaches_its_destinations_the_subset_s_own_first() {
    let loaded = load_texts_with(
        [(
            "dr.yaml",
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: shop }
spec:
  hosts: [shop]
  ports: [{ number: 80, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 10.0.0.1, labels: { version: v1 } }, { address: 10.0.0.2, labels: { version: v2 } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: shop }
spec:
  host: shop
  trafficPolicy: { outlierDetection: { consecutive5xxErrors: 7, baseEjectionTime: 1m } }
  subsets:
    - { name: v1, labels: { version: v1 } }
    - name: v2
      labels: { version: v2 }
      trafficPolicy: { outlierDetection: { consecutiveGatewayErrors: 2, maxEjectionPercent: 50 } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop }
spec:
  hosts: ["*"]
  gateways: [mesh]
  http: [{ route: [{ destination: { host: shop, subset: v1 }, weight: 50 }, { destination: { host: shop, subset: v2 }, weight: 50 }] }]
"#,
        )],
        &mesh(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let of = |subset: &str| loaded.table.destinations.iter().find(|d| d.subset.as_deref() == Some(subset)).and_then(|d| d.outlier);
    let v1 = of("v1").expect("the rule's own");
    assert_eq!((v1.consecutive_errors, v1.all_5xx, v1.base_ejection_time, v1.max_ejection_percent), (7, true, Duration::from_secs(60), 10));
    let v2 = of("v2").expect("the subset's");
    assert_eq!(
        (v2.consecutive_errors, v2.all_5xx, v2.base_ejection_time, v2.max_ejection_percent),
        (2, false, Duration::from_secs(30), 50)
    );
}
