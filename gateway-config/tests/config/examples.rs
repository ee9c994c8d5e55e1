//! The tutorial's Istio configuration (verbatim) plus ServiceEntries, and its native equivalent.

use std::path::PathBuf;

use gateway_config::{Loaded, MethodSet, RouteTable, load_files};
use http::Method;

use crate::helpers::{get, route_summary};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name)
}

fn tutorial() -> Loaded {
    load_files(&[example("istio/istio.yaml"), example("istio/service-entries.yaml")]).unwrap_or_else(|e| panic!("{e}"))
}

fn native() -> Loaded {
    load_files(&[example("native.yaml")]).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_tutorial_routing(table: &RouteTable) {
    assert_eq!(table.routes.len(), 2);
    assert_eq!(
        route_summary(table, "/proxy/proxy"),
        Some(("proxy".to_string(), "proxy/v1".to_string(), vec!["127.0.0.1:8091".to_string()]))
    );
    assert_eq!(
        route_summary(table, "/target/index"),
        Some(("target".to_string(), "target/v1".to_string(), vec!["127.0.0.1:8092".to_string()]))
    );
    assert!(get(table, "/other").is_none());
    assert!(get(table, "/target").is_none(), "prefix is /target/");

    let proxy = get(table, "/proxy/x").unwrap().route;
    assert!(proxy.mirrors.is_empty());

    let hit = get(table, "/target/index").unwrap();
    assert_eq!(hit.match_index, Some(0));
    assert_eq!(hit.rewrite_path("/target/index?x=1"), "/index?x=1");
    assert_eq!(hit.route.mirrors.len(), 1);
    let m = &hit.route.mirrors[0];
    assert_eq!(m.name, "target/v2");
    assert_eq!(m.percent, 100.0);
    assert_eq!(m.methods, MethodSet::All);
    assert!(m.methods.allows(&Method::POST));
    assert!(!m.methods.allows(&Method::CONNECT));
    assert!(m.shadow_host_suffix);
    let shadow = table.destination(m.destination);
    assert_eq!(shadow.label(), "target/v2");
    assert_eq!(shadow.endpoints.len(), 1);
    assert_eq!(shadow.endpoints[0].authority(), "127.0.0.1:8093");
    // proxy/v1, target/v1, target/v2
    assert_eq!(table.destinations.len(), 3);
}

#[test]
fn tutorial_istio_files_load_unchanged_with_service_entries() {
    let loaded = tutorial();
    assert_tutorial_routing(&loaded.table);
    assert!(loaded.warnings.is_empty(), "unexpected warnings: {:?}", loaded.warnings);
}

#[test]
fn native_example_routes_like_the_tutorial() {
    let loaded = native();
    assert_tutorial_routing(&loaded.table);
    assert!(loaded.warnings.is_empty());
}

#[test]
fn tutorial_without_service_entries_says_endpoints_are_missing() {
    let err = load_files(&[example("istio/istio.yaml")]).and_then(gateway_config::Loaded::strict).unwrap_err();
    assert!(err.file.ends_with("istio.yaml"));
    assert_eq!(err.path, "document 2 (VirtualService proxy): spec.http[0].route[0].destination.host");
    assert!(err.message.contains("missing endpoints"), "{err}");
}

#[test]
fn table_serializes_to_json() {
    let json = serde_json::to_value(&tutorial().table).unwrap();
    assert_eq!(json["routes"][1]["mirrors"][0]["methods"], "all");
    assert_eq!(json["routes"][1]["mirrors"][0]["timeout"], "5s");
    assert_eq!(json["routes"][0]["matches"][0]["uri"]["prefix"], "/proxy/");
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let err = load_files(&[example("does-not-exist.yaml")]).unwrap_err();
    assert!(err.to_string().contains("does-not-exist.yaml"), "{err}");
}

#[test]
fn gateway_api_tutorial_routes_like_the_istio_one() {
    let loaded = load_files(&[example("gateway-api/gateway-api.yaml"), example("gateway-api/service-entries.yaml")])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let t = &loaded.table;
    assert_eq!(route_summary(t, "/proxy/proxy"), Some(("proxy.0".to_string(), "proxy-v1".to_string(), vec!["127.0.0.1:8091".to_string()])));
    assert_eq!(
        route_summary(t, "/target/index"),
        Some(("target.0".to_string(), "target-v1".to_string(), vec!["127.0.0.1:8092".to_string()]))
    );
    assert!(get(t, "/other").is_none());
    let hit = get(t, "/target/index").unwrap();
    assert_eq!(hit.rewrite_path("/target/index?x=1"), "/index?x=1");
    let m = &hit.route.mirrors[0];
    assert_eq!((m.name.as_str(), m.percent, m.methods.clone()), ("target-v2", 100.0, MethodSet::All));
    assert!(m.compare.is_some());
    assert_eq!(t.destination(m.destination).endpoints[0].authority(), "127.0.0.1:8093");
    assert_eq!(get(t, "/proxy/proxy").unwrap().rewrite_path("/proxy/proxy?url=x"), "/proxy?url=x");
}
