//! Gateway API behaviour the specification and its conformance suite
//! (kubernetes-sigs/gateway-api `conformance/tests/httproute-*`) ask for, on real sockets:
//! the suite's infrastructure (Gateway `same-namespace` in `gateway-conformance-infra`, Services
//! `infra-backend-v1`/`-v2` on port 8080) with ServiceEntries saying where the backends listen.
//! Manifests and expectations are written here from what the suite specifies (issue 22).

use std::time::Duration;

use e2e_tests::gateway::TestGateway;
use e2e_tests::upstream::{Behaviour, Upstream};
use e2e_tests::{client, eventually};
use gateway_config::{ConditionType, ObjectState, Reason};

const NS: &str = "gateway-conformance-infra";

fn gateway(listeners: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: same-namespace, namespace: {NS}}}\nspec:\n  gatewayClassName: mirror-gateway\n  listeners: {listeners}\n"
    )
}

const HTTP_LISTENER: &str = "[{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}]";

/// The Service `name` of the infra namespace, listening where `upstream` does.
fn service(name: &str, upstream: &Upstream) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  hosts: [{name}.{NS}.svc.cluster.local]\n  ports: [{{number: 8080, name: http, protocol: HTTP, targetPort: {port}}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1}}]\n",
        port = upstream.addr.port()
    )
}

fn route(name: &str, spec: &str) -> String {
    format!("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n{spec}")
}

struct Infra {
    v1: Upstream,
    v2: Upstream,
}

impl Infra {
    async fn start() -> Self {
        Infra { v1: Upstream::start(Behaviour::ok("v1")).await, v2: Upstream::start(Behaviour::ok("v2")).await }
    }

    fn services(&self) -> String {
        format!("{}---\n{}", service("infra-backend-v1", &self.v1), service("infra-backend-v2", &self.v2))
    }

    async fn gateway(&self, listeners: &str, routes: &str) -> TestGateway {
        TestGateway::builder()
            .file("gateway.yaml", &gateway(listeners))
            .file("services.yaml", &self.services())
            .file("routes.yaml", routes)
            .start()
            .await
    }
}

async fn send(gateway: &TestGateway, method: reqwest::Method, path: &str) -> reqwest::Response {
    client().request(method, gateway.url(path)).send().await.expect("request")
}

async fn status(gateway: &TestGateway, path: &str) -> u16 {
    send(gateway, reqwest::Method::GET, path).await.status().as_u16()
}

/// httproute-invalid-backendref-unknown-kind: the rule answers 500, ResolvedRefs=False
/// InvalidKind; the route is accepted and its other rules serve.
#[tokio::test]
async fn a_backend_ref_of_an_unknown_kind_answers_500_and_the_other_rules_serve() {
    let infra = Infra::start().await;
    let routes = route(
        "invalid-backend-ref-unknown-kind",
        "  parentRefs: [{name: same-namespace}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /v2}}]\n    backendRefs: [{group: unknownkind.example.com, kind: NonExistent, name: infra-backend-v1, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /ok}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n",
    );
    let gateway = infra.gateway(HTTP_LISTENER, &routes).await;
    assert_eq!(status(&gateway, "/v2").await, 500);
    assert_eq!(status(&gateway, "/ok").await, 200);
    assert_eq!(infra.v1.requests().len(), 1, "only /ok reached the backend");
    let object = gateway.object("HTTPRoute", NS, "invalid-backend-ref-unknown-kind").await;
    assert_eq!(object.state, ObjectState::Accepted);
    let resolved = object.conditions.iter().find(|c| c.kind == ConditionType::ResolvedRefs).expect("ResolvedRefs");
    assert_eq!((resolved.status, resolved.reason), (false, Reason::InvalidKind));
    gateway.stop().await;
}

/// httproute-invalid-nonexistent-backendref: a Service nothing defines and whose cluster DNS
/// name does not resolve answers 500, not 502.
#[tokio::test]
async fn a_backend_service_that_does_not_exist_answers_500() {
    let infra = Infra::start().await;
    let routes = route(
        "invalid-nonexistent-backend-ref",
        &format!(
            "  parentRefs: [{{name: same-namespace}}]\n  rules:\n  - backendRefs: [{{name: nonexistent, namespace: {NS}, port: 8080}}]\n"
        ),
    );
    let gateway = infra.gateway(HTTP_LISTENER, &routes).await;
    let response = send(&gateway, reqwest::Method::GET, "/").await;
    assert_eq!(response.status(), 500);
    assert_eq!(response.text().await.unwrap(), r#"{"error":"backend not found"}"#);
    gateway.stop().await;
}

/// httproute-303/307/308-redirect: the status the filter names, the path kept.
#[tokio::test]
async fn redirects_answer_303_307_and_308() {
    let infra = Infra::start().await;
    let rule = |prefix: &str, code: u16| {
        format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    filters: [{{type: RequestRedirect, requestRedirect: {{statusCode: {code}}}}}]\n"
        )
    };
    let routes = route(
        "redirects",
        &format!(
            "  parentRefs: [{{name: same-namespace}}]\n  rules:\n{}{}{}",
            rule("/see-other", 303),
            rule("/temporary", 307),
            rule("/permanent", 308)
        ),
    );
    let gateway = infra.gateway(HTTP_LISTENER, &routes).await;
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for (path, code) in [("/see-other", 303), ("/temporary", 307), ("/permanent", 308)] {
        let response = no_redirects.post(gateway.url(path)).send().await.expect("POST");
        assert_eq!(response.status().as_u16(), code, "{path}");
        let location = response.headers()["location"].to_str().unwrap().to_string();
        assert!(location.ends_with(path), "{path}: {location}");
    }
    assert!(infra.v1.requests().is_empty());
    gateway.stop().await;
}

/// httproute-request-header-modifier-backend-weights: each backendRef's own filter applies to
/// the requests sent to it alone; httproute-response-header-modifier on the rule.
#[tokio::test]
async fn backend_ref_filters_change_only_their_backend_s_requests_and_responses() {
    let infra = Infra::start().await;
    let backend = |name: &str| {
        format!(
            "{{name: {name}, port: 8080, weight: 10, filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: Backend, value: {name}}}]}}}}, {{type: ResponseHeaderModifier, responseHeaderModifier: {{add: [{{name: X-Answered-By, value: {name}}}]}}}}]}}"
        )
    };
    let routes = route(
        "request-header-modifier-backend-weights",
        &format!(
            "  parentRefs: [{{name: same-namespace}}]\n  rules:\n  - filters: [{{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: X-Rule, value: r1}}]}}}}]\n    backendRefs: [{}, {}]\n",
            backend("infra-backend-v1"),
            backend("infra-backend-v2")
        ),
    );
    let gateway = infra.gateway(HTTP_LISTENER, &routes).await;
    for _ in 0..40 {
        let response = send(&gateway, reqwest::Method::GET, "/").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-rule"], "r1");
        let answered_by = response.headers()["x-answered-by"].to_str().unwrap().to_string();
        let body = response.text().await.unwrap();
        assert_eq!(answered_by, format!("infra-backend-{body}"), "the response filter of the backend that answered");
    }
    for (upstream, name) in [(&infra.v1, "infra-backend-v1"), (&infra.v2, "infra-backend-v2")] {
        let requests = upstream.requests();
        assert!(!requests.is_empty(), "{name} got a share");
        for r in requests {
            let values: Vec<_> = r.headers.get_all("backend").iter().collect();
            assert_eq!(values, [name], "{name}");
        }
    }
    gateway.stop().await;
}

/// httproute-timeout-backend-request: the backend request's own deadline (504); `0s` none.
#[tokio::test]
async fn timeouts_backend_request_bounds_the_backend_s_answer() {
    let slow = Upstream::start(Behaviour::Slow { delay: Duration::from_millis(1500), body: "slow".into() }).await;
    let infra = Infra { v1: slow, v2: Upstream::start(Behaviour::ok("v2")).await };
    let routes = route(
        "backend-request-timeout",
        "  parentRefs: [{name: same-namespace}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /backend-timeout}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n    timeouts: {backendRequest: 500ms}\n  - matches: [{path: {type: PathPrefix, value: /disable-backend-timeout}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n    timeouts: {backendRequest: 0s}\n",
    );
    let gateway = infra.gateway(HTTP_LISTENER, &routes).await;
    assert_eq!(status(&gateway, "/backend-timeout").await, 504);
    assert_eq!(status(&gateway, "/disable-backend-timeout").await, 200, "0s: no backend deadline");
    gateway.stop().await;
}

/// httproute-invalid-parentref-not-matching-listener-port and -section-name: Accepted=False
/// NoMatchingParent, nothing served; the matching port attaches.
#[tokio::test]
async fn a_parent_ref_port_or_section_no_listener_has_is_not_accepted() {
    let infra = Infra::start().await;
    let one = |name: &str, parent: &str, prefix: &str| {
        route(
            name,
            &format!(
                "  parentRefs: [{parent}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    backendRefs: [{{name: infra-backend-v1, port: 8080}}]\n"
            ),
        )
    };
    let routes = [
        one("port-mismatch", "{name: same-namespace, port: 81}", "/wrong-port"),
        one("section-mismatch", "{name: same-namespace, sectionName: nope}", "/wrong-section"),
        one("port-match", "{name: same-namespace, port: 80}", "/right-port"),
    ]
    .join("---\n");
    let gateway = infra.gateway(HTTP_LISTENER, &routes).await;
    assert_eq!(status(&gateway, "/right-port").await, 200);
    assert_eq!(status(&gateway, "/wrong-port").await, 404);
    assert_eq!(status(&gateway, "/wrong-section").await, 404);
    for name in ["port-mismatch", "section-mismatch"] {
        let object = gateway.object("HTTPRoute", NS, name).await;
        assert_eq!((object.state, object.conditions[0].reason), (ObjectState::Rejected, Reason::NoMatchingParent), "{name}");
    }
    gateway.stop().await;
}

/// `allowedRoutes.namespaces.from: Selector`: routes of the namespaces whose `Namespace`
/// objects carry the labels attach; others are NotAllowedByListeners; a reload that labels a
/// namespace attaches its routes.
#[tokio::test]
async fn a_listener_selector_takes_routes_of_the_labelled_namespaces() {
    let infra = Infra::start().await;
    let listener = "[{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {gateway-access: granted}}}}}]";
    let namespace =
        |name: &str, labels: &str| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n");
    let team = |ns: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: same-namespace, namespace: {NS}}}]\n  rules:\n  - matches: [{{path: {{value: /{ns}}}}}]\n    backendRefs: [{{group: networking.istio.io, kind: Hostname, name: infra-backend-v1.{NS}.svc.cluster.local, port: 8080}}]\n"
        )
    };
    let files = |red_labels: &str| {
        [namespace("blue", "gateway-access: granted"), namespace("red", red_labels), team("blue"), team("red")].join("---\n")
    };
    let gateway = infra.gateway(listener, &files("other: label")).await;
    assert_eq!(status(&gateway, "/blue").await, 200);
    assert_eq!(status(&gateway, "/red").await, 404);
    let red = gateway.object("HTTPRoute", "red", "web").await;
    assert_eq!((red.state, red.conditions[0].reason), (ObjectState::Rejected, Reason::NotAllowedByListeners));

    std::fs::write(&gateway.files[2], files("gateway-access: granted")).unwrap();
    assert_eq!(gateway.reloader.reload(), Ok(2));
    eventually("labelled, red's route attaches", Duration::from_secs(10), || async { status(&gateway, "/red").await == 200 }).await;
    gateway.stop().await;
}

/// Istio's `Hostname` backend naming a ServiceEntry's short host as that ServiceEntry writes it.
#[tokio::test]
async fn a_hostname_backend_names_a_short_service_entry_host_as_written() {
    let gwa = Upstream::start(Behaviour::ok("gwa")).await;
    let entry = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: gwa, namespace: team-c}}\nspec:\n  hosts: [gwa]\n  ports: [{{number: {port}, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1}}]\n",
        port = gwa.addr.port()
    );
    let routes = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: gwa, namespace: team-c}}\nspec:\n  parentRefs: [{{name: edge}}]\n  rules: [{{backendRefs: [{{group: networking.istio.io, kind: Hostname, name: gwa, port: {port}}}]}}]\n",
        port = gwa.addr.port()
    );
    let gw = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: team-c}\nspec:\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n";
    let gateway = TestGateway::builder().file("gateway.yaml", gw).file("entry.yaml", &entry).file("routes.yaml", &routes).start().await;
    let response = send(&gateway, reqwest::Method::GET, "/").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "gwa");
    gateway.stop().await;
}

/// An HTTPS listener is never served in clear: without `tls:` in the settings, a route bound
/// only to it is not accepted (NotAllowedByListeners) and plain HTTP gets 404; the same route
/// on the HTTP listener serves. httproute-disallowed-kind: `allowedRoutes.kinds` without
/// HTTPRoute takes none.
#[tokio::test]
async fn routes_of_an_https_listener_are_never_served_in_clear_nor_of_a_listener_for_other_kinds() {
    let infra = Infra::start().await;
    let listeners = "[{name: http, port: 80, protocol: HTTP}, {name: https, port: 443, protocol: HTTPS, hostname: secure.example.com, tls: {certificateRefs: [{name: cert}]}}, {name: tls-only, port: 8443, protocol: HTTP, allowedRoutes: {kinds: [{kind: TLSRoute}]}}]";
    let one = |name: &str, section: &str, host: &str| {
        route(
            name,
            &format!(
                "  parentRefs: [{{name: same-namespace, sectionName: {section}}}]\n  hostnames: [{host}]\n  rules: [{{backendRefs: [{{name: infra-backend-v1, port: 8080}}]}}]\n"
            ),
        )
    };
    let routes = [
        one("secure", "https", "secure.example.com"),
        one("kinds", "tls-only", "kinds.example.com"),
        one("plain", "http", "plain.example.com"),
    ]
    .join("---\n");
    let gateway = infra.gateway(listeners, &routes).await;
    let get = |host: &'static str| {
        let url = gateway.url("/");
        async move { client().get(url).header("host", host).send().await.expect("GET").status().as_u16() }
    };
    assert_eq!(get("plain.example.com").await, 200, "the HTTP listener's route is the proof the others could serve");
    assert_eq!(get("secure.example.com").await, 404, "never in clear");
    assert_eq!(get("kinds.example.com").await, 404);
    for name in ["secure", "kinds"] {
        let object = gateway.object("HTTPRoute", NS, name).await;
        assert_eq!((object.state, object.conditions[0].reason), (ObjectState::Rejected, Reason::NotAllowedByListeners), "{name}");
    }
    assert!(gateway.object("HTTPRoute", NS, "secure").await.conditions[0].message.contains("never served in clear"));
    gateway.stop().await;
}

/// httproute-partially-invalid-via-invalid-reference-grant: a backend in another namespace whose
/// ReferenceGrant does not cover it answers 500 (RefNotPermitted) and the covered sibling rule
/// serves; in one weighted rule, only the share of the uncovered backend answers 500.
#[tokio::test]
async fn a_backend_no_reference_grant_covers_answers_500_and_its_siblings_serve() {
    let infra = Infra::start().await;
    let (app_v1, app_v2) = (Upstream::start(Behaviour::ok("app-v1")).await, Upstream::start(Behaviour::ok("app-v2")).await);
    let app = "gateway-conformance-app-backend";
    let services = [service("app-backend-v1", &app_v1), service("app-backend-v2", &app_v2)].join("---\n").replace(NS, app);
    let grant = format!(
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: invalid-reference-grant, namespace: {app}}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {NS}}}]\n  to: [{{group: '', kind: Service, name: app-backend-v1}}]\n"
    );
    let routes = route(
        "invalid-reference-grant",
        &format!(
            "  parentRefs: [{{name: same-namespace}}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /v2}}}}]\n    backendRefs: [{{name: app-backend-v2, namespace: {app}, port: 8080}}]\n  - matches: [{{path: {{type: PathPrefix, value: /split}}}}]\n    backendRefs: [{{name: app-backend-v1, namespace: {app}, port: 8080, weight: 1}}, {{name: app-backend-v2, namespace: {app}, port: 8080, weight: 1}}]\n  - backendRefs: [{{name: app-backend-v1, namespace: {app}, port: 8080}}]\n"
        ),
    );
    let gateway = TestGateway::builder()
        .file("gateway.yaml", &gateway(HTTP_LISTENER))
        .file("services.yaml", &format!("{}---\n{services}", infra.services()))
        .file("grant.yaml", &grant)
        .file("routes.yaml", &routes)
        .start()
        .await;
    assert_eq!(status(&gateway, "/v2").await, 500);
    let response = send(&gateway, reqwest::Method::GET, "/").await;
    assert_eq!((response.status().as_u16(), response.text().await.unwrap()), (200, "app-v1".to_string()));
    let mut answers = std::collections::BTreeMap::new();
    for _ in 0..60 {
        *answers.entry(status(&gateway, "/split").await).or_insert(0) += 1;
    }
    assert!(answers.get(&200).is_some_and(|n| *n > 0) && answers.get(&500).is_some_and(|n| *n > 0), "both shares: {answers:?}");
    assert_eq!(answers.keys().copied().collect::<Vec<_>>(), [200, 500], "{answers:?}");
    assert!(app_v2.requests().is_empty(), "nothing reaches the backend no grant covers");
    let object = gateway.object("HTTPRoute", NS, "invalid-reference-grant").await;
    let resolved = object.conditions.iter().find(|c| c.kind == ConditionType::ResolvedRefs).expect("ResolvedRefs");
    assert_eq!((object.state, resolved.status, resolved.reason), (ObjectState::Accepted, false, Reason::RefNotPermitted));
    gateway.stop().await;
}
