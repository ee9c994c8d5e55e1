//! Hop-by-hop header stripping (RFC 9110 7.6.1) on a typical response head, as the gateway does
//! for every relayed response: without a `Connection` header (the common case) and with one that
//! names further headers.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gateway::upstream::strip_hop_by_hop;
use http::{HeaderMap, HeaderValue};

fn response_head(connection: Option<&'static str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("content-type", "application/json"),
        ("content-length", "1234"),
        ("date", "Thu, 26 Nov 2026 08:00:00 GMT"),
        ("server", "nginx"),
        ("cache-control", "no-store"),
        ("x-request-id", "0b5c3a8e-3f0e-4d1a-9d55-2f0b0c1e7a11"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("vary", "accept-encoding"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Some(connection) = connection {
        headers.insert("connection", HeaderValue::from_static(connection));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-internal", HeaderValue::from_static("1"));
    }
    headers
}

fn headers(c: &mut Criterion) {
    let mut group = c.benchmark_group("hop-by-hop stripping");
    for (name, head) in [
        ("8 headers, no Connection", response_head(None)),
        ("11 headers, Connection names 2", response_head(Some("keep-alive, x-internal"))),
    ] {
        let mut check = head.clone();
        strip_hop_by_hop(&mut check);
        assert!(!check.contains_key("connection") && !check.contains_key("x-internal") && check.contains_key("x-request-id"));
        group.bench_function(name, |b| b.iter_batched_ref(|| head.clone(), strip_hop_by_hop, BatchSize::SmallInput));
    }
    group.finish();
}

criterion_group!(benches, headers);
criterion_main!(benches);
