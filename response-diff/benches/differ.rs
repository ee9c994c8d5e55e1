//! The differ on a pair of 100 KiB JSON answers: identical, and differing in a few fields.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, header};
use response_diff::{Captured, Comparison, DiffOptions, compare};

const SIZE: usize = 100 * 1024;

/// About `SIZE` bytes of a product listing; `changed` items get another price.
fn listing(changed: &[usize]) -> Bytes {
    let mut items = Vec::new();
    let mut len = 0;
    let mut i = 0;
    while len < SIZE {
        let price = if changed.contains(&i) { 2999 } else { 1999 };
        let item = format!(
            r#"{{"id":{i},"name":"a product with a long enough name","price":{price},"tags":["x","y","z"],"stock":{{"warehouse":"north","count":{}}}}}"#,
            i % 17
        );
        len += item.len() + 1;
        items.push(item);
        i += 1;
    }
    Bytes::from(format!(r#"{{"page":1,"items":[{}]}}"#, items.join(",")))
}

fn answer(body: Bytes) -> Captured {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Captured { status: 200, headers, body, truncated: false }
}

fn differ(c: &mut Criterion) {
    let primary = answer(listing(&[]));
    let same = answer(listing(&[]));
    let changed = answer(listing(&[3, 200, 500]));
    let options = DiffOptions::default();
    assert_eq!(compare(&primary, &same, &options), Comparison::Match);
    assert!(matches!(compare(&primary, &changed, &options), Comparison::Mismatch(d) if d.iter().any(|d| d.field.contains("price"))));
    let mut group = c.benchmark_group("differ, 100 KiB JSON pair");
    group.throughput(Throughput::Bytes(primary.body.len() as u64 * 2));
    group.bench_function("identical", |b| b.iter(|| compare(&primary, &same, &options)));
    group.bench_function("3 fields differ", |b| b.iter(|| compare(&primary, &changed, &options)));
    group.finish();
}

criterion_group!(benches, differ);
criterion_main!(benches);
