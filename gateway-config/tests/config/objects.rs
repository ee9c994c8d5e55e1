//! Per-object acceptance (issue 22): each Kubernetes object is accepted or rejected on its own,
//! with its conditions; a rejected object never stops the others from loading.

use gateway_config::{ConditionType, Loaded, ObjectState, ObjectStatus, Reason, load_texts};

const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: shop}\nspec:\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n";
const ENTRY: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: web, namespace: shop}\nspec:\n  hosts: [web.example.internal]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n";

fn route(name: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  parentRefs: [{{name: edge}}]\n  rules: {rules}\n"
    )
}

fn good(name: &str) -> String {
    route(
        name,
        &format!(
            "[{{matches: [{{path: {{value: /{name}}}}}], backendRefs: [{{group: networking.istio.io, kind: Hostname, name: web.example.internal, port: 80}}]}}]"
        ),
    )
}

fn load(files: &[(&str, &str)]) -> Loaded {
    load_texts(files.iter().copied()).unwrap_or_else(|e| panic!("refused whole: {e}"))
}

fn object<'a>(l: &'a Loaded, kind: &str, name: &str) -> &'a ObjectStatus {
    l.objects.iter().find(|o| o.kind == kind && o.name == name).unwrap_or_else(|| panic!("no {kind} {name} in {:#?}", l.objects))
}

fn routes(l: &Loaded) -> Vec<&str> {
    l.table.routes.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn an_invalid_object_is_rejected_with_its_reason_and_the_others_load() {
    let bad = route("bad", "[{matches: [{path: {type: Fuzzy, value: /x}}], backendRefs: [{name: web, port: 80}]}]");
    let l = load(&[("gw.yaml", GATEWAY), ("se.yaml", ENTRY), ("a.yaml", &good("a")), ("bad.yaml", &bad), ("b.yaml", &good("b"))]);
    assert_eq!(routes(&l), ["a.0", "b.0"]);
    let rejected = object(&l, "HTTPRoute", "bad");
    assert_eq!(rejected.state, ObjectState::Rejected);
    assert_eq!(rejected.file, "bad.yaml");
    let c = &rejected.conditions[0];
    assert_eq!((c.kind, c.status, c.reason), (ConditionType::Accepted, false, Reason::UnsupportedValue));
    assert_eq!(
        rejected.rejection().unwrap(),
        "bad.yaml: document 1 (HTTPRoute bad): spec.rules[0].matches[0].path.type: unknown path match type \"Fuzzy\" (Exact, PathPrefix, RegularExpression)"
    );
    let a = object(&l, "HTTPRoute", "a");
    assert_eq!(a.state, ObjectState::Accepted);
    assert_eq!(a.summary(), "Accepted=True (Accepted), ResolvedRefs=True (ResolvedRefs)");
    assert_eq!(l.rejected().count(), 1);
    assert!(l.clone().strict().is_err(), "a strict check still fails");
}

#[test]
fn an_object_whose_spec_does_not_read_is_rejected_and_an_earlier_version_stays() {
    // The second document has the identity of the first and a spec of the wrong shape.
    let unreadable = format!("{}---\n{}", good("a"), route("a", "7"));
    let l = load(&[("gw.yaml", GATEWAY), ("se.yaml", ENTRY), ("a.yaml", &unreadable), ("b.yaml", &good("b"))]);
    assert_eq!(routes(&l), ["a.0", "b.0"], "the readable version of a stays, as when an API server refuses an update");
    let rejected: Vec<&ObjectStatus> = l.rejected().collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(
        (rejected[0].kind.as_str(), rejected[0].name.as_str(), rejected[0].document.as_str()),
        ("HTTPRoute", "a", "document 2 (HTTPRoute a)")
    );
    assert!(rejected[0].conditions[0].message.contains("spec.rules"), "{rejected:?}");
}

#[test]
fn an_annotation_error_rejects_its_object_alone() {
    let bad_annotation =
        good("a").replace("name: a, namespace: shop", "name: a, namespace: shop, annotations: {mirror.gateway/compare: maybe}");
    let l = load(&[("gw.yaml", GATEWAY), ("se.yaml", ENTRY), ("a.yaml", &bad_annotation), ("b.yaml", &good("b"))]);
    assert_eq!(routes(&l), ["b.0"]);
    let states: Vec<(&str, ObjectState)> = l.objects.iter().map(|o| (o.name.as_str(), o.state)).collect();
    assert!(states.contains(&("a", ObjectState::Rejected)) && states.contains(&("b", ObjectState::Accepted)), "{states:?}");
    assert!(object(&l, "HTTPRoute", "a").conditions[0].message.contains("mirror.gateway/compare: expected true or false"));
}

#[test]
fn a_backend_nothing_defines_answers_500_and_the_route_says_why() {
    let lost = route("lost", "[{backendRefs: [{group: networking.istio.io, kind: Hostname, name: nowhere.example.internal, port: 80}]}]");
    let l = load(&[("gw.yaml", GATEWAY), ("se.yaml", ENTRY), ("lost.yaml", &lost)]);
    let hit = l.table.find(&http::Method::GET, "/x", &http::HeaderMap::new(), Some("a.example.com")).expect("the route serves");
    assert!(l.table.destination(hit.route.destinations[0].id).unresolved, "its backend answers 500");
    let status = object(&l, "HTTPRoute", "lost");
    assert_eq!(status.state, ObjectState::Accepted);
    let resolved = &status.conditions[1];
    assert_eq!((resolved.kind, resolved.status, resolved.reason), (ConditionType::ResolvedRefs, false, Reason::BackendNotFound));
    assert!(resolved.message.contains("no ServiceEntry or native service defines host \"nowhere.example.internal\""), "{resolved:?}");
}

#[test]
fn a_rejected_gateway_does_not_exist_for_its_routes() {
    let bad_gateway = GATEWAY.replace("listeners: [{name: http, port: 80, protocol: HTTP}]", "listeners: {name: http}");
    let l = load(&[("gw.yaml", &bad_gateway), ("se.yaml", ENTRY), ("a.yaml", &good("a"))]);
    assert!(routes(&l).is_empty());
    assert_eq!(object(&l, "Gateway", "edge").state, ObjectState::Rejected);
    assert_ne!(object(&l, "HTTPRoute", "a").state, ObjectState::Accepted);
}

#[test]
fn what_no_object_holds_stays_fatal() {
    // A file that is not YAML: which objects it held cannot be known; dropping them would
    // delete them.
    let err = load_texts([("gw.yaml", GATEWAY), ("broken.yaml", "kind: [unclosed\n")]).unwrap_err();
    assert!(err.to_string().starts_with("broken.yaml: document 1"), "{err}");
    // A native file is the gateway's own, not objects: its errors refuse the configuration.
    let err = load_texts([("gw.yaml", GATEWAY), ("native.yaml", "routes: [{name: x}]\n")]).unwrap_err();
    assert!(err.to_string().starts_with("native.yaml: routes[0]: required key \"to\" is missing"), "{err}");
}

#[test]
fn istio_objects_are_rejected_on_their_own_too() {
    let vs = |name: &str, host: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  hosts: ['{name}.example.com']\n  http: [{{route: [{{destination: {{host: {host}}}}}]}}]\n"
        )
    };
    let options = gateway_config::LoadOptions { mesh: true, ..Default::default() };
    let l = gateway_config::load_texts_with(
        [
            ("se.yaml", ENTRY),
            ("ok.yaml", vs("ok", "web.example.internal").as_str()),
            ("bad.yaml", vs("bad", "nowhere.example.internal").as_str()),
        ],
        &options,
    )
    .unwrap();
    assert_eq!(routes(&l).len(), 1);
    let bad = object(&l, "VirtualService", "bad");
    assert_eq!(bad.state, ObjectState::Rejected);
    assert!(bad.conditions[0].message.contains("unknown host \"nowhere.example.internal\""), "{bad:?}");
    assert_eq!(object(&l, "VirtualService", "ok").state, ObjectState::Accepted);
}
