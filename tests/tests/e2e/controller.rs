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

/// Issue 22: three teams' HTTPRoutes on one Gateway, each in its own file, each backend a
/// ServiceEntry of the shared entries file.
mod teams {
    use e2e_tests::upstream::Upstream;

    pub const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: infra}\nspec:\n  gatewayClassName: mirror-gateway\n  listeners: [{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]\n";

    pub fn entries(backends: &[(&str, &Upstream)]) -> String {
        backends
            .iter()
            .map(|(name, u)| {
                format!(
                    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: infra}}\nspec:\n  hosts: [{name}.example.internal]\n  ports: [{{number: {port}, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1}}]\n",
                    port = u.addr.port()
                )
            })
            .collect::<Vec<_>>()
            .join("---\n")
    }

    /// Team `team`'s route: `path_type` `/team` to the ServiceEntry host `backend`.
    pub fn route(team: &str, path_type: &str, backend: &str, upstream: &Upstream) -> String {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {team}, namespace: {team}}}\nspec:\n  parentRefs: [{{name: edge, namespace: infra}}]\n  rules:\n  - matches: [{{path: {{type: {path_type}, value: /{team}}}}}]\n    backendRefs: [{{group: networking.istio.io, kind: Hostname, name: {backend}.example.internal, port: {port}}}]\n",
            port = upstream.addr.port()
        )
    }
}

async fn body(gateway: &TestGateway, path: &str) -> (u16, String) {
    let response = client().get(gateway.url(path)).send().await.expect("GET");
    (response.status().as_u16(), response.text().await.expect("body"))
}

/// Issue 22: a reload in which one team's object turns invalid while another team's changes:
/// the valid change takes effect, the invalid object is reported (status, metric) with its
/// reason, and nothing else stops serving.
#[tokio::test]
async fn a_reload_with_one_invalid_object_applies_the_others_and_reports_it() {
    use e2e_tests::metrics::metric;
    let (a, b, b2, c) = (
        Upstream::start(Behaviour::ok("a")).await,
        Upstream::start(Behaviour::ok("b")).await,
        Upstream::start(Behaviour::ok("b2")).await,
        Upstream::start(Behaviour::ok("c")).await,
    );
    let entries = teams::entries(&[("a", &a), ("b", &b), ("b2", &b2), ("c", &c)]);
    let gateway = TestGateway::builder()
        .file("gateway.yaml", teams::GATEWAY)
        .file("entries.yaml", &entries)
        .file("team-a.yaml", &teams::route("team-a", "PathPrefix", "a", &a))
        .file("team-b.yaml", &teams::route("team-b", "PathPrefix", "b", &b))
        .file("team-c.yaml", &teams::route("team-c", "PathPrefix", "c", &c))
        .start()
        .await;
    for (path, expected) in [("/team-a", "a"), ("/team-b", "b"), ("/team-c", "c")] {
        assert_eq!(body(&gateway, path).await, (200, expected.to_string()), "{path} before the reload");
    }

    // Team a writes a path type that does not exist; team b moves to its new backend.
    std::fs::write(&gateway.files[2], teams::route("team-a", "Fuzzy", "a", &a)).unwrap();
    std::fs::write(&gateway.files[3], teams::route("team-b", "PathPrefix", "b2", &b2)).unwrap();
    assert_eq!(gateway.reloader.reload(), Ok(2), "the reload applies: team b's and team c's routes");
    eventually("team b's change takes effect", Duration::from_secs(10), || async { body(&gateway, "/team-b").await.1 == "b2" }).await;
    assert_eq!(body(&gateway, "/team-c").await, (200, "c".to_string()), "team c, unchanged, keeps serving");
    assert_eq!(status(&gateway, "/team-a").await, 404, "the rejected object serves nothing");

    let rejected = gateway.object("HTTPRoute", "team-a", "team-a").await;
    assert_eq!(rejected.state, gateway_config::ObjectState::Rejected);
    let accepted = &rejected.conditions[0];
    assert_eq!((accepted.kind, accepted.status), (gateway_config::ConditionType::Accepted, false));
    assert!(
        accepted.message.contains("spec.rules[0].matches[0].path.type: unknown path match type \"Fuzzy\""),
        "the reason names the key: {accepted:?}"
    );
    for (kind, ns, name) in [("HTTPRoute", "team-b", "team-b"), ("HTTPRoute", "team-c", "team-c"), ("Gateway", "infra", "edge")] {
        let object = gateway.object(kind, ns, name).await;
        assert_eq!(object.state, gateway_config::ObjectState::Accepted, "{object:?}");
    }
    let metrics = gateway.metrics().await;
    metric("gateway_config_objects").label("kind", "HTTPRoute").label("state", "rejected").value(1.0).assert_in(&metrics);
    metric("gateway_config_objects").label("kind", "HTTPRoute").label("state", "accepted").value(2.0).assert_in(&metrics);
    assert_eq!(gateway.config().await["last_reload_error"], serde_json::Value::Null, "the reload itself succeeded");

    // Fixed, it serves again.
    std::fs::write(&gateway.files[2], teams::route("team-a", "PathPrefix", "a", &a)).unwrap();
    assert_eq!(gateway.reloader.reload(), Ok(3));
    eventually("team a serves again once fixed", Duration::from_secs(10), || async { body(&gateway, "/team-a").await.1 == "a" }).await;
    metric("gateway_config_objects").label("kind", "HTTPRoute").label("state", "rejected").value(0.0).assert_in(&gateway.metrics().await);
    gateway.stop().await;
}
