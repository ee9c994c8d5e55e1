//! Issue 22: Istio's semantics as Istio has them (TLS, timeouts, mesh hosts, rewrites, merging,
//! redirects, valid Istio that must load), one test per item; `tests/tests/e2e/istio.rs`
//! sends the requests over real sockets.

use std::time::Duration;

use gateway_config::{LoadOptions, Lookup, load_texts_with};
use http::{HeaderMap, Method};

use super::fidelity::{ENTRIES, GATEWAY, load, load_err, to, vs};

fn lookup<'t>(t: &'t gateway_config::RouteTable, secure: bool, host: &str, path: &str) -> Lookup<'t> {
    t.lookup(secure, &Method::GET, path, &HeaderMap::new(), Some(host))
}

fn routed(l: Lookup<'_>) -> Option<String> {
    l.hit().map(|h| h.route.name.clone())
}

const TLS_GATEWAY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge, namespace: shop }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: [web.example.com]
      tls: { httpsRedirect: true }
    - port: { number: 80, name: http-plain, protocol: HTTP }
      hosts: [open.example.com]
    - port: { number: 443, name: https, protocol: HTTPS }
      hosts: [web.example.com, secret.example.com, open.example.com]
      tls: { mode: SIMPLE, credentialName: web-cert }
"#;

#[test]
fn https_redirect_and_https_only_hosts_are_never_served_in_clear() {
    let routes = vs("web", "[web.example.com, secret.example.com, open.example.com]", &to("web"));
    let l = load_texts_with([("gw.yaml", TLS_GATEWAY), ("entries.yaml", ENTRIES), ("vs.yaml", routes.as_str())], &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let t = &l.table;
    assert!(matches!(lookup(t, false, "web.example.com", "/a"), Lookup::HttpsRedirect));
    assert_eq!(routed(lookup(t, true, "web.example.com", "/a")).as_deref(), Some("web"));
    assert!(matches!(lookup(t, false, "secret.example.com", "/a"), Lookup::NoRoute), "an HTTPS-only host is not served in clear");
    assert_eq!(routed(lookup(t, true, "secret.example.com", "/a")).as_deref(), Some("web"));
    assert_eq!(routed(lookup(t, false, "open.example.com", "/a")).as_deref(), Some("web"), "a plain HTTP server serves it");
    let redirect = gateway_config::https_redirect(Some("web.example.com:8080"), "/a?b=1");
    assert_eq!((redirect.status().as_u16(), redirect.headers()["location"].to_str().unwrap()), (301, "https://web.example.com:8080/a?b=1"));
    assert!(
        l.warnings.iter().any(|w| w.path.ends_with("spec.servers[2]")
            && w.message.contains("served on TLS connections only")
            && w.message.contains("plain HTTP requests for them get 404")),
        "{:#?}",
        l.warnings
    );
}

#[test]
fn a_redirect_without_a_scheme_keeps_https_on_a_tls_connection() {
    let http = "    - redirect: {uri: /new}\n";
    let l = load(&[&vs("web", "['*']", http)]);
    let hit = lookup(&l.table, true, "web.example.com", "/old").hit().unwrap();
    assert_eq!(hit.respond(Some("web.example.com"), "/old").unwrap().headers()["location"], "https://web.example.com/new");
}

fn dr(traffic_policy: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: shop}}\nspec:\n  host: reviews\n{traffic_policy}"
    )
}

#[test]
fn port_level_and_subset_tls_refuse_the_destination_they_apply_to() {
    let route = vs("reviews", "['*']", "    - route: [{destination: {host: reviews, port: {number: 9080}}}]\n");
    let port_tls = dr("  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 9080}\n      tls: {mode: SIMPLE}\n");
    let err = load_err(&[&route, &port_tls]);
    assert!(err.contains("host \"reviews\" has tls.mode SIMPLE for port 9080") && err.contains("portLevelSettings[0].tls.mode"), "{err}");
    // Another port's TLS does not touch 9080.
    load(&[&route, &port_tls.replace("number: 9080}", "number: 9443}")]);

    let subsets =
        "  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}, trafficPolicy: {tls: {mode: MUTUAL}}}\n";
    let to_v1 = vs("reviews", "['*']", "    - route: [{destination: {host: reviews, subset: v1}}]\n");
    load(&[&to_v1, &dr(subsets)]);
    let err = load_err(&[&to_v1.replace("subset: v1", "subset: v2"), &dr(subsets)]);
    assert!(err.contains("tls.mode MUTUAL for subset v2"), "{err}");
    // A subset's own DISABLE lifts the rule's SIMPLE for that subset only (MergeTrafficPolicy).
    let lifted = "  trafficPolicy: {tls: {mode: SIMPLE}}\n  subsets:\n  - {name: v1, labels: {version: v1}, trafficPolicy: {tls: {mode: DISABLE}}}\n  - {name: v2, labels: {version: v2}}\n";
    load(&[&to_v1, &dr(lifted)]);
    assert!(load_err(&[&to_v1.replace("subset: v1", "subset: v2"), &dr(lifted)]).contains("tls.mode SIMPLE for every port"));
}

#[test]
fn an_istio_route_without_timeout_has_no_whole_response_deadline() {
    let l = load(&[
        &vs("web", "['*']", &to("web")),
        &vs("api", "[api.example.com]", "    - route: [{destination: {host: api}}]\n      timeout: 3s\n"),
    ]);
    let timeout = |host| lookup(&l.table, false, host, "/").hit().unwrap().route.timeout;
    assert_eq!(timeout("web.example.com"), Some(Duration::ZERO), "zero: the gateway's default deadline is off");
    assert_eq!(timeout("api.example.com"), Some(Duration::from_secs(3)));
    let _ = GATEWAY;
}

#[test]
fn mesh_routes_answer_to_every_dns_name_of_the_service() {
    let mesh = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews}}]\n";
    let l = load_texts_with([("entries.yaml", ENTRIES), ("vs.yaml", mesh)], &LoadOptions { mesh: true, ..LoadOptions::default() })
        .unwrap_or_else(|e| panic!("{e}"));
    for host in ["reviews", "reviews:9080", "reviews.shop", "reviews.shop:9080", "reviews.shop.svc", "reviews.shop.svc.cluster.local:9080"]
    {
        assert_eq!(routed(lookup(&l.table, false, host, "/")).as_deref(), Some("reviews"), "{host}");
    }
    assert!(routed(lookup(&l.table, false, "reviews.other", "/")).is_none());
}

#[test]
fn a_rewrite_on_a_match_without_uri_replaces_the_implicit_slash_prefix() {
    let http = "    - match: [{headers: {x-v: {exact: '2'}}}]\n      rewrite: {uri: /v2}\n      route: [{destination: {host: web}}]\n    - rewrite: {uri: /v1/}\n      route: [{destination: {host: web}}]\n    - route: [{destination: {host: web}}]\n";
    let l = load(&[&vs("web", "['*']", http)]);
    let mut v2 = HeaderMap::new();
    v2.insert("x-v", "2".parse().unwrap());
    let hit = l.table.find(&Method::GET, "/foo", &v2, Some("web.example.com")).unwrap();
    assert_eq!(hit.rewrite_path("/foo?a=1"), "/v2foo?a=1", "Envoy's prefix_rewrite of the implicit `/`");
    let hit = l.table.find(&Method::GET, "/foo/bar", &HeaderMap::new(), Some("web.example.com")).unwrap();
    assert_eq!(hit.rewrite_path("/foo/bar"), "/v1/foo/bar");
}

#[test]
fn virtual_services_for_one_host_merge_with_catch_alls_last() {
    let first = "    - match: [{uri: {prefix: /a}}]\n      route: [{destination: {host: web}}]\n    - route: [{destination: {host: api}}]\n    - match: [{uri: {prefix: /late}}]\n      route: [{destination: {host: web}}]\n";
    let second = "    - match: [{uri: {prefix: /b}}]\n      route: [{destination: {host: admin}}]\n    - match: [{uri: {regex: '.*'}}]\n      route: [{destination: {host: admin}}]\n";
    let l = load(&[&vs("first", "[shop.example.com]", first), &vs("second", "[shop.example.com]", second)]);
    let at = |path| super::fidelity::route_for(&l.table, "shop.example.com", path);
    assert_eq!(at("/a").as_deref(), Some("first.0"));
    assert_eq!(at("/b").as_deref(), Some("second.0"), "the first VirtualService's catch-all no longer hides the second");
    assert_eq!(at("/x").as_deref(), Some("first.1"), "catch-alls keep their order among themselves");
    assert_eq!(at("/late").as_deref(), Some("first.1"), "a route after a catch-all is dropped, as Istio drops it");
    assert!(
        l.warnings
            .iter()
            .any(|w| w.path.ends_with("spec.http[2]") && w.message.contains("after the catch-all route first.1: never reached")),
        "{:#?}",
        l.warnings
    );
}

#[test]
fn valid_istio_that_once_was_refused_loads() {
    // `uri: {}` is every path; `:authority` is matched and set as Envoy does.
    let http = "    - match: [{uri: {}, headers: {':authority': {prefix: api.}}}]\n      headers: {request: {set: {':authority': api.internal, x-a: b}}}\n      route: [{destination: {host: api}}]\n    - route: [{destination: {host: web}}]\n";
    let l = load(&[&vs("web", "['*']", http)]);
    let at = |host| super::fidelity::route_for(&l.table, host, "/any/path");
    assert_eq!(at("api.example.com").as_deref(), Some("web.0"));
    assert_eq!(at("www.example.com").as_deref(), Some("web.1"));
    let api = &l.table.routes[0];
    assert_eq!(api.rewrite_authority.as_ref().map(|a| a.to_str().unwrap()), Some("api.internal"));
    assert_eq!(api.request_headers.set.len(), 1, "x-a only: `:authority` is the authority rewrite");

    let jwt = "    - match: [{headers: {'@request.auth.claims.group': {exact: admin}}}]\n      route: [{destination: {host: api}}]\n";
    let err = load_err(&[&vs("web", "['*']", jwt)]);
    assert!(err.contains("JWT claim routing is not implemented"), "{err}");

    // Istio's own pkg/config/validation/testdata/crds/serviceentry-valid.yaml writes this.
    let entry = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: full}\nspec:\n  hosts: [\"example.com\"]\n  addresses: [1.2.3.4, 001:db8::]\n  ports: [{name: foo, protocol: HTTP, number: 1234}]\n  resolution: DNS\n";
    let l = load(&[entry]);
    assert!(l.warnings.iter().any(|w| w.path.ends_with("spec.addresses")), "{:#?}", l.warnings);
    assert!(load_err(&["a: [b, c: d: e]"]).contains("invalid YAML"), "other YAML errors stay errors");
}

#[test]
fn a_header_sent_twice_is_matched_on_its_joined_value() {
    let http = "    - match: [{headers: {x-tag: {exact: 'a,b'}}}]\n      route: [{destination: {host: api}}]\n    - route: [{destination: {host: web}}]\n";
    let l = load(&[&vs("web", "['*']", http)]);
    let mut twice = HeaderMap::new();
    twice.append("x-tag", "a".parse().unwrap());
    twice.append("x-tag", "b".parse().unwrap());
    assert_eq!(super::fidelity::route_with(&l.table, "w.example.com", "/", &twice).as_deref(), Some("web.0"));
    let mut once = HeaderMap::new();
    once.append("x-tag", "a".parse().unwrap());
    assert_eq!(super::fidelity::route_with(&l.table, "w.example.com", "/", &once).as_deref(), Some("web.1"));
}

#[test]
fn redirects_treat_ports_as_envoy_does_and_take_every_istio_field() {
    let http = "    - match: [{uri: {prefix: /authority}}]\n      redirect: {authority: new.example.com}\n    - match: [{uri: {prefix: /scheme}}]\n      redirect: {scheme: https}\n    - match: [{uri: {prefix: /port}}]\n      redirect: {scheme: https, port: 443}\n    - match: [{uri: {prefix: /derive}}]\n      redirect: {derivePort: FROM_REQUEST_PORT, uri: /derived}\n    - match: [{uri: {prefix: /old}}]\n      redirect: {prefixRewrite: /new, redirectCode: 308}\n";
    let l = load(&[&vs("web", "['*']", http)]);
    let location = |host: &str, path: &str| {
        let hit = lookup(&l.table, false, host, path).hit().unwrap();
        let response = hit.respond(Some(host), path).unwrap();
        (response.status().as_u16(), response.headers()["location"].to_str().unwrap().to_owned())
    };
    let at = |host: &str, path: &str| location(host, path).1;
    assert_eq!(at("web.example.com:8080", "/authority"), "http://new.example.com/authority", "a new authority drops the port");
    assert_eq!(at("web.example.com:8080", "/scheme"), "https://web.example.com:8080/scheme", "a new scheme keeps a non-default port");
    assert_eq!(at("web.example.com:80", "/scheme"), "https://web.example.com/scheme", "and drops the old scheme's default");
    assert_eq!(at("web.example.com:8080", "/port"), "https://web.example.com/port", "443 is https's default");
    assert_eq!(at("web.example.com:8080", "/derive"), "http://web.example.com:8080/derived");
    assert_eq!(at("web.example.com", "/derive"), "http://web.example.com/derived");
    assert_eq!(location("web.example.com", "/old/page?x=1"), (308, "http://web.example.com/new/page?x=1".to_owned()));
    let both = "    - redirect: {port: 8443, derivePort: FROM_REQUEST_PORT}\n";
    assert!(load_err(&[&vs("web", "['*']", both)]).contains("port and derivePort both given"));
}

#[test]
fn delegate_matches_merge_as_istio_has_conflicts() {
    let parent = |m: &str| {
        vs(
            "root",
            "[shop.example.com]",
            &format!("    - match: [{m}]\n      delegate: {{name: child}}\n    - route: [{{destination: {{host: web}}}}]\n"),
        )
    };
    let child = |m: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: child, namespace: shop}}\nspec:\n  http:\n  - match: [{m}]\n    route: [{{destination: {{host: api}}}}]\n"
        )
    };
    let served = |p: &str, c: &str, path: &str| {
        let l = load(&[&parent(p), &child(c)]);
        super::fidelity::route_for(&l.table, "shop.example.com", path).is_some_and(|r| r.starts_with("root.0"))
    };
    assert!(served("{uri: {prefix: /a}}", "{uri: {exact: /ab}}", "/ab"), "an exact child inside the parent's prefix");
    assert!(!served("{uri: {regex: '/a.*'}}", "{uri: {regex: '/a.*'}}", "/ab"), "root and child regexes conflict");
    assert!(!served("{uri: {prefix: /a}}", "{uri: {prefix: /a}, ignoreUriCase: true}", "/ab"), "ignoreUriCase differs");
    assert!(served("{uri: {prefix: /a}}", "{uri: {prefix: /ab}}", "/abc"));
}

#[test]
fn validation_is_as_strict_as_istios_and_websocket_upgrade_is_no_warning() {
    let both = "    - redirect: {uri: /x}\n      rewrite: {uri: /y}\n";
    assert!(load_err(&[&vs("web", "['*']", both)]).contains("redirect and rewrite cannot be combined"));
    let mirrors = "    - route: [{destination: {host: web}}]\n      mirror: {host: api}\n      mirrors: [{destination: {host: admin}}]\n";
    assert!(load_err(&[&vs("web", "['*']", mirrors)]).contains("mirror and mirrors cannot both be given"));
    let ws = "    - route: [{destination: {host: web}}]\n      websocketUpgrade: true\n";
    let l = load(&[&vs("web", "['*']", ws)]);
    assert!(!l.warnings.iter().any(|w| w.path.contains("websocketUpgrade")), "{:#?}", l.warnings);
}

#[test]
fn several_destinations_without_weights_are_refused_as_istio_refuses_them() {
    let http = "    - route: [{destination: {host: web}}, {destination: {host: api}}]\n";
    assert!(load_err(&[&vs("web", "['*']", http)]).contains("total destination weight = 0"));
}

#[test]
fn gateway_servers_on_several_ports_of_one_kind_are_warned() {
    let gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: shop}\nspec:\n  servers:\n  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}\n  - {port: {number: 8080, name: alt, protocol: HTTP}, hosts: ['*']}\n  - {port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*']}\n";
    let l = load_texts_with(
        [("gw.yaml", gw), ("entries.yaml", ENTRIES), ("vs.yaml", vs("web", "['*']", &to("web")).as_str())],
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let several: Vec<_> = l.warnings.iter().filter(|w| w.message.contains("per-port routing is not implemented")).collect();
    assert_eq!(several.len(), 1, "80 and 8080 only: 443 is the TLS listener's: {several:#?}");
    assert!(several[0].message.starts_with("HTTP servers on ports 80, 8080"), "{}", several[0].message);
}
