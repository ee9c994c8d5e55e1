//! Issue 13: Istio behaviour a migrating user relies on, one test per finding.

use gateway_config::{Answer, LoadOptions, Loaded, RouteTable, load_texts, load_texts_with};
use http::{HeaderMap, HeaderValue, Method};

pub(super) const GATEWAY: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: shop}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n";

/// ServiceEntries for `web`, `api`, `admin`, `reviews` (v1, v2, v3 by label) in namespace `shop`.
pub(super) const ENTRIES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: services, namespace: shop }
spec:
  hosts: [web, api, admin]
  ports: [{ number: 80, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 10.0.0.1 }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: shop }
spec:
  hosts: [reviews]
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints:
    - { address: 10.0.1.1, labels: { version: v1 } }
    - { address: 10.0.1.2, labels: { version: v2 } }
    - { address: 10.0.1.3, labels: { version: v3 } }
"#;

pub(super) fn vs(name: &str, hosts: &str, http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  hosts: {hosts}\n  gateways: [edge]\n  http:\n{http}"
    )
}

pub(super) fn load_with(docs: &[&str], options: &LoadOptions) -> Loaded {
    let text = docs.join("\n---\n");
    load_texts_with([("gw.yaml", GATEWAY), ("entries.yaml", ENTRIES), ("test.yaml", text.as_str())], options)
        .unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn load(docs: &[&str]) -> Loaded {
    load_with(docs, &LoadOptions::default())
}

pub(super) fn load_err(docs: &[&str]) -> String {
    let text = docs.join("\n---\n");
    match load_texts([("gw.yaml", GATEWAY), ("entries.yaml", ENTRIES), ("test.yaml", text.as_str())]).and_then(Loaded::strict) {
        Ok(l) => panic!("expected an error, got {:#?}", l.table.routes),
        Err(e) => e.to_string(),
    }
}

pub(super) fn route_for(t: &RouteTable, host: &str, path: &str) -> Option<String> {
    route_with(t, host, path, &HeaderMap::new())
}

pub(super) fn route_with(t: &RouteTable, host: &str, path: &str, headers: &HeaderMap) -> Option<String> {
    t.find(&Method::GET, path, headers, Some(host)).map(|h| h.route.name.clone())
}

pub(super) fn to(service: &str) -> String {
    format!("    - route: [{{destination: {{host: {service}}}}}]\n")
}

#[test]
fn finding_1_virtual_host_is_chosen_by_specificity_not_file_order() {
    let l = load(&[
        &vs("catch-all", "['*']", &to("web")),
        &vs("wide", "['*.example.com']", &to("web")),
        &vs("narrow", "['*.api.example.com']", &to("web")),
        &vs("api", "[api.example.com]", "    - match: [{uri: {prefix: /v1/}}]\n      route: [{destination: {host: api}}]\n"),
    ]);
    let t = &l.table;
    // Exact host first, even though `*` was loaded before it.
    assert_eq!(route_for(t, "api.example.com:8080", "/v1/x").as_deref(), Some("api"));
    // No fall-through to another virtual host: the exact one has no route for /other.
    assert_eq!(route_for(t, "api.example.com", "/other"), None);
    // Longest wildcard suffix wins; `*` takes the rest.
    assert_eq!(route_for(t, "a.api.example.com", "/").as_deref(), Some("narrow"));
    assert_eq!(route_for(t, "www.example.com", "/").as_deref(), Some("wide"));
    assert_eq!(route_for(t, "other.org", "/").as_deref(), Some("catch-all"));
}

#[test]
fn finding_1_routes_of_one_host_keep_document_order() {
    let l = load(&[
        &vs("first", "[web.example.com]", "    - match: [{uri: {prefix: /a}}]\n      route: [{destination: {host: web}}]\n"),
        &vs("second", "[web.example.com]", "    - match: [{uri: {prefix: /}}]\n      route: [{destination: {host: api}}]\n"),
    ]);
    assert_eq!(route_for(&l.table, "web.example.com", "/a/b").as_deref(), Some("first"));
    assert_eq!(route_for(&l.table, "web.example.com", "/b").as_deref(), Some("second"));
}

#[test]
fn finding_2_mesh_only_virtual_services_are_reported_and_not_served() {
    let mesh_only = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: internal, namespace: shop}\nspec:\n  hosts: [admin]\n  http: [{route: [{destination: {host: admin}}]}]\n";
    let l = load(&[&vs("web", "['*']", &to("web")), mesh_only]);
    assert_eq!(l.table.routes.len(), 1);
    assert_eq!(route_for(&l.table, "admin.shop.svc.cluster.local", "/").as_deref(), Some("web"), "served by `*`, never by the mesh route");
    let report = l.files.iter().find(|f| f.file == "test.yaml").unwrap();
    assert!(report.scoped_out.iter().any(|s| s.starts_with("VirtualService shop/internal: mesh-only")), "{report:?}");
    // A gateway that is also the mesh's router serves it.
    let l = load_with(&[&vs("web", "['*']", &to("web")), mesh_only], &LoadOptions { mesh: true, ..LoadOptions::default() });
    assert_eq!(route_for(&l.table, "admin.shop.svc.cluster.local", "/").as_deref(), Some("internal"));
}

#[test]
fn finding_2_gateways_scoping_follows_the_settings() {
    let other_gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: internal-gw, namespace: shop}\nspec:\n  selector: {istio: internal}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n";
    let bound_elsewhere = vs("private", "[admin.example.com]", &to("admin")).replace("gateways: [edge]", "gateways: [internal-gw]");
    let docs = [other_gw, &vs("web", "['*']", &to("web")), &bound_elsewhere];
    // Default: every Gateway in the configuration is this gateway.
    assert_eq!(route_for(&load(&docs).table, "admin.example.com", "/").as_deref(), Some("private"));
    // Named: only shop/edge.
    let named = LoadOptions { gateways: vec!["shop/edge".into()], ..LoadOptions::default() };
    let l = load_with(&docs, &named);
    assert_eq!(route_for(&l.table, "admin.example.com", "/").as_deref(), Some("web"));
    assert!(l.files.iter().flat_map(|f| &f.scoped_out).any(|s| s.starts_with("VirtualService shop/private: bound to shop/internal-gw")));
    // By selector labels: the ingress gateway's pods.
    let labels = LoadOptions { labels: [("istio".to_string(), "ingressgateway".to_string())].into(), ..LoadOptions::default() };
    assert_eq!(route_for(&load_with(&docs, &labels).table, "admin.example.com", "/").as_deref(), Some("web"));
}

#[test]
fn finding_2_delegates_are_spliced_into_their_parent_and_never_a_catch_all() {
    let parent = vs(
        "bookinfo",
        "[bookinfo.example.com]",
        "    - match: [{uri: {prefix: /reviews}}]\n      delegate: {name: reviews-routes}\n    - route: [{destination: {host: web}}]\n",
    );
    let child = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews-routes, namespace: shop}\nspec:\n  http:\n    - match: [{uri: {prefix: /reviews/v2}}]\n      route: [{destination: {host: reviews, subset: v2}}]\n    - match: [{uri: {prefix: /ratings}}]\n      route: [{destination: {host: reviews, subset: v3}}]\n    - route: [{destination: {host: reviews, subset: v1}}]\n";
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: shop}\nspec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}, {name: v3, labels: {version: v3}}]\n";
    let l = load(&[&parent, child, dr]);
    let t = &l.table;
    let dest = |path: &str| {
        t.find(&Method::GET, path, &HeaderMap::new(), Some("bookinfo.example.com"))
            .map(|h| t.destination(h.route.destinations[0].id).label())
    };
    assert_eq!(dest("/reviews/v2/1").as_deref(), Some("reviews/v2"));
    assert_eq!(dest("/reviews/1").as_deref(), Some("reviews/v1"));
    // The child's /ratings lies outside the parent's /reviews: dropped, with a warning.
    assert_eq!(dest("/ratings").as_deref(), Some("web"));
    assert!(l.warnings.iter().any(|w| w.path.ends_with("spec.http[1]") && w.message.contains("conflict")), "{:?}", l.warnings);
    // The child (no hosts) is no catch-all for other hosts.
    assert_eq!(route_for(t, "other.example.com", "/reviews/1"), None);
}

#[test]
fn finding_3_valid_istio_matches_load() {
    let l = load(&[&vs(
        "canary",
        "[web.example.com]",
        "    - match: [{headers: {x-canary: {}}}]\n      route: [{destination: {host: api}}]\n    - match: [{uri: {regex: '*'}, headers: {x-v: {regex: '\\Q1.0+\\E'}}}]\n      route: [{destination: {host: admin}}]\n    - route: [{destination: {host: web}}]\n",
    )]);
    let t = &l.table;
    let mut h = HeaderMap::new();
    h.insert("x-canary", HeaderValue::from_static(""));
    assert_eq!(route_with(t, "web.example.com", "/", &h).as_deref(), Some("canary.0"), "presence match, any value");
    let mut h = HeaderMap::new();
    h.insert("x-v", HeaderValue::from_static("1.0+"));
    assert_eq!(route_with(t, "web.example.com", "/anything", &h).as_deref(), Some("canary.1"), "regex * and \\Q...\\E");
    h.insert("x-v", HeaderValue::from_static("1x0"));
    assert_eq!(route_with(t, "web.example.com", "/anything", &h).as_deref(), Some("canary.2"), "\\Q...\\E is literal");
}

#[test]
fn finding_3_same_name_in_two_namespaces_and_two_destination_rules_for_one_host() {
    let other_ns = vs("web", "[web.example.org]", &to("api.shop.svc.cluster.local"))
        .replace("namespace: shop", "namespace: other")
        .replace("gateways: [edge]", "gateways: [shop/edge]");
    let all = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews-all, namespace: shop}\nspec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}\n";
    let more = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews-v3, namespace: shop}\nspec: {host: reviews, subsets: [{name: v3, labels: {version: v3}}, {name: v1, labels: {version: v2}}]}\n";
    let l = load(&[
        &vs(
            "web",
            "[web.example.com]",
            "    - route: [{destination: {host: reviews, subset: v3}}]\n      mirror: {host: reviews, subset: v1}\n",
        ),
        &other_ns,
        all,
        more,
    ]);
    let t = &l.table;
    assert_eq!(route_for(t, "web.example.com", "/").as_deref(), Some("shop/web"));
    assert_eq!(route_for(t, "web.example.org", "/").as_deref(), Some("other/web"));
    let hit = t.find(&Method::GET, "/", &HeaderMap::new(), Some("web.example.com")).unwrap();
    assert_eq!(t.destination(hit.route.destinations[0].id).endpoints[0].host(), "10.0.1.3");
    // The first rule's v1 wins over the second's.
    assert_eq!(t.destination(hit.route.mirrors[0].destination).endpoints[0].host(), "10.0.1.1");
    assert!(
        l.warnings.iter().any(|w| w.message.starts_with(
            "subset \"v1\" of host \"reviews.shop.svc.cluster.local\" is already defined by DestinationRule shop/reviews-all"
        ))
    );
}

#[test]
fn finding_3_redirect_and_direct_response() {
    let l = load(&[&vs(
        "answers",
        "[web.example.com]",
        "    - match: [{uri: {exact: /old}}]\n      redirect: {uri: /new, authority: www.example.com, redirectCode: 308}\n    - match: [{uri: {exact: /health}}]\n      directResponse: {status: 200, body: {string: ok}}\n    - match: [{uri: {exact: /bytes}}]\n      directResponse: {status: 503, body: {bytes: aGk=}}\n",
    )]);
    let t = &l.table;
    let hit = |path: &str| t.find(&Method::GET, path, &HeaderMap::new(), Some("web.example.com:8080")).unwrap();
    let r = hit("/old").respond(Some("web.example.com:8080"), "/old?a=1").unwrap();
    assert_eq!(r.status(), 308);
    // Envoy's host_redirect replaces the whole authority: the request's port is not kept.
    assert_eq!(r.headers()["location"], "http://www.example.com/new?a=1");
    let r = hit("/health").respond(Some("web.example.com"), "/health").unwrap();
    assert_eq!((r.status().as_u16(), r.body().as_slice()), (200, b"ok".as_slice()));
    assert!(matches!(hit("/bytes").route.answer, Some(Answer::Direct { status, .. }) if status == http::StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(hit("/bytes").respond(None, "/bytes").unwrap().body(), b"hi");
}

#[test]
fn finding_4_tls_ports_and_tls_destination_rules_are_refused_by_name() {
    let external = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: payments, namespace: shop}\nspec:\n  hosts: [pay.example.net]\n  ports: [{number: 443, name: https, protocol: HTTPS}]\n  resolution: DNS\n";
    let err = load_err(&[&vs("pay", "['*']", &to("pay.example.net")), external]);
    assert!(err.contains("port 443 of host \"pay.example.net\" is HTTPS") && err.contains("never sends plaintext to a TLS port"), "{err}");
    let simple = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: api-tls, namespace: shop}\nspec: {host: api, trafficPolicy: {tls: {mode: SIMPLE}}}\n";
    let err = load_err(&[&vs("api", "['*']", &to("api")), simple]);
    assert!(err.contains("host \"api\" has tls.mode SIMPLE"), "{err}");
    let mesh_tls = simple.replace("SIMPLE", "ISTIO_MUTUAL");
    let l = load(&[&vs("api", "['*']", &to("api")), &mesh_tls]);
    assert!(
        l.warnings
            .iter()
            .any(|w| w.path.ends_with("spec.trafficPolicy.tls.mode") && w.message.starts_with("ISTIO_MUTUAL is not implemented")),
        "{:?}",
        l.warnings
    );
}

#[test]
fn finding_4_namespaces_qualify_short_hosts_and_short_names_match_only_their_service() {
    let prod_entry = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: web, namespace: prod}\nspec: {hosts: [web], ports: [{number: 80, name: http}], resolution: STATIC, endpoints: [{address: 10.9.9.9}]}\n";
    let l = load(&[&vs("web", "[web]", &to("web")), prod_entry]);
    let t = &l.table;
    // `web` in namespace shop is web.shop.svc.cluster.local, and its destination shop's web.
    assert_eq!(route_for(t, "web.shop.svc.cluster.local", "/").as_deref(), Some("web"));
    assert_eq!(route_for(t, "web.prod.svc.cluster.local", "/"), None);
    assert_eq!(route_for(t, "web.shop.example.com", "/"), None);
    assert_eq!(t.destination(t.routes[0].destinations[0].id).endpoints[0].host(), "10.0.0.1");
    // `web` never matches `webapp` nor another namespace's `web`.
    let err = load_err(&[&vs("x", "['*']", &to("webapp"))]);
    assert!(err.contains("unknown host \"webapp\""), "{err}");
}

#[test]
fn finding_4_ignore_uri_case_makes_the_match_case_insensitive() {
    let l = load(&[&vs(
        "web",
        "['*']",
        "    - match: [{uri: {prefix: /Api/}, ignoreUriCase: true}]\n      rewrite: {uri: /}\n      route: [{destination: {host: api}}]\n    - match: [{uri: {regex: '/items/[a-z]+'}, ignoreUriCase: true}]\n      route: [{destination: {host: admin}}]\n",
    )]);
    let t = &l.table;
    assert!(l.warnings.iter().all(|w| !w.path.contains("ignoreUriCase")), "{:?}", l.warnings);
    let hit = t.find(&Method::GET, "/API/users", &HeaderMap::new(), None).unwrap();
    assert_eq!(hit.route.name, "web.0");
    assert_eq!(hit.rewrite_path("/API/users?x=1"), "/users?x=1");
    assert_eq!(route_for(t, "h", "/ITEMS/Abc").as_deref(), Some("web.1"));
}

#[test]
fn finding_4_kubectl_lists_load_item_by_item() {
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {}\n",
        serde_json::to_string(&serde_json::json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "listed", "namespace": "shop", "uid": "x", "resourceVersion": "1"},
            "spec": {"hosts": ["*"], "gateways": ["edge"], "http": [{"route": [{"destination": {"host": "web"}}], "fault": {"abort": {"httpStatus": 503}}}]},
            "status": {}
        }))
        .unwrap()
    );
    let l = load(&[&list]);
    assert_eq!(route_for(&l.table, "x", "/").as_deref(), Some("listed"));
    let w: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        vec!["test.yaml: document 1 (List) items[0] (VirtualService listed): spec.http[0].fault: not implemented by this gateway; ignored"]
    );
}

#[test]
fn kubectl_apply_identity_across_files_later_replaces_earlier() {
    let first = vs("web", "['*']", &to("web"));
    let second = vs("web", "['*']", &to("api"));
    let l = load_texts([("gw.yaml", GATEWAY), ("entries.yaml", ENTRIES), ("a.yaml", first.as_str()), ("b.yaml", second.as_str())]).unwrap();
    assert_eq!(l.table.routes.len(), 1);
    assert_eq!(l.table.destination(l.table.routes[0].destinations[0].id).label(), "api");
    assert!(
        l.warnings.iter().any(|w| w.file == "b.yaml" && w.message.starts_with("replaces VirtualService shop/web from a.yaml: document 1")),
        "{:?}",
        l.warnings
    );
    let a = l.files.iter().find(|f| f.file == "a.yaml").unwrap();
    assert_eq!(
        a.scoped_out,
        vec!["VirtualService shop/web (document 1 (VirtualService web)): replaced by b.yaml: document 1 (VirtualService web)"]
    );
}

#[test]
fn finding_4_a_refused_configuration_keeps_its_warnings() {
    let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: VirtualService\n  metadata: {name: internal, namespace: shop}\n  spec:\n    hosts: [web]\n    http: [{route: [{destination: {host: web}}], fault: {abort: {httpStatus: 503}}}]\n";
    let retries =
        "list.yaml: document 1 (List) items[0] (VirtualService internal): spec.http[0].fault: not implemented by this gateway; ignored";
    // Alone it loads with no routes (issue 22: zero routes is valid), and the warning says what
    // was scoped out.
    let l = load_texts([("list.yaml", list)]).unwrap();
    let w: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w[0], retries);
    assert!(w[1].contains("no routes are defined") && w[1].contains("scoped out: VirtualService shop/internal: mesh-only"), "{w:?}");
    // Refused by another file's error, it keeps its warnings.
    let err = load_texts([("list.yaml", list), ("bad.yaml", "routes: [{name: x}]\n")]).unwrap_err();
    assert!(err.to_string().starts_with("bad.yaml: routes[0]: required key \"to\" is missing"), "{err}");
    let w: Vec<String> = err.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w, vec![retries]);
}

#[test]
fn gateway_server_hosts_limit_what_a_bound_virtual_service_exposes() {
    let gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: public, namespace: shop}\nspec:\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['shop/www.example.com', 'other/admin.example.com']}]\n";
    let open = vs("open", "['*']", &to("web")).replace("gateways: [edge]", "gateways: [public]");
    let internal = vs("internal", "[admin.example.com]", &to("admin")).replace("gateways: [edge]", "gateways: [public]");
    let l = load_with(&[gw, &open, &internal], &LoadOptions { gateways: vec!["shop/public".into()], ..LoadOptions::default() });
    let t = &l.table;
    // `*` is narrowed to what the server exposes to namespace shop.
    assert_eq!(route_for(t, "www.example.com", "/").as_deref(), Some("open"));
    assert_eq!(route_for(t, "example.org", "/"), None);
    // admin.example.com is exposed to namespace `other` only: shop's VirtualService for it is not served.
    assert_eq!(route_for(t, "admin.example.com", "/"), None);
    assert!(
        l.files
            .iter()
            .flat_map(|f| &f.scoped_out)
            .any(|s| s.starts_with("VirtualService shop/internal: its hosts (admin.example.com) match no host")),
        "{:?}",
        l.files
    );
}
