//! The tutorial, end to end: its `istio.yaml` unchanged plus a file of ServiceEntries, the gateway,
//! proxy-svc, target v1 and target v2, and a real OTLP receiver.

use std::time::Duration;

use e2e_tests::gateway::TestGateway;
use e2e_tests::otlp::Receiver;
use e2e_tests::services::{RunningService, service_settings};

const ISTIO_YAML: &str = include_str!("../../../examples/istio/istio.yaml");

/// Where the tutorial's workloads run: Istio ServiceEntries, since there is no Kubernetes API.
fn service_entries(proxy: u16, v1: u16, v2: u16) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{ name: proxy, namespace: test }}
spec:
  hosts: [proxy]
  ports: [{{ number: 8090, name: http, protocol: HTTP }}]
  resolution: STATIC
  endpoints:
    - address: 127.0.0.1
      ports: {{ http: {proxy} }}
      labels: {{ app: proxy, version: v1 }}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{ name: target, namespace: test }}
spec:
  hosts: [target]
  ports: [{{ number: 8090, name: http, protocol: HTTP }}]
  resolution: STATIC
  endpoints:
    - address: 127.0.0.1
      ports: {{ http: {v1} }}
      labels: {{ app: target, version: v1 }}
    - address: 127.0.0.1
      ports: {{ http: {v2} }}
      labels: {{ app: target, version: v2 }}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tutorial_runs_unchanged_and_shadow_traffic_is_visible_in_traces() {
    let receiver = Receiver::start_local().await.expect("receiver");
    let settings = service_settings(&[]);
    let v1 = RunningService::start("target", "v1", &settings, Some(&receiver)).await;
    let v2 = RunningService::start("target", "v2", &settings, Some(&receiver)).await;
    let proxy = RunningService::start("proxy", "v1", &settings, Some(&receiver)).await;
    let entries = service_entries(proxy.addr.port(), v1.addr.port(), v2.addr.port());
    let gateway =
        TestGateway::builder().file("istio.yaml", ISTIO_YAML).file("service-entries.yaml", &entries).otlp(&receiver).start().await;
    let client = e2e_tests::client();

    // curl <gateway>/target/index
    let response = client.get(gateway.url("/target/index")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "index");
    // curl '<gateway>/proxy/proxy?url=http://target:8090/index' (target v1's address here)
    let response = client.get(gateway.url(&format!("/proxy/proxy?url={}", v1.url("/index")))).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "index");
    drop(client);

    // Spans end asynchronously (the copy runs on its own): flush until all expected arrived.
    let expected = |spans: &[e2e_tests::otlp::ReceivedSpan]| {
        spans.iter().any(|s| s.name == "mirror")
            && spans.iter().any(|s| s.service_version == "v2" && s.kind == "server")
            && spans.iter().filter(|s| s.service_name == "gateway" && s.kind == "server").count() == 2
            && spans.iter().filter(|s| s.service_name == "target" && s.kind == "server").count() == 3
    };
    e2e_tests::eventually("the mirror's, v2's, two gateway and three target server spans arrived", Duration::from_secs(10), || async {
        for service in [&v1, &v2, &proxy] {
            service.flush().await;
        }
        gateway.flush().await;
        expected(&receiver.wait_until(Duration::from_millis(500), expected).await)
    })
    .await;
    let spans = receiver.spans();

    let mirror = spans.iter().find(|s| s.name == "mirror").expect("a mirror span");
    assert!(mirror.is_shadow());
    assert_eq!(mirror.kind, "client");
    assert_eq!(mirror.attr("mirror.outcome").and_then(|v| v.as_str()), Some("ok"));
    assert_eq!(mirror.attr("mirror.destination").and_then(|v| v.as_str()), Some("target/v2"));
    assert_eq!(mirror.attr("mirror.verdict").and_then(|v| v.as_str()), Some("off"), "the tutorial's mirror does not compare");
    let shadow_server = spans.iter().find(|s| s.service_version == "v2" && s.kind == "server").expect("v2 server span");
    assert_eq!(shadow_server.parent_span_id, mirror.span_id, "v2's server span nests under the mirror span");
    assert!(shadow_server.is_shadow());
    let gateway_server =
        spans.iter().find(|s| s.span_id == mirror.parent_span_id).unwrap_or_else(|| panic!("the mirror's parent in {spans:#?}"));
    assert_eq!((gateway_server.service_name.as_str(), gateway_server.kind.as_str()), ("gateway", "server"));
    assert_eq!(gateway_server.name, "GET target");
    let primary = spans.iter().find(|s| s.service_version == "v1" && s.trace_id == mirror.trace_id).expect("v1 server span, same trace");
    assert!(!primary.is_shadow(), "primary spans are never shadow");
    for span in spans.iter().filter(|s| s.trace_id != mirror.trace_id) {
        assert!(!span.is_shadow(), "the /proxy/ trace has no shadow traffic: {span:?}");
    }
    gateway.stop().await;
    for service in [v1, v2, proxy] {
        service.stop().await;
    }
}
