use std::io::Write;

use super::*;
use http::HeaderValue;

fn resp(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Captured {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    Captured { status, headers: map, body: body.into(), truncated: false }
}

fn json(body: &str) -> Captured {
    resp(200, &[("content-type", "application/json")], body.to_owned())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        enc.write_all(data).unwrap();
    }
    out
}

fn diff(field: &str, primary: Option<&str>, shadow: Option<&str>) -> Difference {
    Difference { field: field.to_owned(), primary: primary.map(str::to_owned), shadow: shadow.map(str::to_owned) }
}

fn mismatch(c: Comparison) -> Vec<Difference> {
    match c {
        Comparison::Mismatch(d) => d,
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

fn fields(c: Comparison) -> Vec<String> {
    mismatch(c).into_iter().map(|d| d.field).collect()
}

fn opts() -> DiffOptions {
    DiffOptions::default()
}

#[test]
fn identical_responses_match() {
    let a = json(r#"{"a":1}"#);
    assert_eq!(compare(&a, &a.clone(), &opts()), Comparison::Match);
    let empty = resp(204, &[], Bytes::new());
    assert_eq!(compare(&empty, &empty.clone(), &opts()), Comparison::Match);
}

#[test]
fn status_is_reported_first() {
    let a = resp(200, &[("x-a", "1")], "same");
    let b = resp(503, &[("x-a", "2")], "other");
    let d = mismatch(compare(&a, &b, &opts()));
    assert_eq!(d[0], diff("status", Some("200"), Some("503")));
    assert_eq!(d[1].field, "header:x-a");
    assert_eq!(d[2].field, "body:text[{}]");
}

#[test]
fn nested_json_change_is_named_by_its_path() {
    let a = json(r#"{"user":{"name":"Ann","tags":["x"]},"items":[{"id":1},{"id":2}]}"#);
    let b = json(r#"{"user":{"name":"Bob","tags":["x"]},"items":[{"id":1},{"id":3}]}"#);
    assert_eq!(
        mismatch(compare(&a, &b, &opts())),
        vec![diff("$.items[1].id", Some("2"), Some("3")), diff("$.user.name", Some("\"Ann\""), Some("\"Bob\"")),]
    );
}

#[test]
fn missing_and_added_keys_and_type_changes() {
    let a = json(r#"{"gone":true,"t":1,"odd key":1}"#);
    let b = json(r#"{"new":null,"t":"1","odd key":2}"#);
    assert_eq!(
        mismatch(compare(&a, &b, &opts())),
        vec![
            diff("$.gone", Some("true"), None),
            diff("$.new", None, Some("null")),
            diff("$['odd key']", Some("1"), Some("2")),
            diff("$.t", Some("1"), Some("\"1\"")),
        ]
    );
}

#[test]
fn json_key_order_and_number_form_are_irrelevant() {
    let a = json(r#"{"a":1,"b":{"x":[1,2],"y":2.0}}"#);
    let b = json(r#"{ "b": {"y": 2, "x": [1, 2]}, "a": 1.0 }"#);
    // The bytes (and so content-length) differ; the documents do not.
    let mut b = b;
    b.headers.insert(header::CONTENT_LENGTH, "99".parse().unwrap());
    assert_eq!(compare(&a, &b, &opts()), Comparison::Match);
}

#[test]
fn ignored_paths_give_a_match() {
    let a = json(r#"{"timestamp":1,"items":[{"id":"a","v":1},{"id":"b","v":2}],"meta":{"x":1}}"#);
    let b = json(r#"{"timestamp":2,"items":[{"id":"c","v":1},{"id":"d","v":2}],"meta":{"y":2}}"#);
    let mut o = opts();
    o.ignore_paths = ["$.timestamp", "$.items[*].id", "$.meta"].iter().map(|p| p.parse().unwrap()).collect();
    assert_eq!(compare(&a, &b, &o), Comparison::Match);
    o.ignore_paths.pop();
    assert_eq!(fields(compare(&a, &b, &o)), ["$.meta.x", "$.meta.y"]);
    o.ignore_paths = vec!["$.*".parse().unwrap()];
    assert_eq!(compare(&a, &b, &o), Comparison::Match);
}

#[test]
fn array_length_change() {
    let a = json(r#"{"items":[1,2,3]}"#);
    let b = json(r#"{"items":[1,5,3,4]}"#);
    assert_eq!(
        mismatch(compare(&a, &b, &opts())),
        vec![diff("$.items", Some("array of 3"), Some("array of 4")), diff("$.items[1]", Some("2"), Some("5")),]
    );
}

#[test]
fn json_by_parsing_without_content_type_and_root_change() {
    let a = resp(200, &[], "[1]");
    let b = resp(200, &[], "{}");
    assert_eq!(mismatch(compare(&a, &b, &opts())), vec![diff("$", Some("[1]"), Some("{}"))]);
}

#[test]
fn text_line_diff() {
    let a = resp(200, &[("content-type", "text/plain")], "one\ntwo\nthree\nfour\n");
    let b = resp(200, &[("content-type", "text/plain")], "one\nTWO\nthree\nfour\nfive\n");
    assert_eq!(
        mismatch(compare(&a, &b, &opts())),
        vec![diff("body:text[one {} three]", Some("two"), Some("TWO")), diff("body:text[five]", None, Some("five")),]
    );
    let c = resp(200, &[("content-type", "text/plain")], "one\nthree\nfour\n");
    assert_eq!(mismatch(compare(&a, &c, &opts())), vec![diff("body:text[two]", Some("two"), None)]);
}

#[test]
fn content_type_json_but_invalid_json_falls_back_to_text() {
    let a = json("{broken\nx");
    let b = json("{broken\ny");
    assert_eq!(mismatch(compare(&a, &b, &opts())), vec![diff("body:text[{broken {}]", Some("x"), Some("y"))]);
}

#[test]
fn gzip_and_deflate_bodies_equal_to_plain_match() {
    let body = br#"{"a":[1,2,3],"b":"hello hello hello"}"#;
    let plain = resp(200, &[("content-type", "application/json"), ("content-length", "38")], &body[..]);
    let zipped = gzip(body);
    let len = zipped.len().to_string();
    let gz = resp(200, &[("content-type", "application/json"), ("content-encoding", "gzip"), ("content-length", &len)], zipped);
    assert_eq!(compare(&plain, &gz, &opts()), Comparison::Match);
    let x_gz = resp(200, &[("content-type", "application/json"), ("content-encoding", "X-GZIP")], gzip(body));
    assert_eq!(compare(&plain, &x_gz, &opts()), Comparison::Match);

    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(body).unwrap();
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    raw.write_all(body).unwrap();
    for encoded in [zlib.finish().unwrap(), raw.finish().unwrap()] {
        let d = resp(200, &[("content-type", "application/json"), ("content-encoding", "deflate")], encoded);
        assert_eq!(compare(&plain, &d, &opts()), Comparison::Match);
    }

    // A difference inside a compressed body is still found.
    let other =
        resp(200, &[("content-type", "application/json"), ("content-encoding", "gzip")], gzip(br#"{"a":[1,2,4],"b":"hello hello hello"}"#));
    assert_eq!(fields(compare(&plain, &other, &opts())), ["$.a[2]"]);
}

#[test]
fn brotli_and_stacked_encodings() {
    let body = b"line one\nline two\n";
    let plain = resp(200, &[], &body[..]);
    let br = resp(200, &[("content-encoding", "br")], brotli(body));
    assert_eq!(compare(&plain, &br, &opts()), Comparison::Match);
    // gzip applied first, then br.
    let both = resp(200, &[("content-encoding", "gzip, br")], brotli(&gzip(body)));
    assert_eq!(compare(&plain, &both, &opts()), Comparison::Match);
    let identity = resp(200, &[("content-encoding", "identity")], &body[..]);
    assert_eq!(compare(&plain, &identity, &opts()), Comparison::Match);
}

#[test]
fn unknown_or_corrupt_encoding_is_skipped() {
    let plain = resp(200, &[], "abc");
    let zstd = resp(200, &[("content-encoding", "zstd")], "abc");
    assert_eq!(compare(&plain, &zstd, &opts()), Comparison::Skipped(SkipReason::UndecodableEncoding("zstd".into())));
    let corrupt = resp(200, &[("content-encoding", "gzip")], "not gzip at all");
    assert!(matches!(
        compare(&plain, &corrupt, &opts()),
        Comparison::Skipped(SkipReason::UndecodableEncoding(why)) if why.starts_with("gzip")
    ));
}

#[test]
fn over_cap_is_skipped() {
    let a = resp(200, &[], "abc");
    let mut b = resp(200, &[], "abd");
    b.truncated = true;
    assert_eq!(compare(&a, &b, &opts()), Comparison::Skipped(SkipReason::BodyOverCap));
    assert_eq!(compare(&b, &a, &opts()), Comparison::Skipped(SkipReason::BodyOverCap));
    // A differing status is not hidden by the skipped body.
    b.status = 500;
    assert_eq!(fields(compare(&a, &b, &opts())), ["status"]);
}

#[test]
fn decompression_bomb_is_over_cap() {
    let bomb = gzip(&vec![0u8; decode::MAX_DECODED + 1]);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let a = resp(200, &[], "x");
    let b = resp(200, &[("content-encoding", "gzip")], bomb);
    assert_eq!(compare(&a, &b, &opts()), Comparison::Skipped(SkipReason::BodyOverCap));
}

#[test]
fn binary_bodies_are_compared_by_hash() {
    let a = resp(200, &[("content-type", "image/png")], vec![0xff, 0xfe, 0x00, 1]);
    let b = resp(200, &[("content-type", "image/png")], vec![0xff, 0xfe, 0x00, 2, 3]);
    assert_eq!(compare(&a, &a.clone(), &opts()), Comparison::Match);
    let d = mismatch(compare(&a, &b, &opts()));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].field, "body");
    let p = d[0].primary.as_deref().unwrap();
    let s = d[0].shadow.as_deref().unwrap();
    assert!(p.starts_with("sha256:") && p.ends_with("… (4 bytes)"), "{p}");
    assert!(s.ends_with("(5 bytes)") && p != s, "{s}");
    // sha256 of [ff fe 00 01] starts with these bytes.
    assert_eq!(p, fingerprint(&[0xff, 0xfe, 0x00, 1]));
    assert_eq!(p.len(), "sha256:".len() + 12 + "… (4 bytes)".len());
}

#[test]
fn default_ignored_headers() {
    let a = resp(
        200,
        &[
            ("date", "Mon"),
            ("x-request-id", "1"),
            ("server", "a"),
            ("age", "1"),
            ("connection", "close"),
            ("transfer-encoding", "chunked"),
            ("keep-alive", "timeout=5"),
            ("content-length", "5"),
        ],
        "hello",
    );
    let b = resp(200, &[("date", "Tue"), ("x-request-id", "2"), ("server", "b"), ("content-length", "5")], "hello");
    assert_eq!(compare(&a, &b, &opts()), Comparison::Match);
    // content-length is compared when the bodies are the same.
    let c = resp(200, &[("content-length", "6")], "hello");
    assert_eq!(fields(compare(&b, &c, &opts())), ["header:content-length"]);
}

#[test]
fn custom_ignored_headers_and_multi_values() {
    let a = resp(200, &[("etag", "\"1\""), ("vary", "a"), ("vary", "b")], "x");
    let b = resp(200, &[("etag", "\"2\""), ("vary", "b"), ("vary", "a")], "x");
    assert_eq!(
        mismatch(compare(&a, &b, &opts())),
        vec![diff("header:etag", Some("\"1\""), Some("\"2\"")), diff("header:vary", Some(r#"["a","b"]"#), Some(r#"["b","a"]"#)),]
    );
    let mut o = opts();
    o.ignore_headers = vec![HeaderName::from_static("etag"), HeaderName::from_static("vary")];
    assert_eq!(compare(&a, &b, &o), Comparison::Match);
    let missing = resp(200, &[("etag", "\"1\"")], "x");
    assert_eq!(mismatch(compare(&a, &missing, &opts())), vec![diff("header:vary", Some(r#"["a","b"]"#), None)]);
}

#[test]
fn secret_header_values_are_redacted() {
    let a = resp(200, &[("set-cookie", "session=abc"), ("authorization", "Bearer secret")], "x");
    let b = resp(200, &[("set-cookie", "session=def")], "x");
    let d = mismatch(compare(&a, &b, &opts()));
    assert_eq!(d, vec![diff("header:authorization", Some(REDACTED), None), diff("header:set-cookie", Some(REDACTED), Some(REDACTED)),]);
    let shown = format!("{d:?}{}", serde_json::to_string(&d).unwrap());
    assert!(!shown.contains("abc") && !shown.contains("secret"), "{shown}");
}

#[test]
fn redact_values_keeps_fields_only() {
    let a = resp(200, &[("x-v", "1")], r#"{"password":"hunter2","n":1}"#);
    let b = resp(500, &[("x-v", "2")], r#"{"password":"letmein","n":1}"#);
    let mut o = opts();
    o.redact_values = true;
    assert_eq!(
        mismatch(compare(&a, &b, &o)),
        vec![
            diff("status", Some("200"), Some("500")),
            diff("header:x-v", Some(REDACTED), Some(REDACTED)),
            diff("$.password", Some(REDACTED), Some(REDACTED)),
        ]
    );
    // Hidden is not absent: a key only one side has is still shown as absent on the other.
    let only = mismatch(compare(&json(r#"{"a":"x"}"#), &json("{}"), &o));
    assert_eq!(only, vec![diff("$.a", Some(REDACTED), None)]);
    assert!(Difference::hidden(&only[0].primary) && !Difference::hidden(&only[0].shadow));
    for (x, y) in [("apple\nbanana", "apple\ncherry"), ("\u{0}\u{ff}", "\u{1}")] {
        let d = mismatch(compare(&resp(200, &[], x), &resp(200, &[], y), &o));
        assert!(d.iter().all(|d| [&d.primary, &d.shadow].iter().all(|v| v.is_none() || Difference::hidden(v))), "{d:?}");
        let shown = format!("{d:?}");
        assert!(!shown.contains("apple") && !shown.contains("banana") && !shown.contains("cherry"), "{shown}");
    }
}

#[test]
fn long_values_are_truncated() {
    let long_a = "a".repeat(500);
    let long_b = format!("é{}", "b".repeat(500));
    let a = json(&format!(r#"{{"s":"{long_a}"}}"#));
    let b = json(&format!(r#"{{"s":"{long_b}"}}"#));
    let mut o = opts();
    o.max_value_len = 10;
    let d = mismatch(compare(&a, &b, &o));
    assert_eq!(d, vec![diff("$.s", Some("\"aaaaaaaaa…"), Some("\"ébbbbbbbb…"))]);
    let d = mismatch(compare(&resp(200, &[], long_a), &resp(200, &[], long_b), &o));
    assert_eq!(d[0].primary.as_deref(), Some("aaaaaaaaaa…"));
    assert_eq!(d[0].shadow.as_deref(), Some("ébbbbbbbbb…"));
    let d = mismatch(compare(&resp(200, &[("x", &"h".repeat(50))], "1"), &resp(200, &[], "1"), &o));
    assert_eq!(d[0].primary.as_deref(), Some("hhhhhhhhhh…"));
    assert_eq!(shorten("short", 10), "short");
    assert_eq!(shorten("exactly10!", 10), "exactly10!");
    assert_eq!(shorten("abc", 0), "…");
}

#[test]
fn differences_are_capped() {
    let a: Vec<String> = (0..100).map(|i| format!("\"k{i:03}\":{i}")).collect();
    let b: Vec<String> = (0..100).map(|i| format!("\"k{i:03}\":{}", i + 1)).collect();
    let a = json(&format!("{{{}}}", a.join(",")));
    let b = json(&format!("{{{}}}", b.join(",")));
    assert_eq!(mismatch(compare(&a, &b, &opts())).len(), 20);
    let mut o = opts();
    o.max_differences = 3;
    assert_eq!(fields(compare(&a, &b, &o)), ["$.k000", "$.k001", "$.k002"]);
    // Lines with words of their own, so each is a field of its own.
    let word = |i: usize| -> String { i.to_string().bytes().map(|d| char::from(b'a' + d - b'0')).collect() };
    let text_a: String = (0..100).map(|i| format!("{} {i}\n", word(i))).collect();
    let text_b: String = (0..100).map(|i| format!("{} {}\n", word(i), i * 7 + 1)).collect();
    assert_eq!(mismatch(compare(&resp(200, &[], text_a), &resp(200, &[], text_b), &o)).len(), 3);
}

#[test]
fn noise_filter_learns_and_classifies() {
    let noise = NoiseFilter::new(10);
    let first = json(r#"{"ts":1,"req":"a","v":1}"#);
    let again = json(r#"{"ts":2,"req":"b","v":1}"#);
    noise.learn("/a", &compare(&first, &again, &opts()));
    noise.learn("/a", &Comparison::Match);
    assert_eq!(noise.fields(), ["$.req", "$.ts"]);

    let shadow_noise = json(r#"{"ts":3,"req":"c","v":1}"#);
    assert_eq!(noise.classify("/a", compare(&first, &shadow_noise, &opts())), Classified::Noise(vec!["$.req".into(), "$.ts".into()]));
    let shadow_real = json(r#"{"ts":3,"req":"a","v":2}"#);
    assert_eq!(noise.classify("/a", compare(&first, &shadow_real, &opts())), Classified::Mismatch(vec![diff("$.v", Some("1"), Some("2"))]));
    assert_eq!(noise.classify("/a", Comparison::Match), Classified::Match);
    assert_eq!(noise.classify("/a", Comparison::Skipped(SkipReason::BodyOverCap)), Classified::Skipped(SkipReason::BodyOverCap));
    assert_eq!(Classified::Match.label(), "match");
    // The noise taken out of a mismatch is kept beside it, values and all.
    let both = json(r#"{"ts":4,"req":"a","v":2}"#);
    let (classified, noisy) = noise.split("/a", compare(&first, &both, &opts()));
    assert_eq!(classified, Classified::Mismatch(vec![diff("$.v", Some("1"), Some("2"))]));
    assert_eq!(noisy, [diff("$.ts", Some("1"), Some("4"))]);
}

#[test]
fn noise_filter_is_bounded_and_shareable() {
    let noise = std::sync::Arc::new(NoiseFilter::new(3));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let noise = noise.clone();
            std::thread::spawn(move || {
                let d = (0..5).map(|i| diff(&format!("$.f{t}{i}"), None, None)).collect();
                noise.learn("/a", &Comparison::Mismatch(d));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(noise.fields().len(), 3);
    let summary = noise.summary();
    assert!(summary.full);
    assert_eq!(summary.not_learned, 17);
}

#[test]
fn serializes_for_the_admin_api() {
    let c = Comparison::Mismatch(vec![diff("status", Some("200"), Some("500"))]);
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        serde_json::json!({"Mismatch": [{"field": "status", "primary": "200", "shadow": "500"}]})
    );
    assert_eq!(serde_json::to_value(Classified::Noise(vec!["$.a".into()])).unwrap(), serde_json::json!({"Noise": ["$.a"]}));
    assert_eq!(
        serde_json::to_value(Comparison::Skipped(SkipReason::UndecodableEncoding("zstd".into()))).unwrap(),
        serde_json::json!({"Skipped": {"UndecodableEncoding": "zstd"}})
    );
}

/// A small xorshift generator: deterministic garbage without a dependency.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self) -> Vec<u8> {
        let len = (self.next() % 300) as usize;
        let alphabet = b"{}[]\":,01a \n\x00\xff\xc3\xa9\x1f\x8b";
        (0..len)
            .map(|_| {
                let r = self.next();
                if r.is_multiple_of(2) { alphabet[(r >> 8) as usize % alphabet.len()] } else { (r >> 16) as u8 }
            })
            .collect()
    }
}

#[test]
fn garbage_input_never_panics() {
    let mut g = Garbage(0x9e37_79b9_7f4a_7c15);
    let encodings = ["", "gzip", "deflate", "br", "x-gzip", "gzip, br", "zstd", ",,", "identity"];
    let mut o = opts();
    o.ignore_paths = vec!["$[*].*".parse().unwrap()];
    o.max_value_len = 3;
    let noise = NoiseFilter::new(50);
    for round in 0..2000 {
        let mut captured = || {
            let enc = encodings[(g.next() % encodings.len() as u64) as usize];
            let mut c = resp((g.next() % 600) as u16, &[("content-encoding", enc)], g.bytes());
            if g.next().is_multiple_of(4) {
                // Garbage that really is compressed, so decoding goes past the header.
                c.body = Bytes::from(if enc == "br" { brotli(&c.body) } else { gzip(&c.body) });
            }
            c.truncated = g.next().is_multiple_of(50);
            c
        };
        let (a, b) = (captured(), captured());
        let c = compare(&a, &b, &o);
        if round % 2 == 0 {
            noise.learn("/a", &c);
        } else {
            let _ = noise.classify("/a", c);
        }
        // Valid, deep JSON too.
        let depth = (g.next() % 200) as usize;
        let deep_a = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let deep_b = format!("{}2{}", "[".repeat(depth), "]".repeat(depth));
        let _ = compare(&resp(200, &[], deep_a), &resp(200, &[], deep_b), &o);
    }
    for s in ["", "$", "$[", "$['", "$[\\", "$['\\", "$.é[*]", "$[0][0][*]"] {
        let _ = s.parse::<JsonPath>();
    }
}

#[test]
fn noise_is_learned_per_path_pattern_with_its_samples() {
    let noise = NoiseFilter::new(10);
    let differs = Comparison::Mismatch(vec![diff("$.seq", Some("1"), Some("2"))]);
    noise.learn("/orders/17?x=1", &differs);
    noise.learn("/orders/18", &differs);
    assert_eq!(
        noise.learned(),
        [LearnedNoise { pattern: "/orders/{id}".into(), field: "$.seq".into(), change: Change::Value, samples: 2 }]
    );
    assert_eq!(noise.classify("/orders/99", differs.clone()), Classified::Noise(vec!["$.seq".into()]));
    assert_eq!(noise.classify("/prices", differs.clone()), Classified::Mismatch(vec![diff("$.seq", Some("1"), Some("2"))]));
    assert_eq!(noise.reclassified(), 1);
    assert_eq!(path_pattern("/users/42/items/3f2b9c1e-aa00-4f6e-9c3e-0b1d2e3f4a5b"), "/users/{id}/items/{id}");
    assert_eq!(path_pattern("/index"), "/index");
    assert_eq!(path_pattern(""), "/");
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs.iter().map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap())).collect()
}

/// What an httpbin-like echo answers: its request's host, URL and headers.
fn echo(request: &HeaderMap) -> Captured {
    let host = request["host"].to_str().unwrap();
    let echoed: serde_json::Map<String, serde_json::Value> =
        request.iter().map(|(k, v)| (k.as_str().to_ascii_uppercase(), serde_json::Value::from(v.to_str().unwrap()))).collect();
    let body = serde_json::json!({ "url": format!("http://{host}/anything?q=1"), "headers": echoed }).to_string();
    let mut response = json(&body);
    response.headers.insert("location", HeaderValue::from_str(&format!("http://{host}/next")).unwrap());
    response.headers.insert("content-length", HeaderValue::from(body.len()));
    response
}

#[test]
fn a_copy_the_gateway_changed_compares_equal_when_the_shadow_only_echoes_the_changes() {
    let primary_request = headers(&[
        ("host", "shop.example.com:8080"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("authorization", "Bearer t"),
        ("x-request-id", "r-1"),
    ]);
    let copy_request = headers(&[
        ("host", "shop.example.com-shadow:8080"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"),
        ("x-shadow", "v2"),
        ("x-request-id", "r-1"),
    ]);
    let changes = CopyChanges::between(&primary_request, &copy_request);
    let (primary, shadow) = (echo(&primary_request), echo(&copy_request));
    assert!(matches!(compare(&primary, &shadow, &opts()), Comparison::Mismatch(_)), "a plain diff sees the gateway's changes");
    assert_eq!(compare_copy(&primary, &shadow, &opts(), &changes), Comparison::Match);

    // A real difference still shows, named by its path.
    let mut changed = shadow.clone();
    changed.body = Bytes::from(String::from_utf8_lossy(&shadow.body).replace("/anything", "/everything"));
    match compare_copy(&primary, &changed, &opts(), &changes) {
        Comparison::Mismatch(d) => assert_eq!(d[0].field, "$.url"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn echoed_header_lines_in_text_bodies_are_undone_too() {
    let primary_request = headers(&[("host", "target"), ("x-env", "live")]);
    let copy_request = headers(&[("host", "target-shadow"), ("x-env", "shadow"), ("x-shadow", "v2")]);
    let changes = CopyChanges::between(&primary_request, &copy_request);
    let text = |host: &str, env: &str, marker: bool| Captured {
        status: 200,
        headers: HeaderMap::new(),
        body: Bytes::from(format!("Host: {host}\nX-Env: {env}\n{}done\n", if marker { "X-Shadow: v2\n" } else { "" })),
        truncated: false,
    };
    assert_eq!(compare_copy(&text("target", "live", false), &text("target-shadow", "shadow", true), &opts(), &changes), Comparison::Match);
}

fn value(field: &str) -> Difference {
    diff(field, Some("1"), Some("2"))
}

#[test]
fn a_field_noisy_on_several_patterns_is_noise_everywhere() {
    let noise = NoiseFilter::new(10);
    let timing = Comparison::Mismatch(vec![value("$.query_ms")]);
    noise.learn("/shop/orders.json", &timing);
    noise.learn("/shop/customers/1254.json", &timing);
    // Two patterns: still only where it was seen.
    assert_eq!(noise.classify("/shop.json", timing.clone()), Classified::Mismatch(vec![value("$.query_ms")]));
    assert_eq!(noise.classify("/shop/customers/375.json", timing.clone()), Classified::Noise(vec!["$.query_ms".into()]));
    noise.learn("/shop/orders/17.json", &timing);
    // Three: everywhere, on a pattern never learned from.
    assert_eq!(noise.classify("/shop.json", timing.clone()), Classified::Noise(vec!["$.query_ms".into()]));
    let summary = noise.summary();
    assert_eq!(
        summary.fields,
        [NoiseField { field: "$.query_ms".into(), change: Change::Value, samples: 3, patterns: 3, everywhere: true }]
    );
    assert!(!summary.full);
    // ... but not where the primary was compared with itself often without it differing.
    for _ in 0..STABLE_AFTER_SAMPLES {
        noise.learn("/stable", &Comparison::Match);
    }
    assert_eq!(noise.classify("/stable", timing.clone()), Classified::Mismatch(vec![value("$.query_ms")]));
    // A real change beside the noise is still named, alone.
    let both = Comparison::Mismatch(vec![value("$.query_ms"), value("$.rows[0][1]")]);
    assert_eq!(noise.classify("/shop.json", both), Classified::Mismatch(vec![value("$.rows[0][1]")]));
}

#[test]
fn a_noisy_value_does_not_hide_the_field_disappearing() {
    let noise = NoiseFilter::new(10);
    noise.learn("/a", &Comparison::Mismatch(vec![value("$.ts")]));
    let removed = Comparison::Mismatch(vec![diff("$.ts", Some("1"), None)]);
    assert_eq!(noise.classify("/a", removed.clone()), Classified::Mismatch(vec![diff("$.ts", Some("1"), None)]));
    // Unless the primary itself sometimes leaves it out.
    noise.learn("/a", &Comparison::Mismatch(vec![diff("$.ts", None, Some("3"))]));
    assert_eq!(noise.classify("/a", removed), Classified::Noise(vec!["$.ts".into()]));
}

#[test]
fn new_patterns_are_sampled_first_then_left_to_the_share() {
    let noise = NoiseFilter::new(10);
    let asked: Vec<bool> = (0..5).map(|i| noise.wants_sample(&format!("/customers/{i}.json"))).collect();
    assert_eq!(asked, [true, true, true, false, false]);
    assert!(noise.wants_sample("/orders.json"));
    // Bounded: a flood of new patterns stops being sampled once the pattern table is full.
    let small = NoiseFilter::new(1);
    let fresh = (0..1000).filter(|i| small.wants_sample(&format!("/p{}x/{i}", "q".repeat(i % 7)))).count();
    assert_eq!(fresh, 7 * WARM_UP_SAMPLES as usize);
    let distinct = (0..1000).filter(|i| small.wants_sample(&format!("/only-{}", "z".repeat(*i)))).count();
    assert_eq!(distinct, 256 - 7);
}

fn html(body: String) -> Captured {
    resp(200, &[("content-type", "text/html; charset=utf-8")], body)
}

/// A Datasette-like page: a table of `rows`, a version footer and the time the queries took.
fn page(rows: usize, version: &str, ms: &str) -> Captured {
    let rows: String = (0..rows).map(|i| format!("<tr><td class=\"col-id\">{i}</td><td>Customer {i}</td></tr>\n")).collect();
    html(format!(
        "<html><body><table>\n{rows}</table>\n<footer>Powered by <a title=\"Datasette {version}\">Datasette</a>\n&middot; Queries took {ms}ms\n</footer></body></html>\n"
    ))
}

#[test]
fn text_noise_learned_on_one_page_carries_to_others_and_hides_no_real_change() {
    let noise = NoiseFilter::new(10);
    for (n, path) in [(3, "/shop/orders"), (40, "/shop/customers"), (1, "/shop/customers/7")] {
        noise.learn(path, &compare(&page(n, "v0.65.5", "1.2"), &page(n, "v0.65.5", "13.07"), &opts()));
    }
    // Another page, of another length: its timing is noise.
    let same = compare(&page(250, "v0.65.5", "2.5"), &page(250, "v0.65.5", "0.3"), &opts());
    assert_eq!(noise.classify("/other/table", same), Classified::Noise(vec!["body:text[middot; Queries took {}]".into()]));
    // A new release: the version is named, the timing beside it is not.
    let release = compare(&page(250, "v0.64.8", "2.5"), &page(250, "v0.65.5", "0.3"), &opts());
    match noise.classify("/other/table", release) {
        Classified::Mismatch(d) => {
            assert_eq!(d, vec![diff("body:text[a title=\"Datasette {}\">Datasette</a>]", Some("v0.64.8"), Some("v0.65.5"))])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_answered_body_is_the_bytes_sent_decoded_and_cut() {
    let sent = r#"{"z":1,  "a":"é"}"#;
    let plain = json(sent);
    assert_eq!(plain.answered_body(1000), AnsweredBody { text: sent.into(), bytes: sent.len(), cut: false });
    let zipped = resp(200, &[("content-encoding", "gzip")], gzip(sent.as_bytes()));
    assert_eq!(zipped.answered_body(1000).text, sent);
    // Cut inside `é` (2 bytes): the cut steps back to a character boundary.
    let cut = plain.answered_body(sent.len() - 3);
    assert_eq!((cut.text.as_str(), cut.cut), (r#"{"z":1,  "a":""#, true));
    let binary = resp(200, &[], vec![0xff, 0x00, b'a']);
    assert_eq!(binary.answered_body(10).text, "\u{fffd}\u{0}a");
}
