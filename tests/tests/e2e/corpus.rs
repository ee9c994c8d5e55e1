//! The configuration corpus (`tests/corpus/`): real-world-shaped Istio and Gateway API
//! set-ups, each folder with an `expect*.json` saying what the gateway must do with its files.
//! Every upstream named there is a recording test upstream answering with its own name;
//! `{{port:NAME}}` in the YAML becomes its port. Requests go through a real gateway.
//!
//! An expectation: `upstreams`, optional `settings` (process settings overrides), then either
//! `reject` (the error must contain it; `reject_mentions` too) or `requests`, each with `path`,
//! optional `host`, `method`, `headers`, and what must happen: `upstream` (its body comes back;
//! `upstream_path`, `upstream_header` say what it received; `mirror` names the upstream that gets
//! the copy), or `status` (with `location`, `body`). `scoped_out` and `warnings` lines must
//! appear in the load report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e_tests::gateway::TestGateway;
use e2e_tests::upstream::{Behaviour, Upstream};
use serde_json::Value;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

struct Case {
    folder: PathBuf,
    expect_file: PathBuf,
    expect: Value,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut folders: Vec<PathBuf> =
        std::fs::read_dir(corpus()).expect("corpus").map(|e| e.expect("entry").path()).filter(|p| p.is_dir()).collect();
    folders.sort();
    for folder in folders {
        let mut expects: Vec<PathBuf> = std::fs::read_dir(&folder)
            .expect("case")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("expect") && n.to_string_lossy().ends_with(".json")))
            .collect();
        expects.sort();
        for expect_file in expects {
            let expect = serde_json::from_str(&std::fs::read_to_string(&expect_file).expect("read")).expect("expect json");
            cases.push(Case { folder: folder.clone(), expect_file, expect });
        }
    }
    cases
}

fn yaml_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .expect("case")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn corpus_routes_as_istio_and_the_gateway_api_say() {
    let cases = cases();
    assert!(cases.len() >= 8, "{} corpus cases", cases.len());
    let (mut accepted, mut rejected, mut files_seen) = (0, Vec::new(), 0);
    for case in &cases {
        let name =
            format!("{}/{}", case.folder.file_name().unwrap().to_string_lossy(), case.expect_file.file_name().unwrap().to_string_lossy());
        let mut upstreams = BTreeMap::new();
        for u in str_list(&case.expect["upstreams"]) {
            upstreams.insert(u.clone(), Upstream::start(Behaviour::ok(&u)).await);
        }
        let mut texts = Vec::new();
        for path in yaml_files(&case.folder) {
            let mut text = std::fs::read_to_string(&path).expect("yaml");
            for (u, up) in &upstreams {
                text = text.replace(&format!("{{{{port:{u}}}}}"), &up.addr.port().to_string());
            }
            assert!(!text.contains("{{port:"), "{name}: {} names an upstream the expectation does not list", path.display());
            texts.push((path.file_name().unwrap().to_string_lossy().into_owned(), text));
        }
        files_seen += texts.len();
        let settings: Vec<(&'static str, String)> = case.expect["settings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|kv| {
                        let key: &'static str = Box::leak(kv[0].as_str().expect("key").to_string().into_boxed_str());
                        (key, kv[1].as_str().expect("value").to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let builder = texts.iter().fold(TestGateway::builder(), |builder, (name, text)| builder.file(name, text));
        let started = settings.iter().fold(builder, |builder, (key, value)| builder.setting(key, value.clone())).try_start().await;
        if let Some(reason) = case.expect["reject"].as_str() {
            // Refused whole, or (issue 22) the object at fault rejected on its own, the gateway
            // serving the rest: its status says why.
            let err = match started {
                Ok(gateway) => {
                    let rejected: Vec<String> = gateway.objects().await.iter().filter_map(|o| o.rejection()).collect();
                    gateway.stop().await;
                    assert!(!rejected.is_empty(), "{name}: expected an object to be rejected ({reason})");
                    rejected.join("; ")
                }
                Err(e) => e,
            };
            assert!(err.contains(reason), "{name}: rejected for another reason: {err}");
            if let Some(m) = case.expect["reject_mentions"].as_str() {
                assert!(err.contains(m), "{name}: the error does not mention {m:?}: {err}");
            }
            rejected.push(format!("{name}: {err}"));
            continue;
        }
        let gateway = started.unwrap_or_else(|e| panic!("{name}: {e}"));
        accepted += 1;
        let loaded = gateway_config::load_files_with(&gateway.files, &scope(&settings)).expect("loads as the gateway did");
        for line in str_list(&case.expect["scoped_out"]) {
            assert!(
                loaded.files.iter().flat_map(|f| &f.scoped_out).any(|s| s.starts_with(&line)),
                "{name}: not scoped out: {line}\n{:#?}",
                loaded.files
            );
        }
        for line in str_list(&case.expect["warnings"]) {
            assert!(loaded.warnings.iter().any(|w| w.to_string().contains(&line)), "{name}: no warning {line}: {:?}", loaded.warnings);
        }
        for (i, r) in case.expect["requests"].as_array().cloned().unwrap_or_default().iter().enumerate() {
            check_request(&name, i, r, &gateway, &upstreams).await;
        }
        gateway.stop().await;
    }
    println!("corpus: {} cases over {files_seen} files: {accepted} accepted, {} rejected", cases.len(), rejected.len());
    for r in &rejected {
        println!("  rejected: {r}");
    }
}

fn scope(settings: &[(&'static str, String)]) -> gateway_config::LoadOptions {
    let mut options = gateway_config::LoadOptions::default();
    for (k, v) in settings {
        if *k == "scope.mesh" {
            options.mesh = v == "true";
        }
        if *k == "scope.gateways" {
            options.gateways = v.split(',').map(str::to_string).collect();
        }
    }
    options
}

async fn check_request(name: &str, i: usize, r: &Value, gateway: &TestGateway, upstreams: &BTreeMap<String, Upstream>) {
    let path = r["path"].as_str().expect("path");
    let what = format!("{name}: request {i} ({path})");
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let method = reqwest::Method::from_bytes(r["method"].as_str().unwrap_or("GET").as_bytes()).expect("method");
    let mut request = client.request(method, gateway.url(path));
    if let Some(host) = r["host"].as_str() {
        request = request.header("host", host);
    }
    for (k, v) in r["headers"].as_object().cloned().unwrap_or_default() {
        request = request.header(k, v.as_str().unwrap_or(""));
    }
    let before: BTreeMap<&String, usize> = upstreams.iter().map(|(n, u)| (n, u.requests().len())).collect();
    let response = request.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = response.status().as_u16();
    let location = response.headers().get("location").map(|l| l.to_str().unwrap_or("").to_string());
    let body = response.text().await.unwrap_or_default();
    if let Some(u) = r["upstream"].as_str() {
        assert_eq!((status, body.as_str()), (200, u), "{what}: expected upstream {u}");
        let got = upstreams[u].requests();
        let primary = got
            .iter()
            .skip(before[&u.to_string()])
            .find(|q| !q.headers.contains_key("x-shadow"))
            .unwrap_or_else(|| panic!("{what}: {u} recorded nothing"));
        if let Some(p) = r["upstream_path"].as_str() {
            assert_eq!(primary.uri, p, "{what}: path at the upstream");
        }
        if let Some(h) = r["upstream_header"].as_array() {
            let (k, v) = (h[0].as_str().unwrap(), h[1].as_str().unwrap());
            assert_eq!(primary.headers.get(k).and_then(|v| v.to_str().ok()), Some(v), "{what}: header {k} at the upstream");
        }
    }
    if let Some(s) = r["status"].as_u64() {
        assert_eq!(u64::from(status), s, "{what}: status (body {body:?})");
    }
    if let Some(l) = r["location"].as_str() {
        assert_eq!(location.as_deref(), Some(l), "{what}: location");
    }
    if let Some(b) = r["body"].as_str() {
        assert_eq!(body, b, "{what}: body");
    }
    if let Some(m) = r["mirror"].as_str() {
        let shadow = &upstreams[m];
        let from = before[&m.to_string()];
        e2e_tests::eventually(&format!("{what}: a copy at {m}"), Duration::from_secs(5), || async {
            shadow.requests().iter().skip(from).any(|q| q.headers.contains_key("x-shadow"))
        })
        .await;
    }
}

/// Istio's usual order: the VirtualService is applied before v2 is deployed. The subset without
/// endpoints loads (with a warning) and answers 503 `no healthy upstream`; once the endpoints are
/// there, a reload brings it to life and v1 kept serving throughout.
#[tokio::test(flavor = "multi_thread")]
async fn a_subset_deployed_after_its_route_answers_503_until_a_reload_brings_it() {
    let v1 = Upstream::start(Behaviour::ok("v1")).await;
    let v2 = Upstream::start(Behaviour::ok("v2")).await;
    let routing = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n  - match: [{uri: {prefix: /v2}}]\n    route: [{destination: {host: web, subset: v2}}]\n  - route: [{destination: {host: web, subset: v1}}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web}\nspec: {host: web, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}\n";
    let entry = |with_v2: bool| {
        let mut e = format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  resolution: STATIC\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{version: v1}}}}\n",
            v1.addr.port()
        );
        if with_v2 {
            e.push_str(&format!("  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{version: v2}}}}\n", v2.addr.port()));
        }
        e
    };
    let gateway = TestGateway::builder().file("routing.yaml", routing).file("workloads.yaml", &entry(false)).start().await;
    let client = e2e_tests::client();
    let get = |path: &'static str| {
        let client = client.clone();
        let url = gateway.url(path);
        async move {
            let r = client.get(url).send().await.expect("answer");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    assert_eq!(get("/v2/x").await, (503, "{\"error\":\"no healthy upstream\"}".to_string()));
    assert_eq!(get("/x").await, (200, "v1".to_string()));
    std::fs::write(&gateway.files[1], entry(true)).expect("write");
    gateway.reloader.reload().expect("the reload with v2's endpoint is accepted");
    assert_eq!(get("/v2/x").await, (200, "v2".to_string()));
    assert_eq!(get("/x").await, (200, "v1".to_string()));
    gateway.stop().await;
}
