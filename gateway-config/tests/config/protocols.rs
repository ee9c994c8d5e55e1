//! The protocol spoken to each destination: native `protocol:`, Istio ServiceEntry port
//! `protocol` / `appProtocol`.

use gateway_config::{Protocol, load_texts};

use crate::helpers::{load, load_err};

fn protocol_of(table: &gateway_config::RouteTable, route: &str) -> Protocol {
    let route = table.routes.iter().find(|r| r.name == route).unwrap_or_else(|| panic!("no route {route}"));
    table.destination(route.destinations[0].id).protocol
}

#[test]
fn native_services_say_their_protocol_and_default_to_http1() {
    let loaded = load(
        r#"
services:
  greeter: { protocol: http2, endpoints: [127.0.0.1:50051] }
  shop: { protocol: auto, v1: [127.0.0.1:8081], v2: [127.0.0.1:8082] }
  legacy: [127.0.0.1:9000]
  old: { v1: [127.0.0.1:9001] }
routes:
  - { name: grpc, match: { prefix: /greet. }, to: greeter, mirror: shop/v2 }
  - { name: shop, match: { prefix: /shop/ }, to: shop/v1 }
  - { name: legacy, match: { prefix: /legacy/ }, to: legacy }
  - { name: old, to: old/v1 }
"#,
    );
    let table = &loaded.table;
    assert_eq!(protocol_of(table, "grpc"), Protocol::Http2);
    assert_eq!(protocol_of(table, "shop"), Protocol::Auto);
    assert_eq!(table.destination(table.routes[0].mirrors[0].destination).protocol, Protocol::Auto);
    assert_eq!(protocol_of(table, "legacy"), Protocol::Http1);
    assert_eq!(protocol_of(table, "old"), Protocol::Http1);
    let greeter = table.destination(table.routes[0].destinations[0].id);
    assert_eq!(greeter.endpoints.iter().map(|e| e.authority()).collect::<Vec<_>>(), ["127.0.0.1:50051"]);
    let json = serde_json::to_value(table).unwrap();
    assert_eq!(json["destinations"][0]["protocol"], "http2", "/config shows it");
}

#[test]
fn native_protocol_errors_name_the_key() {
    let err = load_err("services:\n  g: { protocol: quic, endpoints: [127.0.0.1:1] }\nroutes: [{ to: g }]\n");
    assert_eq!(err, "test.yaml: services.g.protocol: unknown protocol \"quic\" (expected http1, http2 or auto)");
    let err = load_err("services:\n  g: { endpoints: [127.0.0.1:1], v1: [127.0.0.1:2] }\nroutes: [{ to: g }]\n");
    assert_eq!(err, "test.yaml: services.g: a service has either `endpoints` or subsets (v1: [...]), not both");
}

const ISTIO: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: greeter }
spec:
  hosts: [greeter.test]
  resolution: STATIC
  ports:
    - { number: 80, name: http, protocol: HTTP }
    - { number: 50051, name: grpc, protocol: GRPC }
    - { number: 8080, name: web, protocol: HTTP, appProtocol: kubernetes.io/h2c }
    - { number: 9000, name: h2, protocol: HTTP2 }
    - { number: 5432, name: db, protocol: TCP }
  endpoints:
    - { address: 127.0.0.1 }
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 80, name: http, protocol: HTTP }, hosts: ["*"] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: greeter }
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
    - { name: plain, match: [{ uri: { prefix: /plain } }], route: [{ destination: { host: greeter.test, port: { number: 80 } } }] }
    - { name: grpc, match: [{ uri: { prefix: /grpc } }], route: [{ destination: { host: greeter.test, port: { number: 50051 } } }] }
    - { name: app, match: [{ uri: { prefix: /app } }], route: [{ destination: { host: greeter.test, port: { number: 8080 } } }] }
    - { name: h2, match: [{ uri: { prefix: /h2 } }], route: [{ destination: { host: greeter.test, port: { number: 9000 } } }] }
    - { name: db, match: [{ uri: { prefix: /db } }], route: [{ destination: { host: greeter.test, port: { number: 5432 } } }] }
    - { name: first, route: [{ destination: { host: greeter.test } }] }
"#;

#[test]
fn service_entry_ports_choose_the_protocol() {
    let loaded = load_texts([("istio.yaml", ISTIO)]).unwrap_or_else(|e| panic!("{e}"));
    let table = &loaded.table;
    assert_eq!(protocol_of(table, "greeter.plain"), Protocol::Http1);
    assert_eq!(protocol_of(table, "greeter.grpc"), Protocol::Http2);
    assert_eq!(protocol_of(table, "greeter.app"), Protocol::Http2, "appProtocol wins over protocol");
    assert_eq!(protocol_of(table, "greeter.h2"), Protocol::Http2);
    assert_eq!(protocol_of(table, "greeter.db"), Protocol::Http1, "HTTP routed to a TCP port: HTTP/1.1");
    assert_eq!(protocol_of(table, "greeter.first"), Protocol::Http1, "no port: the first port");
    let warned: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert!(!warned.iter().any(|w| w.contains("appProtocol")), "appProtocol is understood: {warned:?}");
}
