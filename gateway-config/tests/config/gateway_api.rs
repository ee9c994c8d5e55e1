//! The Gateway API front-end: Gateway + HTTPRoute into the same routing model.

use gateway_config::{Loaded, MethodSet, ObjectState, Reason, load_texts};
use http::{HeaderMap, HeaderValue, Method};

const GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge, namespace: shop }
spec:
  gatewayClassName: mirror-gateway
  listeners:
    - { name: http, port: 80, protocol: HTTP, allowedRoutes: { namespaces: { from: All } } }
    - { name: api, port: 80, protocol: HTTP, hostname: "*.example.com" }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: external, namespace: shop }
spec:
  hosts: [httpbin.external]
  ports: [{ number: 8000, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 10.0.0.9 }]
"#;

/// Lets HTTPRoutes of namespace `shop` send to Services of namespace `other`.
const GRANT: &str = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: from-shop, namespace: other}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]\n  to: [{group: '', kind: Service}]\n";

fn load(routes: &str) -> Loaded {
    load_texts([("gateway.yaml", GATEWAY), ("grant.yaml", GRANT), ("routes.yaml", routes)]).unwrap_or_else(|e| panic!("{e}"))
}

fn name(l: &Loaded, method: Method, host: &str, path: &str, headers: &[(&'static str, &'static str)]) -> Option<String> {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, HeaderValue::from_static(v));
    }
    l.table.find(&method, path, &h, Some(host)).map(|hit| hit.route.name.clone())
}

const ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
  namespace: shop
  annotations: { mirror.gateway/compare: "true" }
spec:
  parentRefs: [{ name: edge, sectionName: http }]
  hostnames: [shop.example.com]
  rules:
    - name: catalog
      matches: [{ path: { type: PathPrefix, value: /catalog } }]
      filters:
        - type: RequestMirror
          requestMirror: { backendRef: { name: catalog-v2, port: 8080 }, percent: 25 }
        - type: RequestMirror
          requestMirror: { backendRef: { group: networking.istio.io, kind: Hostname, name: httpbin.external }, fraction: { numerator: 1, denominator: 3 } }
        - type: URLRewrite
          urlRewrite: { hostname: catalog.internal, path: { type: ReplacePrefixMatch, replacePrefixMatch: / } }
        - type: RequestHeaderModifier
          requestHeaderModifier: { set: [{ name: x-env, value: prod }], add: [{ name: x-via, value: gateway }], remove: [x-debug] }
      backendRefs:
        - { name: catalog, port: 8080, weight: 90 }
        - { name: catalog-v2, port: 8080, weight: 10 }
    - matches:
        - path: { type: Exact, value: /catalog/special }
        - headers: [{ name: x-tenant, value: acme }]
          queryParams: [{ type: RegularExpression, name: v, value: "[0-9]+" }]
          method: POST
      backendRefs: [{ name: special, namespace: other, port: 80 }]
      timeouts: { request: 2s }
    - matches: [{ path: { type: PathPrefix, value: /old } }]
      filters:
        - type: RequestRedirect
          requestRedirect: { scheme: https, hostname: new.example.com, statusCode: 301, path: { type: ReplacePrefixMatch, replacePrefixMatch: /new } }
"#;

#[test]
fn http_route_matches_filters_and_backends() {
    let l = load(ROUTE);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let host = "shop.example.com";
    // Exact beats a longer-listed prefix; PathPrefix is by segment.
    assert_eq!(name(&l, Method::GET, host, "/catalog/special", &[]).as_deref(), Some("shop.1.0"));
    assert_eq!(name(&l, Method::GET, host, "/catalog/x", &[]).as_deref(), Some("shop.catalog"));
    assert_eq!(name(&l, Method::GET, host, "/catalogue", &[]), None);
    // Header + query + method, all needed.
    let acme = [("x-tenant", "acme")];
    assert_eq!(name(&l, Method::POST, host, "/x?v=12", &acme).as_deref(), Some("shop.1.1"));
    assert_eq!(name(&l, Method::POST, host, "/x?v=a", &acme), None);
    assert_eq!(name(&l, Method::GET, host, "/x?v=12", &acme), None);
    // Only the route's hostnames.
    assert_eq!(name(&l, Method::GET, "other.example.com", "/catalog/x", &[]), None);

    let t = &l.table;
    let hit = t.find(&Method::GET, "/catalog/items/1", &HeaderMap::new(), Some(host)).unwrap();
    let r = hit.route;
    let weights: Vec<_> = r.destinations.iter().map(|d| (t.destination(d.id).label(), d.weight)).collect();
    assert_eq!(weights, vec![("catalog".to_string(), 90), ("catalog-v2".to_string(), 10)]);
    // No ServiceEntry for the Service: its cluster DNS name.
    assert_eq!(t.destination(r.destinations[0].id).endpoints[0].authority(), "catalog.shop.svc:8080");
    assert_eq!(hit.rewrite_path("/catalog/items/1?q"), "/items/1?q");
    assert_eq!(r.rewrite_authority.as_ref().and_then(|a| a.to_str().ok()), Some("catalog.internal"));
    let mirrors: Vec<_> = r.mirrors.iter().map(|m| (m.name.as_str(), (m.percent * 100.0).round() / 100.0)).collect();
    assert_eq!(mirrors, vec![("catalog-v2", 25.0), ("httpbin.external", 33.33)]);
    assert!(r.mirrors.iter().all(|m| m.methods == MethodSet::All && m.compare.is_some()));
    assert_eq!(t.destination(r.mirrors[1].destination).endpoints[0].authority(), "10.0.0.9:8000", "Hostname names the ServiceEntry host");
    let mut headers = HeaderMap::new();
    headers.insert("x-debug", HeaderValue::from_static("1"));
    headers.insert("x-env", HeaderValue::from_static("dev"));
    r.request_headers.apply(&mut headers);
    assert_eq!(
        (headers.get("x-debug"), &headers["x-env"], &headers["x-via"]),
        (None, &HeaderValue::from_static("prod"), &HeaderValue::from_static("gateway"))
    );

    let special = t.find(&Method::GET, "/catalog/special", &HeaderMap::new(), Some(host)).unwrap().route;
    assert_eq!(special.timeout, Some(std::time::Duration::from_secs(2)));
    assert_eq!(t.destination(special.destinations[0].id).endpoints[0].authority(), "special.other.svc:80");

    let old = t.find(&Method::GET, "/old/page", &HeaderMap::new(), Some(host)).unwrap();
    let r = old.respond(Some("shop.example.com:8080"), "/old/page?x=1").unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "https://new.example.com/new/page?x=1");
}

#[test]
fn listener_hostnames_and_allowed_namespaces_scope_routes() {
    let routes = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: api, namespace: shop }
spec:
  parentRefs: [{ name: edge, sectionName: api }]
  rules: [{ backendRefs: [{ name: api, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: foreign, namespace: elsewhere }
spec:
  parentRefs: [{ name: edge, namespace: shop, sectionName: api }]
  rules: [{ backendRefs: [{ name: x, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: mesh, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: api }]
  rules: [{ backendRefs: [{ name: api, port: 80 }] }]
"#;
    let l = load(routes);
    // No hostnames on the route: the listener's `*.example.com`.
    assert_eq!(name(&l, Method::GET, "a.example.com", "/", &[]).as_deref(), Some("api.0"));
    assert_eq!(name(&l, Method::GET, "example.org", "/", &[]), None);
    let scoped: Vec<&String> = l.files.iter().flat_map(|f| &f.scoped_out).collect();
    // Named our Gateway, refused by its listener: not accepted, with the Gateway API's reason.
    assert!(
        scoped.iter().any(|s| s.starts_with(
            "HTTPRoute elsewhere/foreign: not accepted (NotAllowedByListeners): spec.parentRefs[0]: listener api takes routes of namespace shop only"
        )),
        "{scoped:?}"
    );
    let foreign = l.objects.iter().find(|o| o.name == "foreign").unwrap();
    assert_eq!((foreign.state, foreign.conditions[0].reason), (ObjectState::Rejected, Reason::NotAllowedByListeners));
    assert!(scoped.iter().any(|s| s.starts_with("HTTPRoute shop/mesh: a mesh route")), "{scoped:?}");
    assert_eq!(l.objects.iter().find(|o| o.name == "mesh").unwrap().state, ObjectState::ScopedOut);
}

#[test]
fn gateway_api_errors_name_the_key() {
    let bad = ROUTE.replace("fraction: { numerator: 1, denominator: 3 }", "fraction: { numerator: 4, denominator: 3 }");
    let err = load_texts([("gateway.yaml", GATEWAY), ("routes.yaml", bad.as_str())]).and_then(Loaded::strict).unwrap_err().to_string();
    assert!(
        err.starts_with("routes.yaml: document 1 (HTTPRoute shop): spec.rules[0].filters[1].requestMirror.fraction: numerator must be <="),
        "{err}"
    );
    let bad = ROUTE.replace("type: Exact, value: /catalog/special", "type: Fuzzy, value: /catalog/special");
    let err = load_texts([("gateway.yaml", GATEWAY), ("routes.yaml", bad.as_str())]).and_then(Loaded::strict).unwrap_err().to_string();
    assert!(err.contains("spec.rules[1].matches[0].path.type: unknown path match type \"Fuzzy\""), "{err}");
}

#[test]
fn a_backend_in_another_namespace_needs_a_reference_grant() {
    let l = load_texts([("gateway.yaml", GATEWAY), ("routes.yaml", ROUTE)]).unwrap();
    let hit = l.table.find(&Method::GET, "/catalog/special", &HeaderMap::new(), Some("shop.example.com")).unwrap();
    // Its backend answers 500 (the gateway answers for an unresolved destination).
    assert!(l.table.destination(hit.route.destinations[0].id).unresolved);
    assert!(
        l.warnings.iter().any(|w| w.path.ends_with("spec.rules[1].backendRefs[0].name")
            && w.message.starts_with("Service other/special is in another namespace and no ReferenceGrant")),
        "{:?}",
        l.warnings
    );
    let route = l.objects.iter().find(|o| o.kind == "HTTPRoute").unwrap();
    assert_eq!(route.state, ObjectState::Accepted);
    assert_eq!((route.conditions[1].status, route.conditions[1].reason), (false, Reason::RefNotPermitted));
}

#[test]
fn a_rule_s_retry_maps_codes_attempts_and_backoff_and_a_code_that_is_no_error_is_warned() {
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\nspec:\n  parentRefs: [{name: edge, sectionName: http}]\n  rules:\n    - backendRefs: [{group: networking.istio.io, kind: Hostname, name: httpbin.external}]\n      retry: {codes: [503, 200], attempts: 3, backoff: 100ms}\n";
    let loaded = load(route);
    let retries = loaded.table.routes[0].retries.as_ref().expect("a retry policy");
    assert_eq!(retries.retries, Some(3));
    assert_eq!(retries.backoff, Some(std::time::Duration::from_millis(100)));
    let on = retries.on.as_ref().expect("conditions");
    assert_eq!(on.status_codes, [503]);
    assert!(on.connect_failure && on.refused_stream && on.reset, "answers that never came are retried too");
    assert!(loaded.warnings.iter().any(|w| w.to_string().contains("retry.codes[1]")), "{:?}", loaded.warnings);
}

/// An HTTPS listener's routes are served when the process terminates TLS (its one listener is
/// then TLS), and not accepted otherwise: never in clear.
#[test]
fn an_https_listener_takes_routes_only_when_the_gateway_terminates_tls() {
    let gw = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: shop}\nspec:\n  listeners: [{name: https, port: 443, protocol: HTTPS}]\n";
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web, namespace: shop}\nspec:\n  parentRefs: [{name: edge}]\n  rules: [{backendRefs: [{name: web, port: 80}]}]\n";
    let load = |tls: bool| {
        gateway_config::load_texts_with(
            [("gw.yaml", gw), ("route.yaml", route)],
            &gateway_config::LoadOptions { tls, ..Default::default() },
        )
        .unwrap()
    };
    let served = load(true);
    assert_eq!(served.table.routes.len(), 1);
    let clear = load(false);
    assert!(clear.table.routes.is_empty());
    let status = clear.objects.iter().find(|o| o.kind == "HTTPRoute").unwrap();
    assert_eq!((status.state, status.conditions[0].reason), (ObjectState::Rejected, Reason::NotAllowedByListeners));
}
