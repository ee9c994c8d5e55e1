//! A mirror's `verdict:` (native map, Istio annotation): defaults, overrides, off, and errors.

use std::time::Duration;

use gateway_config::{Loaded, VerdictSpec, load_texts};

use crate::helpers::{load, load_err};

fn native(mirror: &str) -> String {
    format!(
        "services: {{ app: {{ v1: [127.0.0.1:1], v2: [127.0.0.1:2] }} }}\nroutes:\n  - {{ name: app, to: app/v1, mirrors: [{mirror}] }}\n"
    )
}

#[test]
fn a_comparing_mirror_has_the_default_verdict_and_others_none() {
    let loaded = load(&native("{ to: app/v2, compare: true }"));
    assert_eq!(loaded.table.routes[0].mirrors[0].verdict, Some(VerdictSpec::default()));
    let loaded = load(&native("{ to: app/v2 }"));
    assert_eq!(loaded.table.routes[0].mirrors[0].verdict, None);
    let loaded = load(&native("{ to: app/v2, compare: true, verdict: false }"));
    assert_eq!(loaded.table.routes[0].mirrors[0].verdict, None);
}

#[test]
fn native_verdict_keys_override_the_defaults() {
    let loaded = load(&native(
        "{ to: app/v2, compare: true, verdict: { min_compared: 50, max_mismatch_rate: 0.5%, max_latency_increase: 20%, max_error_rate_increase: 0.01, window: 90s } }",
    ));
    let spec = loaded.table.routes[0].mirrors[0].verdict.clone().unwrap();
    assert_eq!(spec.min_compared, 50);
    assert!((spec.max_mismatch_rate - 0.005).abs() < 1e-12);
    assert!((spec.max_latency_increase - 0.2).abs() < 1e-12);
    assert_eq!(spec.max_error_rate_increase, 0.01);
    assert_eq!(spec.window, Duration::from_secs(90));
}

#[test]
fn bad_verdicts_are_one_line_errors_naming_the_key() {
    let e = load_err(&native("{ to: app/v2, compare: true, verdict: { max_mismatch_rate: 2 } }"));
    assert!(e.contains("test.yaml") && e.contains("verdict") && e.contains("max_mismatch_rate: \"2\" is not a rate"), "{e}");
    let e = load_err(&native("{ to: app/v2, compare: true, verdict: { window: 0s } }"));
    assert!(e.contains("window: must be greater than zero"), "{e}");
    let e = load_err(&native("{ to: app/v2, compare: true, verdict: { min_compare: 5 } }"));
    assert!(e.contains("unknown key \"min_compare\""), "{e}");
    let e = load_err(&native("{ to: app/v2, verdict: true }"));
    assert!(e.contains("a verdict needs `compare`"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

const ISTIO: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: app }
spec:
  hosts: [app]
  resolution: STATIC
  ports: [{ number: 80, name: http }]
  endpoints:
    - { address: 10.0.0.1, labels: { version: v1 } }
    - { address: 10.0.0.2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: app }
spec:
  host: app
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 80, name: http, protocol: HTTP }, hosts: ["*"] }]
"#;

fn istio(annotations: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: app\n  annotations: {{ {annotations} }}\nspec:\n  hosts: [app]\n  gateways: [gw]\n  http:\n    - route: [{{ destination: {{ host: app, subset: v1 }} }}]\n      mirror: {{ host: app, subset: v2 }}\n"
    )
}

#[test]
fn the_istio_annotation_sets_or_turns_off_the_verdict() {
    let load = |annotations: &str| load_texts([("entries.yaml", ISTIO), ("vs.yaml", istio(annotations).as_str())]).and_then(Loaded::strict);
    let loaded = load(r#"mirror.gateway/compare: "true""#).unwrap();
    assert_eq!(loaded.table.routes[0].mirrors[0].verdict, Some(VerdictSpec::default()));
    let loaded =
        load(r#"mirror.gateway/compare: "true", mirror.gateway/verdict: "min_compared=200, max_mismatch_rate=0.5%, window=5m""#).unwrap();
    let spec = loaded.table.routes[0].mirrors[0].verdict.clone().unwrap();
    assert_eq!((spec.min_compared, spec.window), (200, Duration::from_secs(300)));
    assert!((spec.max_mismatch_rate - 0.005).abs() < 1e-12);
    let loaded = load(r#"mirror.gateway/compare: "true", mirror.gateway/verdict: "false""#).unwrap();
    assert_eq!(loaded.table.routes[0].mirrors[0].verdict, None);
    let e = load(r#"mirror.gateway/compare: "true", mirror.gateway/verdict: "min_compared""#).unwrap_err().to_string();
    assert!(e.contains("vs.yaml") && e.contains("\"min_compared\" is not key=value"), "{e}");
    let e = load(r#"mirror.gateway/verdict: "min_compared=5""#).unwrap_err().to_string();
    assert!(e.contains("a verdict needs mirror.gateway/compare"), "{e}");
}

#[test]
fn a_promotion_names_a_mirror_with_a_verdict_and_sane_steps() {
    let route = |mirror: &str, promote: &str| {
        format!(
            "services: {{ app: {{ v1: [127.0.0.1:1], v2: [127.0.0.1:2] }} }}\nroutes:\n  - {{ name: app, to: app/v1, mirrors: [{mirror}], promote: {promote} }}\n"
        )
    };
    let loaded = load(&route("{ to: app/v2, name: cand, compare: true }", "{ to: app/v2 }"));
    let r = &loaded.table.routes[0];
    let promote = r.promote.clone().unwrap();
    assert_eq!(
        (promote.mirror.as_str(), promote.steps.as_slice(), promote.hold),
        ("cand", &[10, 25, 50, 100][..], Duration::from_secs(300))
    );
    assert_eq!(promote.destination, r.mirrors[0].destination);
    let loaded = load(&route("{ to: app/v2, compare: true }", "{ to: app/v2, steps: [5, 50], hold: 30s }"));
    assert_eq!(loaded.table.routes[0].promote.as_ref().map(|p| (p.steps.clone(), p.hold)), Some((vec![5, 50], Duration::from_secs(30))));

    let e = load_err(&route("{ to: app/v2 }", "{ to: app/v2 }"));
    assert!(e.contains("promote") && e.contains("no mirror of this route to app/v2 has a verdict"), "{e}");
    let e = load_err(&route("{ to: app/v2, compare: true }", "{ to: app/v2, steps: [50, 25] }"));
    assert!(e.contains("strictly increasing"), "{e}");
    let e = load_err(&route("{ to: app/v2, compare: true }", "{ to: app/v2, steps: [10, 101] }"));
    assert!(e.contains("from 1 to 100"), "{e}");
    let e = load_err(&route("{ to: app/v2, compare: true }", "{ to: app/v2, hold: 0s }"));
    assert!(e.contains("hold: must be greater than zero"), "{e}");
}
