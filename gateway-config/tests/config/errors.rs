//! Every error is one line: file, path inside the document, problem.

use crate::helpers::{get, load, load_err};

const SERVICES: &str = "services:\n  target:\n    v1: [target:8090]\n    v2: [target-v2:8090]\n  echo: [echo:1]\n";

fn native_err(routes: &str) -> String {
    load_err(&format!("{SERVICES}routes:\n{routes}"))
}

#[track_caller]
fn assert_err(err: &str, expected: &str) {
    assert_eq!(err, expected);
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn tutorial_unknown_subset_loads_with_a_warning_naming_the_document_and_key() {
    // Issue 22: Istio loads it (IST0101) and answers 503 until a DestinationRule defines it.
    let tutorial = include_str!("../../../examples/istio/istio.yaml")
        .replace("     host: target\n     subset: v2", "     host: target\n     subset: v3");
    let entries = include_str!("../../../examples/istio/service-entries.yaml");
    let loaded = gateway_config::load_texts([("istio.yaml", tutorial.as_str()), ("se.yaml", entries)]).unwrap();
    let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.iter().any(|w| w.starts_with(
            "istio.yaml: document 4 (VirtualService target): spec.http[0].mirror.subset: unknown subset \"v3\" for host \"target\": no DestinationRule defines it (yet) (Istio IST0101 ReferencedResourceNotFound)"
        )),
        "{w:?}"
    );
    let mirror = loaded.table.routes.iter().find(|r| r.name == "target").unwrap().mirrors[0].destination;
    assert!(loaded.table.destination(mirror).endpoints.is_empty(), "no endpoints: 503 until a DestinationRule arrives");
}

#[test]
fn native_unknown_subset_and_host() {
    assert_err(&native_err("  - to: target/v9\n"), "test.yaml: routes[0].to: unknown subset \"v9\" for host \"target\" (known: v1, v2)");
    assert_err(&native_err("  - to: echo/v1\n"), "test.yaml: routes[0].to: unknown subset \"v1\" for host \"echo\" (it has no subsets)");
    let err = native_err("  - to: nowhere\n");
    assert!(err.starts_with("test.yaml: routes[0].to: unknown host \"nowhere\""), "{err}");
    let err = native_err("  - to: echo\n    mirror: nowhere/v2\n");
    assert!(err.starts_with("test.yaml: routes[0].mirror: unknown host"), "{err}");
}

#[test]
fn bad_regex() {
    let err = native_err("  - match: { regex: \"/a(\" }\n    to: echo\n");
    assert!(err.starts_with("test.yaml: routes[0].match.regex: bad regex \"/a(\""), "{err}");
    assert!(!err.contains('\n'));
    let err = native_err("  - match: { headers: { x-a: { regex: \"[\" } } }\n    to: echo\n");
    assert!(err.starts_with("test.yaml: routes[0].match.headers.x-a.regex: bad regex"), "{err}");
}

#[test]
fn percent_out_of_range() {
    assert_err(
        &native_err("  - to: echo\n    mirrors: [{ to: target/v2, percent: 150 }]\n"),
        "test.yaml: routes[0].mirrors[0].percent: percentage 150 is out of range 0..=100",
    );
    let err = native_err("  - to: echo\n    mirrors: [{ to: target/v2, percent: -1 }]\n");
    assert!(err.contains("out of range"), "{err}");
    let err = native_err("  - to: echo\n    mirrors: [{ to: target/v2, percent: .nan }]\n");
    assert!(err.contains("out of range"), "{err}");
}

#[test]
fn duplicate_names() {
    let err = native_err("  - name: a\n    to: echo\n  - name: a\n    to: echo\n");
    assert_err(&err, "test.yaml: routes[1]: duplicate route name \"a\" (first defined at test.yaml: routes[0])");
    let err = native_err("  - to: echo\n    mirrors: [target/v2, { to: target/v1, name: target/v2 }]\n");
    assert_err(&err, "test.yaml: routes[0].mirrors[1]: duplicate mirror name \"target/v2\" in route \"(unnamed)\"");
}

#[test]
fn subsets_without_endpoints_load_with_a_warning() {
    // Issue 13, finding 3: deploying the VirtualService before v2 exists is the usual order.
    let loaded = crate::helpers::load("services:\n  a: []\nroutes:\n  - to: a\n");
    assert!(loaded.table.destination(loaded.table.routes[0].destinations[0].id).endpoints.is_empty());
    assert!(
        loaded.warnings[0].to_string().starts_with("test.yaml: routes[0].to: no endpoints for \"a\" yet: requests routed to it get 503"),
        "{:?}",
        loaded.warnings
    );
    let loaded = crate::helpers::load(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: ['*']\n  http: [{route: [{destination: {host: a, subset: v1}, weight: 100}, {destination: {host: a, subset: v2}, weight: 0}]}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec: {host: a, subsets: [{name: v1, labels: {v: '1'}}, {name: v2, labels: {v: '2'}}]}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: [a], resolution: STATIC, ports: [{number: 80, name: http}], endpoints: [{address: 1.2.3.4, labels: {v: '1'}}]}\n",
    );
    let route = &loaded.table.routes[0];
    assert_eq!(loaded.table.destination(route.destinations[0].id).endpoints.len(), 1);
    assert!(loaded.table.destination(route.destinations[1].id).endpoints.is_empty());
    let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        vec![
            "test.yaml: document 1 (VirtualService x): spec.http[0].route[1].destination.subset: no endpoints for \"a/v2\" yet: requests routed to it get 503 (no healthy upstream) until a reload brings some"
        ]
    );
}

#[test]
fn unknown_keys_are_named() {
    assert_err(
        &load_err(&format!("{SERVICES}routes:\n  - to: echo\n    fault: 3\n")),
        "test.yaml: routes[0].fault: unknown key \"fault\" (expected one of: name, hosts, match, rewrite, to, timeout, mirror, mirrors, promote, upgrades, retries)",
    );
    let err = load_err("servics: {}\n");
    assert!(err.starts_with("test.yaml: servics: unknown key \"servics\""), "{err}");
    let err = native_err("  - to: echo\n    mirrors: [{ to: target/v2, percnt: 3 }]\n");
    assert!(err.starts_with("test.yaml: routes[0].mirrors[0].percnt: unknown key"), "{err}");
}

#[test]
fn bad_values() {
    let cases = [
        ("  - to: echo\n    timeout: 15\n", "test.yaml: routes[0].timeout: bad duration \"15\": missing unit"),
        ("  - to: echo\n    mirrors: [{ to: target/v2, max_body: 1XB }]\n", "test.yaml: routes[0].mirrors[0].max_body: bad size \"1XB\""),
        (
            "  - to: echo\n    mirrors: [{ to: target/v2, headers: { set: { \"bad name\": x } } }]\n",
            "test.yaml: routes[0].mirrors[0].headers.set.bad name: invalid header name",
        ),
        (
            "  - to: echo\n    mirrors: [{ to: target/v2, headers: { set: { x-a: \"a\\nb\" } } }]\n",
            "test.yaml: routes[0].mirrors[0].headers.set.x-a: invalid header value",
        ),
        (
            "  - to: echo\n    mirrors: [{ to: target/v2, sample_header: \"a b\" }]\n",
            "test.yaml: routes[0].mirrors[0].sample_header: invalid header name",
        ),
        ("  - to: echo\n    match: { methods: [\"G T\"] }\n", "test.yaml: routes[0].match.methods[0]: invalid method"),
        ("  - to: [{ to: echo, weight: 0 }]\n", "test.yaml: routes[0].to: weights are all zero"),
        ("  - to: echo\n    rewrite: index\n", "test.yaml: routes[0]: rewrite uri \"index\" must start with `/`"),
        ("  - to: target//v1\n", "test.yaml: routes[0].to: invalid destination"),
        ("  - match: { prefix: /a, exact: /b }\n    to: echo\n", "test.yaml: routes[0].match: a match takes at most one"),
        (
            "  - to: echo\n    mirrors: [{ to: target/v2, compare: { ignore_paths: [timestamp] } }]\n",
            "test.yaml: routes[0].mirrors[0].compare.ignore_paths[0]: invalid JSON path",
        ),
        ("  - name: x\n", "test.yaml: routes[0]: required key \"to\" is missing"),
    ];
    for (routes, expected) in cases {
        let err = native_err(routes);
        assert!(err.starts_with(expected), "expected {expected:?}, got {err:?}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn endpoint_port_zero() {
    let err = load_err("services: {a: [a:0]}\nroutes: [{to: a}]\n");
    assert!(err.starts_with("test.yaml: services.a[0]: bad endpoint \"a:0\": port 0"), "{err}");
    let err = load_err("services: {a: [a]}\nroutes: [{to: a}]\n");
    assert!(err.contains("expected host:port"), "{err}");
    let err = load_err(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: [a], ports: [{number: 80, name: http}], endpoints: [{address: 1.2.3.4, ports: {http: 0}}]}\n",
    );
    assert!(err.starts_with("test.yaml: document 1 (ServiceEntry a): spec.endpoints[0].ports.http: port 0"), "{err}");
}

#[test]
fn zero_routes_is_a_valid_state_with_a_warning() {
    // Issue 22: as a controller with no route attached, the gateway serves 404s; once refused.
    for text in [SERVICES, ""] {
        let l = load(text);
        assert!(l.table.routes.is_empty());
        assert!(get(&l.table, "/").is_none(), "no route: 404");
        let w: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
        assert!(w.iter().any(|w| w.contains("routes: no routes are defined") && w.contains("every request answers 404")), "{w:?}");
    }
}

#[test]
fn istio_percent_and_port_errors() {
    let se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: [a], resolution: STATIC, ports: [{number: 80, name: http}], endpoints: [{address: 1.2.3.4}]}\n---\n";
    let err = load_err(&format!(
        "{se}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: v}}\nspec:\n  hosts: ['*']\n  http: [{{route: [{{destination: {{host: a}}}}], mirror: {{host: a}}, mirrorPercentage: {{value: 150}}}}]\n"
    ));
    assert_err(
        &err,
        "test.yaml: document 2 (VirtualService v): spec.http[0].mirrorPercentage.value: percentage 150 is out of range 0..=100",
    );
    let err = load_err(&format!(
        "{se}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: v}}\nspec:\n  hosts: ['*']\n  http: [{{route: [{{destination: {{host: a, port: {{number: 81}}}}}}]}}]\n"
    ));
    assert!(
        err.starts_with("test.yaml: document 2 (VirtualService v): spec.http[0].route[0].destination.host: port 81 is not declared"),
        "{err}"
    );
    let err = load_err(&format!(
        "{se}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: v}}\nspec:\n  hosts: ['*']\n  http: [{{match: [{{method: {{regex: 'GET|POST'}}}}], route: [{{destination: {{host: a}}}}]}}]\n"
    ));
    assert!(err.contains("spec.http[0].match[0].method: only `exact`"), "{err}");
}
