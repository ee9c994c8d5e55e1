//! Configuration as a Kubernetes controller takes it (issue 22): each state the objects can be
//! in, including none, serves; a reload that removes the last route takes effect.

use std::time::Duration;

use e2e_tests::gateway::TestGateway;
use e2e_tests::upstream::{Behaviour, Upstream};
use e2e_tests::{client, eventually};

const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: shop}\nspec:\n  gatewayClassName: mirror-gateway\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n";

/// A ServiceEntry giving Service `echo` of namespace `shop` the upstream's address.
fn entry(upstream: &Upstream) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: echo, namespace: shop}}\nspec:\n  hosts: [echo.shop.svc.cluster.local]\n  ports: [{{number: {port}, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1}}]\n",
        port = upstream.addr.port()
    )
}

fn route(upstream: &Upstream) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: echo, namespace: shop}}\nspec:\n  parentRefs: [{{name: edge}}]\n  rules: [{{backendRefs: [{{name: echo, port: {}}}]}}]\n",
        upstream.addr.port()
    )
}

async fn status(gateway: &TestGateway, path: &str) -> u16 {
    client().get(gateway.url(path)).send().await.expect("GET").status().as_u16()
}

#[tokio::test]
async fn a_gateway_with_no_route_starts_and_answers_404_until_a_route_attaches() {
    let echo = Upstream::start(Behaviour::ok("echo")).await;
    let gateway =
        TestGateway::builder().file("gateway.yaml", GATEWAY).file("entries.yaml", &entry(&echo)).file("routes.yaml", "").start().await;
    assert_eq!(status(&gateway, "/a").await, 404);

    std::fs::write(&gateway.files[2], route(&echo)).unwrap();
    assert_eq!(gateway.reloader.reload(), Ok(1));
    eventually("the attached route serves", Duration::from_secs(10), || async { status(&gateway, "/a").await == 200 }).await;
    assert!(!echo.requests().is_empty());
    gateway.stop().await;
}

#[tokio::test]
async fn a_reload_that_deletes_the_last_route_takes_effect() {
    let echo = Upstream::start(Behaviour::ok("echo")).await;
    let gateway = TestGateway::builder()
        .file("gateway.yaml", GATEWAY)
        .file("entries.yaml", &entry(&echo))
        .file("routes.yaml", &route(&echo))
        .start()
        .await;
    // The route serves first: the 404 below is the reload's doing.
    assert_eq!(status(&gateway, "/a").await, 200);

    std::fs::write(&gateway.files[2], "").unwrap();
    assert_eq!(gateway.reloader.reload(), Ok(0));
    eventually("the deleted route answers 404", Duration::from_secs(10), || async { status(&gateway, "/a").await == 404 }).await;

    // Detaching (the route names another Gateway) is the same.
    std::fs::write(&gateway.files[2], route(&echo)).unwrap();
    assert_eq!(gateway.reloader.reload(), Ok(1));
    eventually("the route serves again", Duration::from_secs(10), || async { status(&gateway, "/a").await == 200 }).await;
    std::fs::write(&gateway.files[2], route(&echo).replace("parentRefs: [{name: edge}]", "parentRefs: [{name: elsewhere}]")).unwrap();
    assert_eq!(gateway.reloader.reload(), Ok(0));
    eventually("the detached route answers 404", Duration::from_secs(10), || async { status(&gateway, "/a").await == 404 }).await;
    gateway.stop().await;
}

#[tokio::test]
async fn a_native_configuration_with_no_routes_starts_and_answers_404() {
    let gateway = TestGateway::builder().file("native.yaml", "services: {a: [127.0.0.1:1]}\n").start().await;
    assert_eq!(status(&gateway, "/").await, 404);
    gateway.stop().await;
}

/// Issue 22: the gateway's own replies to HEAD (no route, the listener's refusals) carry no
/// JSON type and no body; to GET the same errors are JSON.
#[tokio::test]
async fn the_gateway_s_own_error_replies_to_head_have_no_body_nor_json_type() {
    let gateway = TestGateway::builder()
        .file(
            "native.yaml",
            "services: {a: [127.0.0.1:1]}
routes: [{match: {prefix: /a}, to: a}]
",
        )
        .start()
        .await;
    let client = client();
    let get = client.get(gateway.url("/nowhere")).send().await.expect("GET");
    assert_eq!(get.status(), 404);
    assert_eq!(get.headers()["content-type"], "application/json", "the GET is the proof the HEAD below changes");
    for (what, request) in [
        ("no route", client.head(gateway.url("/nowhere"))),
        ("the listener's refusal", client.head(gateway.url("/a")).header("bad_name", "1")),
        ("an unreachable upstream", client.head(gateway.url("/a"))),
    ] {
        let response = request.send().await.expect("HEAD");
        assert!(response.status().as_u16() >= 400, "{what}: {}", response.status());
        assert!(response.headers().get("content-type").is_none(), "{what}: {:?}", response.headers());
        assert_eq!(response.bytes().await.expect("body").len(), 0, "{what}");
    }
    gateway.stop().await;
}

/// Issue 22: a VirtualService naming a subset no DestinationRule defines yet loads; its route
/// answers 503 `no healthy upstream` until a reload brings the DestinationRule.
#[tokio::test]
async fn a_route_to_a_subset_no_destination_rule_defines_yet_answers_503_until_one_arrives() {
    let echo = Upstream::start(Behaviour::ok("echo")).await;
    let entry = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: echo}}\nspec:\n  hosts: [echo]\n  ports: [{{number: {}, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, labels: {{version: v2}}}}]\n",
        echo.addr.port()
    );
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: echo}\nspec:\n  hosts: ['*']\n  http: [{route: [{destination: {host: echo, subset: v2}}]}]\n";
    let rule = |subset: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: echo}}\nspec:\n  host: echo\n  subsets: [{{name: {subset}, labels: {{version: v2}}}}]\n"
        )
    };
    let gateway = TestGateway::builder()
        .file("se.yaml", &entry)
        .file("vs.yaml", vs)
        .file("dr.yaml", &rule("v1"))
        .setting("scope.mesh", "true")
        .start()
        .await;
    let response = client().get(gateway.url("/a")).send().await.expect("GET");
    assert_eq!(response.status(), 503);
    assert!(response.text().await.unwrap().contains("no healthy upstream"));
    assert!(echo.requests().is_empty());

    std::fs::write(&gateway.files[2], rule("v2")).unwrap();
    assert_eq!(gateway.reloader.reload(), Ok(1));
    eventually("the subset serves once its DestinationRule arrives", Duration::from_secs(10), || async {
        status(&gateway, "/a").await == 200
    })
    .await;
    gateway.stop().await;
}
