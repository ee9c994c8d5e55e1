//! Istio's semantics as Istio has them (issue 22), over real sockets: Istio files loaded by
//! the gateway, requests sent to it, and recording upstreams saying what they received.

use std::net::SocketAddr;
use std::time::Duration;

use e2e_tests::gateway::TestGateway;
use e2e_tests::upstream::{Behaviour, Upstream};
use e2e_tests::wire::TrickleUpstream;
use e2e_tests::{client, client_builder};

/// An ingress Gateway serving every host over plain HTTP.
const EDGE: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n";

/// A ServiceEntry saying the Service `host` (namespace `default`, port `port`) runs at `at`.
pub(crate) fn workload(host: &str, port: u16, at: SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {host}}}\nspec:\n  hosts: [{host}]\n  resolution: STATIC\n  ports: [{{number: {port}, name: http, protocol: HTTP}}]\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]\n",
        at.port()
    )
}

/// A VirtualService `name` on `hosts`, bound to `gateways` (`[]`: none, the mesh), with `http`.
pub(crate) fn virtual_service(name: &str, hosts: &str, gateways: &str, http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: {hosts}\n  gateways: {gateways}\n  http:\n{http}"
    )
}

/// Status, `location` and body of a GET of `path` with `Host: host`, redirects not followed.
async fn get(gateway: &TestGateway, host: &str, path: &str) -> (u16, String, String) {
    let client = client_builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client.get(gateway.url(path)).header("host", host).send().await.unwrap();
    let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
    (response.status().as_u16(), location, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_istio_route_without_timeout_waits_past_the_default_deadline_but_not_for_a_stall() {
    let slow = Upstream::start(Behaviour::Slow { delay: Duration::from_millis(1000), body: "late".into() }).await;
    let stalled = TrickleUpstream::start(2, Duration::from_secs(60)).await;
    let http =
        "  - match: [{uri: {prefix: /stall}}]\n    route: [{destination: {host: stalled}}]\n  - route: [{destination: {host: slow}}]\n";
    let gateway = TestGateway::builder()
        .file("gw.yaml", EDGE)
        .file("vs.yaml", &virtual_service("web", "['*']", "[edge]", http))
        .file("workloads.yaml", &[workload("slow", 80, slow.addr), workload("stalled", 80, stalled.addr)].join("---\n"))
        .setting("timeouts.route", "300ms")
        .setting("timeouts.stream_idle", "2s")
        .start()
        .await;
    assert_eq!(get(&gateway, "web.example.com", "/").await, (200, String::new(), "late".to_owned()), "Istio has no route timeout");
    let response = client().get(gateway.url("/stall")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err(), "a stream that stops moving is still reset by the idle timeout");
    gateway.stop().await;
}

/// Istio's HTTPS practice: port 80 redirects `web` to HTTPS, `secret` is on 443 only, `open`
/// is on both.
pub(crate) const TLS_EDGE: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: [web.example.com]
      tls: { httpsRedirect: true }
    - port: { number: 80, name: http-open, protocol: HTTP }
      hosts: [open.example.com]
    - port: { number: 443, name: https, protocol: HTTPS }
      hosts: [web.example.com, secret.example.com, open.example.com]
      tls: { mode: SIMPLE, credentialName: web-cert }
"#;

pub(crate) fn tls_routing(app: SocketAddr) -> String {
    let http = "  - route: [{destination: {host: app}}]\n";
    [
        TLS_EDGE.to_owned(),
        virtual_service("app", "[web.example.com, secret.example.com, open.example.com]", "[edge]", http),
        workload("app", 80, app),
    ]
    .join("---\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_redirects_https_redirect_hosts_and_never_serves_https_only_ones() {
    let app = Upstream::start(Behaviour::ok("app")).await;
    let gateway = TestGateway::builder().file("routing.yaml", &tls_routing(app.addr)).start().await;
    assert_eq!(get(&gateway, "web.example.com", "/a?b=1").await, (301, "https://web.example.com/a?b=1".to_owned(), String::new()));
    assert_eq!(get(&gateway, "secret.example.com", "/a").await.0, 404, "an HTTPS-only host is never served in clear");
    assert_eq!(get(&gateway, "open.example.com", "/a").await, (200, String::new(), "app".to_owned()));
    assert_eq!(app.requests().len(), 1, "only the open host reached the upstream");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_rule_asking_for_tls_on_the_routed_port_is_refused_by_name() {
    let app = Upstream::start(Behaviour::ok("app")).await;
    let rule = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: app}\nspec:\n  host: app\n  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 80}\n      tls: {mode: SIMPLE}\n";
    let routing = [
        EDGE.to_owned(),
        virtual_service("app", "['*']", "[edge]", "  - route: [{destination: {host: app}}]\n"),
        workload("app", 80, app.addr),
    ];
    // As a controller does: the VirtualService that would send plaintext is rejected on its own,
    // with the reason, and the gateway serves the rest.
    let gateway = TestGateway::builder().file("routing.yaml", &routing.join("---\n")).file("dr.yaml", rule).start().await;
    let rejected = gateway.object("VirtualService", "default", "app").await;
    assert_eq!(rejected.state, gateway_config::ObjectState::Rejected, "refused: plaintext where Istio would encrypt");
    let reason = &rejected.conditions[0].message;
    assert!(reason.contains("tls.mode SIMPLE for port 80") && reason.contains("TLS origination is not implemented"), "{reason}");
    assert_eq!(get(&gateway, "app", "/").await.0, 404, "nothing serves the rejected route");
    assert!(app.requests().is_empty(), "no plaintext reached the upstream");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn as_the_mesh_router_a_service_answers_to_the_short_names_applications_send() {
    let httpbin = Upstream::start(Behaviour::ok("httpbin")).await;
    let http = "  - route: [{destination: {host: httpbin}}]\n";
    let gateway = TestGateway::builder()
        .file("vs.yaml", &virtual_service("httpbin", "[httpbin]", "[]", http))
        .file("workloads.yaml", &workload("httpbin", 8000, httpbin.addr))
        .setting("scope.mesh", "true")
        .start()
        .await;
    for host in ["httpbin:8000", "httpbin", "httpbin.default", "httpbin.default.svc:8000", "httpbin.default.svc.cluster.local:8000"] {
        assert_eq!(get(&gateway, host, "/get").await, (200, String::new(), "httpbin".to_owned()), "{host}");
    }
    assert_eq!(get(&gateway, "httpbin.other", "/get").await.0, 404, "another namespace's httpbin is not this one");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rewrite_on_a_match_without_uri_replaces_the_implicit_slash() {
    let web = Upstream::start(Behaviour::ok("web")).await;
    let http = "  - match: [{headers: {x-v: {exact: '2'}}}]\n    rewrite: {uri: /v2}\n    route: [{destination: {host: web}}]\n";
    let gateway = TestGateway::builder()
        .file("gw.yaml", EDGE)
        .file("vs.yaml", &virtual_service("web", "['*']", "[edge]", http))
        .file("workloads.yaml", &workload("web", 80, web.addr))
        .start()
        .await;
    let response = client().get(gateway.url("/foo?a=1")).header("x-v", "2").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(web.requests()[0].uri, "/v2foo?a=1", "Envoy's prefix_rewrite of the implicit `/` prefix");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn split_virtual_services_for_one_host_merge_with_the_catch_all_last() {
    let (web, api) = (Upstream::start(Behaviour::ok("web")).await, Upstream::start(Behaviour::ok("api")).await);
    // istio.io's "split large virtual services": one team's file with the default route first.
    let first = "  - match: [{uri: {prefix: /web}}]\n    route: [{destination: {host: web}}]\n  - route: [{destination: {host: web}}]\n";
    let second = "  - match: [{uri: {prefix: /api}}]\n    route: [{destination: {host: api}}]\n";
    let gateway = TestGateway::builder()
        .file("gw.yaml", EDGE)
        .file("a.yaml", &virtual_service("shop-web", "[shop.example.com]", "[edge]", first))
        .file("b.yaml", &virtual_service("shop-api", "[shop.example.com]", "[edge]", second))
        .file("workloads.yaml", &[workload("web", 80, web.addr), workload("api", 80, api.addr)].join("---\n"))
        .start()
        .await;
    assert_eq!(get(&gateway, "shop.example.com", "/api/items").await.2, "api", "the later fragment is reached");
    assert_eq!(get(&gateway, "shop.example.com", "/anything").await.2, "web", "the catch-all still takes the rest");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_istio_matches_on_authority_and_joined_headers_route_as_envoy_does() {
    let (api, web) = (Upstream::start(Behaviour::ok("api")).await, Upstream::start(Behaviour::ok("web")).await);
    let http = "  - match: [{uri: {}, headers: {':authority': {prefix: api.}}}]\n    headers: {request: {set: {':authority': api.internal}}}\n    route: [{destination: {host: api}}]\n  - match: [{headers: {x-tag: {exact: 'a,b'}}}]\n    route: [{destination: {host: api}}]\n  - route: [{destination: {host: web}}]\n";
    let gateway = TestGateway::builder()
        .file("gw.yaml", EDGE)
        .file("vs.yaml", &virtual_service("shop", "['*']", "[edge]", http))
        .file("workloads.yaml", &[workload("api", 80, api.addr), workload("web", 80, web.addr)].join("---\n"))
        .start()
        .await;
    assert_eq!(get(&gateway, "api.example.com", "/any").await.2, "api");
    assert_eq!(api.requests()[0].headers["host"], "api.internal", "`:authority` set is the authority rewrite");
    assert_eq!(get(&gateway, "www.example.com", "/any").await.2, "web");
    let twice = client().get(gateway.url("/")).header("x-tag", "a").header("x-tag", "b").send().await.unwrap();
    assert_eq!(twice.text().await.unwrap(), "api", "a header sent twice is matched on `a,b`");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_handle_ports_as_envoy_and_rewrite_the_matched_prefix() {
    let http = "  - match: [{uri: {prefix: /moved}}]\n    redirect: {authority: new.example.com}\n  - match: [{uri: {prefix: /secure}}]\n    redirect: {scheme: https}\n  - match: [{uri: {prefix: /old}}]\n    redirect: {prefixRewrite: /new, redirectCode: 302}\n";
    let gateway =
        TestGateway::builder().file("gw.yaml", EDGE).file("vs.yaml", &virtual_service("answers", "['*']", "[edge]", http)).start().await;
    assert_eq!(get(&gateway, "web.example.com:8080", "/moved/x").await.1, "http://new.example.com/moved/x");
    assert_eq!(get(&gateway, "web.example.com:8080", "/secure").await.1, "https://web.example.com:8080/secure");
    assert_eq!(
        get(&gateway, "web.example.com", "/old/page?q=1").await,
        (302, "http://web.example.com/new/page?q=1".to_owned(), String::new())
    );
    gateway.stop().await;
}
