//! Route matching on a table of 100 routes, by prefix and by regex: the first route, the last,
//! and a request no route takes (a 404 walks the whole table).

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_config::RouteTable;
use http::{HeaderMap, Method};
use std::hint::black_box;

const ROUTES: usize = 100;

fn table(matcher: impl Fn(usize) -> String) -> RouteTable {
    let mut yaml = String::from("services: { app: { v1: [127.0.0.1:8080] } }\nroutes:\n");
    for i in 0..ROUTES {
        yaml.push_str(&format!("  - {{ name: r{i}, match: {{ {} }}, to: app/v1 }}\n", matcher(i)));
    }
    gateway_config::load_str("bench.yaml", &yaml).expect("the benchmark's routing is valid").table
}

fn matching(c: &mut Criterion) {
    let prefix = table(|i| format!("prefix: /service-{i}/"));
    let regex = table(|i| format!("regex: \"/items-{i}/[0-9]+(/[a-z]+)?\""));
    let headers = HeaderMap::new();
    let get = Method::GET;
    let cases: [(&str, &RouteTable, &str); 6] = [
        ("prefix/first", &prefix, "/service-0/index?x=1"),
        ("prefix/last", &prefix, "/service-99/index?x=1"),
        ("prefix/none", &prefix, "/nothing/here"),
        ("regex/first", &regex, "/items-0/12345/details"),
        ("regex/last", &regex, "/items-99/12345/details"),
        ("regex/none", &regex, "/nothing/here"),
    ];
    let mut group = c.benchmark_group("route matching, 100 routes");
    for (name, table, path) in cases {
        let expected = !name.ends_with("none");
        assert_eq!(table.find(&get, path, &headers, Some("shop.example.com")).is_some(), expected, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| table.find(black_box(&get), black_box(path), &headers, Some("shop.example.com")).is_some())
        });
    }
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
