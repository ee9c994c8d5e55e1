//! A real application nobody here wrote, from PyPI: Datasette, a JSON API and HTML pages over a
//! SQLite database, which reports how long its queries took in every answer (`query_ms` in JSON,
//! "Queries took 3.2ms" in the HTML footer). Two instances over the same database, read-only, as
//! primary and shadow behind a mirror that compares with the default settings, must never be
//! judged different; a shadow whose data really changed must be, by the field that changed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e_tests::gateway::{TestGateway, scratch_dir};
use e2e_tests::{client, eventually};
use serde_json::Value;

/// A running `datasette serve --immutable`; stopped when dropped.
struct Datasette {
    addr: SocketAddr,
    child: Child,
}

impl Datasette {
    async fn start(database: &Path) -> Self {
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("local address")
        };
        let child = Command::new("python3")
            .args(["-m", "datasette", "serve", "--immutable"])
            .arg(database)
            .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start datasette");
        let running = Self { addr, child };
        eventually("datasette answers", Duration::from_secs(30), || async move {
            client().get(format!("http://{addr}/-/versions.json")).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        running
    }
}

impl Drop for Datasette {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small shop: 200 customers in four cities, 1,000 orders; the same rows every time.
/// `changed`: the shadow's copy, where the customers of Oslo moved to Bergen.
fn shop(path: &Path, changed: bool) {
    let script = r#"
import random, sqlite3, sys
rnd = random.Random(1)
db = sqlite3.connect(sys.argv[1])
db.execute("create table customers (id integer primary key, name text, city text)")
db.execute("create table orders (id integer primary key, customer_id integer references customers(id), total real, status text, placed text)")
for i in range(1, 201):
    db.execute("insert into customers values (?, ?, ?)", (i, f"Customer {i}", rnd.choice(["Oslo", "Lima", "Pune", "Kobe"])))
for i in range(1, 1001):
    db.execute("insert into orders values (?, ?, ?, ?, ?)", (i, rnd.randint(1, 200), round(rnd.random() * 100, 2), rnd.choice(["new", "paid", "shipped"]), f"2026-{rnd.randint(1, 12):02}-{rnd.randint(1, 28):02}"))
if sys.argv[2] == "changed":
    db.execute("update customers set city = 'Bergen' where city = 'Oslo'")
db.commit()
"#;
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .arg(if changed { "changed" } else { "same" })
        .status()
        .expect("python3 runs");
    assert!(status.success(), "the database is built");
}

/// Requests a person or a client of the API would send: tables as JSON with filters, sorting,
/// facets and pagination, row pages as JSON and HTML, table and database pages, CSV, SQL, and
/// pages that do not exist; the same list for the same seed.
fn requests(n: usize, mut seed: u64) -> Vec<String> {
    let mut next = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let pick = |options: &[&str], r: u64| options[r as usize % options.len()].to_owned();
    (0..n)
        .map(|_| {
            let (customer, order, r) = (next(200) + 1, next(1000) + 1, next(1000));
            let status = pick(&["new", "paid", "shipped"], r);
            let city = pick(&["Oslo", "Lima", "Pune", "Kobe"], r);
            match next(22) {
                0 => format!("/shop/orders.json?_size={}", [5, 10, 20, 50][r as usize % 4]),
                1 => format!("/shop/orders.json?status={status}&_size=10"),
                2 => "/shop/orders.json?_sort=total&_size=10".to_owned(),
                3 => format!("/shop/orders.json?_sort_desc=placed&_size=5&customer_id={customer}"),
                4 => format!("/shop/orders.json?total__gt={}&_size=10", r % 80 + 10),
                5 => "/shop/orders.json?_facet=status&_size=0".to_owned(),
                6 => format!("/shop/orders.json?_size=10&_next={}", r % 900 + 1),
                7 => format!("/shop/customers.json?city={city}"),
                8 | 9 => format!("/shop/customers/{customer}.json"),
                10 => format!("/shop/orders/{order}.json"),
                11 => format!("/shop/customers/{customer}"),
                12 => format!("/shop/orders/{order}"),
                13 => format!("/shop/orders?status={status}"),
                14 => "/shop/customers?_sort=name".to_owned(),
                15 => pick(&["/shop", "/", "/shop.json"], r),
                16 => "/shop/orders.csv?_size=20&status=paid".to_owned(),
                17 => format!("/shop/customers.csv?_size={}", [10, 50][r as usize % 2]),
                18 => "/shop.json?sql=select+status,count(*)+from+orders+group+by+status".to_owned(),
                19 => format!("/shop?sql=select+*+from+customers+where+id+%3C+{customer}+limit+5"),
                20 => "/shop/nope.json".to_owned(),
                _ => format!("/shop/customers/9{customer}99.json"),
            }
        })
        .collect()
}

fn results(report: &Value) -> u64 {
    ["matched", "mismatched", "noise", "skipped"].iter().map(|k| report["comparison"][k].as_u64().unwrap_or(0)).sum()
}

/// `/mirrors` as untyped JSON: this test reads the noise store's per-field evidence too.
async fn mirrors(gateway: &TestGateway) -> Value {
    e2e_tests::get_json(&gateway.admin_url("/mirrors")).await.1
}

async fn report(gateway: &TestGateway) -> Value {
    mirrors(gateway).await["mirrors"][0].clone()
}

/// What a run saw: the last report, every verdict state on the way, the mirror's noise.
struct Run {
    report: Value,
    states: Vec<String>,
    noise: Value,
    mismatches: Vec<Value>,
}

/// Sends `paths` through the gateway one after the other, each once the previous one was
/// compared (so none is skipped for want of a comparator slot), reading the verdict after each.
async fn run(gateway: &TestGateway, paths: &[String]) -> Run {
    let mut states = Vec::new();
    for (n, path) in (1..).zip(paths) {
        let response = client().get(gateway.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        assert!(status == 200 || status == 404 || status == 400, "{path}: {status}");
        assert!(status == 200 || path.contains("nope") || path.contains("/9"), "{path}: {status}");
        response.bytes().await.unwrap();
        eventually(&format!("request {n} ({path}) compared"), Duration::from_secs(20), || async { results(&report(gateway).await) >= n })
            .await;
        states.push(report(gateway).await["verdict"]["state"].as_str().unwrap_or("none").to_owned());
    }
    let mirrors = mirrors(gateway).await;
    let report = mirrors["mirrors"][0].clone();
    let mismatches = report["recent_mismatches"].as_array().cloned().unwrap_or_default();
    Run { report, states, noise: mirrors["noise"]["shop/v2"].clone(), mismatches }
}

fn config(primary: &Datasette, shadow: &Datasette, mirror: &str) -> String {
    format!(
        "services: {{ app: {{ v1: [{}], v2: [{}] }} }}\nroutes:\n  - name: shop\n    to: app/v1\n    mirrors:\n      - {{ to: app/v2, name: v2, {mirror} }}\n",
        primary.addr, shadow.addr
    )
}

/// The names the noise store gave the fields it learned.
fn noisy_fields(noise: &Value) -> Vec<String> {
    noise["fields"].as_array().into_iter().flatten().filter_map(|f| f["field"].as_str().map(str::to_owned)).collect()
}

fn is_timing(field: &str) -> bool {
    field.contains("query_ms") || field.contains("took")
}

#[tokio::test(flavor = "multi_thread")]
async fn two_identical_datasette_instances_never_fail_with_the_defaults() {
    if !e2e_tests::python_peer("datasette") {
        return;
    }
    let dir = scratch_dir("datasette-same");
    // The same file name on both sides: Datasette names a database (and its URLs) after it.
    let (a, b) = (dir.join("primary").join("shop.db"), dir.join("shadow").join("shop.db"));
    std::fs::create_dir_all(dir.join("primary")).unwrap();
    std::fs::create_dir_all(dir.join("shadow")).unwrap();
    shop(&a, false);
    shop(&b, false);
    let (primary, shadow) = (Datasette::start(&a).await, Datasette::start(&b).await);
    let gateway = TestGateway::builder().file("g.yaml", &config(&primary, &shadow, "compare: true")).start().await;

    let paths = requests(300, 0x5eed);
    let run = run(&gateway, &paths).await;
    let c = &run.report["comparison"];
    // Every answer of Datasette carries a timing that differs between any two answers: without
    // noise learning each would be a mismatch. It did happen, and was learned, as noise ...
    assert!(c["noise"].as_u64().unwrap() > 150, "{}", run.report);
    let fields = noisy_fields(&run.noise);
    assert!(fields.iter().any(|f| f == "$.query_ms"), "{fields:?}");
    assert!(fields.iter().any(|f| f.starts_with("body:text[") && f.contains("Queries took {}")), "{fields:?}");
    // ... and across patterns: `$.query_ms` is noise everywhere, learned on a few.
    let everywhere = run.noise["fields"].as_array().unwrap().iter().any(|f| f["field"] == "$.query_ms" && f["everywhere"] == true);
    assert!(everywhere, "{}", run.noise);
    // No false mismatch, and the verdict never failed on the way.
    assert_eq!(c["mismatched"], 0, "{:#}", Value::Array(run.mismatches.clone()));
    assert!(c["matched"].as_u64().unwrap() > 0, "{}", run.report);
    assert!(!run.states.iter().any(|s| s == "fail"), "{:?}", run.report["verdict"]);
    // The second requests it cost the primary: the warm-up of each pattern and about 2%.
    let sent = run.noise["sent"].as_u64().unwrap();
    assert!(sent < 120, "{sent} second requests for {} requests", paths.len());
    eprintln!("identical: {} requests, {c}, second requests {sent}, verdict {}", paths.len(), run.report["verdict"]["state"]);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_datasette_whose_data_changed_fails_naming_the_changed_fields_and_no_timing() {
    if !e2e_tests::python_peer("datasette") {
        return;
    }
    let dir = scratch_dir("datasette-changed");
    // The same file name on both sides: Datasette names a database (and its URLs) after it.
    let (a, b) = (dir.join("primary").join("shop.db"), dir.join("shadow").join("shop.db"));
    std::fs::create_dir_all(dir.join("primary")).unwrap();
    std::fs::create_dir_all(dir.join("shadow")).unwrap();
    shop(&a, false);
    shop(&b, true);
    let (primary, shadow) = (Datasette::start(&a).await, Datasette::start(&b).await);
    // Fewer comparisons before deciding than the default 100, so the test decides in 200
    // requests; the rest is the defaults.
    let mirror = "compare: true, verdict: { min_compared: 20 }";
    let gateway = TestGateway::builder().file("g.yaml", &config(&primary, &shadow, mirror)).start().await;

    let paths = requests(200, 0xc0ffee);
    let run = run(&gateway, &paths).await;
    let verdict = &run.report["verdict"];
    assert_eq!(verdict["state"], "fail", "{verdict}");
    let reasons: Vec<&str> = verdict["reasons"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(reasons.iter().all(|r| !is_timing(r)), "{reasons:?}");
    // Only the customers' cities changed: every mismatch is a request that shows customers, or
    // the index page, whose colour for a database is a hash of its contents; none names a
    // timing; the change itself is shown, Oslo against Bergen.
    assert!(!run.mismatches.is_empty(), "{}", run.report);
    let mut shown = String::new();
    for record in &run.mismatches {
        let path = record["path"].as_str().unwrap();
        assert!(path.contains("customers") || path == "/", "{record:#}");
        for difference in record["differences"].as_array().unwrap() {
            assert!(!is_timing(difference["field"].as_str().unwrap()), "{record:#}");
            shown.push_str(&format!("{} -> {}\n", difference["primary"], difference["shadow"]));
        }
    }
    assert!(shown.lines().any(|l| l.contains("Oslo") && l.contains("Bergen")), "{shown}");
    eprintln!("changed: {} requests, {}, verdict {}, reasons {reasons:?}", paths.len(), run.report["comparison"], verdict["state"]);
    gateway.stop().await;
}
