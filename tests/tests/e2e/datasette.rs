//! A real application nobody here wrote, from PyPI: Datasette, a JSON API and HTML pages over a
//! SQLite database, which reports how long its queries took in every answer (`query_ms` in JSON,
//! "Queries took 3.2ms" in the HTML footer). Two instances over the same database, read-only, as
//! primary and shadow behind a mirror that compares with the default settings, must reach PASS
//! and never FAIL on the way; a shadow whose data really changed, or another real release of
//! Datasette, must FAIL, named by the fields that changed and never by a timing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
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
        Self::start_from(database, None).await
    }

    /// Datasette from `site` (a `pip install --target` directory) instead of the installed one.
    async fn start_from(database: &Path, site: Option<&Path>) -> Self {
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("local address")
        };
        let child = Command::new("python3")
            .args(["-m", "datasette", "serve", "--immutable"])
            .arg(database)
            .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
            .env("PYTHONPATH", site.map(Path::as_os_str).unwrap_or_default())
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start datasette");
        let running = Self { addr, child };
        eventually("datasette answers", Duration::from_secs(60), || async move {
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

/// The older Datasette release (`.ci/requirements-datasette-older.txt`), installed with its own
/// dependencies into a directory of its own, once per machine (two releases of one package cannot
/// share an environment). `None`, with a notice, when it cannot be installed outside CI.
fn older_datasette() -> Option<PathBuf> {
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/requirements-datasette-older.txt");
    let pinned = std::fs::read_to_string(&requirements).expect("the older release is pinned");
    let pin = pinned.lines().find(|l| !l.trim().is_empty() && !l.starts_with('#')).expect("a pinned line").trim().to_owned();
    let site = std::env::temp_dir().join("gateway-test-peers").join(pin.replace("==", "-"));
    let done = site.join(".installed");
    if done.exists() {
        return Some(site);
    }
    let installed = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
        .arg(&site)
        .arg("-r")
        .arg(&requirements)
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        assert!(std::env::var_os("CI").is_none(), "{pin} could not be installed into {}", site.display());
        eprintln!("notice: skipped, {pin} could not be installed (pip install --target {} -r {})", site.display(), requirements.display());
        return None;
    }
    std::fs::write(&done, "").expect("mark the install done");
    Some(site)
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

/// One read of the verdict: its state, and the state of its answers criterion (`pending`
/// before `min_compared`).
#[derive(Debug, Clone)]
struct State {
    verdict: String,
    answers: String,
}

impl State {
    fn of(verdict: &Value) -> Self {
        let text = |v: &Value| v.as_str().unwrap_or("pending").to_owned();
        State { verdict: text(&verdict["state"]), answers: text(&verdict["mismatch"]["state"]) }
    }
}

/// What a run saw: the last report, every verdict state read on the way, the mirror's noise.
struct Run {
    report: Value,
    states: Vec<State>,
    noise: Value,
    mismatches: Vec<Value>,
}

/// Clients sending at once: comparisons queue (within the comparator's byte budget) instead of
/// being skipped, so the gateway is driven as a small real load would drive it.
const CLIENTS: usize = 2;

/// Sends `paths` through the gateway from [`CLIENTS`] clients at once while another task reads
/// the verdict every 100 ms, as `gateway verdict --wait` would; then waits for every comparison.
async fn run(gateway: &TestGateway, paths: &[String]) -> Run {
    run_more(gateway, paths, 0).await
}

/// [`run`], after `before` requests already compared.
async fn run_more(gateway: &TestGateway, paths: &[String], before: u64) -> Run {
    let states = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (states, done, url) = (states.clone(), done.clone(), gateway.admin_url("/mirrors"));
        tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let verdict = e2e_tests::get_json(&url).await.1["mirrors"][0]["verdict"].clone();
                states.lock().unwrap().push(State::of(&verdict));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut senders = Vec::new();
    for client_paths in (0..CLIENTS).map(|c| paths.iter().skip(c).step_by(CLIENTS).cloned().collect::<Vec<_>>()) {
        let url = gateway.url("");
        senders.push(tokio::spawn(async move {
            let client = client();
            for path in client_paths {
                let response = client.get(format!("{}{}", url.trim_end_matches('/'), path)).send().await.unwrap();
                let status = response.status().as_u16();
                assert!(status == 200 || status == 404 || status == 400 || status == 302, "{path}: {status}");
                response.bytes().await.unwrap();
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let n = before + paths.len() as u64;
    eventually(&format!("all {n} requests compared"), Duration::from_secs(120), || async { results(&report(gateway).await) >= n }).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.await.unwrap();
    let mirrors = mirrors(gateway).await;
    let report = mirrors["mirrors"][0].clone();
    let mut states = std::mem::take(&mut *states.lock().unwrap());
    states.push(State::of(&report["verdict"]));
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

/// The same database file, built once for each side in a directory of its own (Datasette names
/// a database, and its URLs, after the file).
fn databases(tag: &str, changed: bool) -> (PathBuf, PathBuf) {
    let dir = scratch_dir(tag);
    let (a, b) = (dir.join("primary").join("shop.db"), dir.join("shadow").join("shop.db"));
    std::fs::create_dir_all(dir.join("primary")).unwrap();
    std::fs::create_dir_all(dir.join("shadow")).unwrap();
    shop(&a, false);
    shop(&b, changed);
    (a, b)
}

fn reasons(verdict: &Value) -> Vec<String> {
    verdict["reasons"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
}

fn changed_fields(verdict: &Value) -> Vec<String> {
    verdict["changed"].as_array().into_iter().flatten().filter_map(|f| f["field"].as_str().map(str::to_owned)).collect()
}

/// Long (900 requests, one to three minutes on a busy machine): run by `.ci/run`'s long step
/// (`cargo nextest run --profile long --run-ignored only`), not by the default run.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: run with --profile long --run-ignored only"]
async fn two_identical_datasette_instances_pass_on_their_answers_with_the_defaults_and_never_fail_on_the_way() {
    if !e2e_tests::python_peer("datasette") {
        return;
    }
    let (a, b) = databases("datasette-same", false);
    let (primary, shadow) = (Datasette::start(&a).await, Datasette::start(&b).await);
    let gateway = TestGateway::builder().file("g.yaml", &config(&primary, &shadow, "compare: true")).start().await;

    // The default verdict needs about 500 comparisons for the answers (the confidence sequence)
    // and 765 for the 5xx rates (Newcombe's interval under +0.5 points): 900 requests.
    let mut paths = requests(900, 0x5eed);
    let started = std::time::Instant::now();
    let mut run = run(&gateway, &paths).await;
    // On a loaded machine more comparisons are skipped (the byte budget full of copies still in
    // flight): send more, up to twice, until the evidence is there.
    for more in 1..=2 {
        if run.report["verdict"]["mismatch"]["state"] == "pass" {
            break;
        }
        let next = requests(600, 0x5eed + more);
        let states = std::mem::take(&mut run.states);
        run = run_more(&gateway, &next, paths.len() as u64).await;
        run.states.splice(0..0, states);
        paths.extend(next);
    }
    let c = &run.report["comparison"];
    // Every answer of Datasette carries a timing that differs between any two answers: without
    // noise learning each would be a mismatch. It did happen, and was learned, as noise ...
    assert!(c["noise"].as_u64().unwrap() > 400, "{}", run.report);
    let fields = noisy_fields(&run.noise);
    assert!(fields.iter().any(|f| f == "$.query_ms"), "{fields:?}");
    assert!(fields.iter().any(|f| f.starts_with("body:text[") && f.contains("Queries took {}")), "{fields:?}");
    // ... and across patterns: `$.query_ms` is noise everywhere, learned on a few.
    let everywhere = run.noise["fields"].as_array().unwrap().iter().any(|f| f["field"] == "$.query_ms" && f["everywhere"] == true);
    assert!(everywhere, "{}", run.noise);
    // Comparisons queue within the byte budget; what is still skipped are copies that found it
    // full while the shadow, queued behind the primary on this busy machine, held them in
    // flight (each reserves 3 x compare.max_body until its answers are in): from none on a
    // quiet machine to 40% under a load of 20 on two cores. Enough are compared to decide.
    let compared = ["matched", "mismatched", "noise"].iter().map(|k| c[k].as_u64().unwrap()).sum::<u64>();
    assert!(compared >= 500, "{}", run.report);
    // Datasette's facet suggestions have a time limit (50 ms), so under load even the primary
    // suggests different facets now and then: a rare difference beyond the noise learned so far,
    // which the verdict must bear.
    assert!(c["mismatched"].as_u64().unwrap() * 100 <= paths.len() as u64, "{:#}", Value::Array(run.mismatches.clone()));
    // The answers criterion passes with the defaults, and never failed on the way (read every
    // 100 ms while it ran); no field is named as changed. (The verdict as a whole also judges
    // latency and 5xx rates: on a shared two-core machine the shadow, which gets each copy while
    // the client already sends its next request, is queued behind the primary, and a few copies
    // fail on connections the shadow closed; those criteria are printed, not asserted, here.)
    let verdict = &run.report["verdict"];
    assert_eq!(verdict["mismatch"]["state"], "pass", "{verdict:#}");
    assert!(changed_fields(verdict).is_empty(), "{verdict:#}");
    assert!(!run.states.iter().any(|s| s.answers == "fail"), "{:?}", run.states);
    assert!(run.states.iter().any(|s| s.answers == "pending"), "it was pending before it passed: {:?}", run.states);
    let answers_passed_at = run.states.iter().position(|s| s.answers == "pass");
    // The second requests it cost the primary: the warm-up of each pattern and about 2%.
    let sent = run.noise["sent"].as_u64().unwrap();
    assert!(sent < 150, "{sent} second requests for {} requests", paths.len());
    eprintln!(
        "identical: {} requests in {:.1} s, {c}, second requests to the primary {sent}, answers passed at read {answers_passed_at:?} of {}, verdict {} ever failed {}: {:?}",
        paths.len(),
        started.elapsed().as_secs_f64(),
        run.states.len(),
        verdict["state"],
        run.states.iter().any(|s| s.verdict == "fail"),
        reasons(verdict)
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_datasette_whose_data_changed_fails_naming_the_changed_fields_and_no_timing() {
    if !e2e_tests::python_peer("datasette") {
        return;
    }
    let (a, b) = databases("datasette-changed", true);
    let (primary, shadow) = (Datasette::start(&a).await, Datasette::start(&b).await);
    let gateway = TestGateway::builder().file("g.yaml", &config(&primary, &shadow, "compare: true")).start().await;

    let paths = requests(400, 0xc0ffee);
    let run = run(&gateway, &paths).await;
    let verdict = &run.report["verdict"];
    assert_eq!(verdict["state"], "fail", "{verdict:#}");
    let reasons = reasons(verdict);
    assert!(reasons.iter().all(|r| !is_timing(r)), "{reasons:?}");
    let changed = changed_fields(verdict);
    assert!(!changed.is_empty() && changed.iter().all(|f| !is_timing(f)), "{changed:?}");
    // Only the customers' cities changed: every mismatch is a request that shows customers, or
    // the index page, whose colour for a database is a hash of its contents; none names a
    // timing; the change itself is shown, Oslo against Bergen, and the bodies as sent.
    assert!(!run.mismatches.is_empty(), "{}", run.report);
    let mut shown = String::new();
    for record in &run.mismatches {
        let path = record["path"].as_str().unwrap();
        assert!(path.contains("customers") || path == "/", "{record:#}");
        assert!(record["primary_body"]["text"].as_str().is_some_and(|t| !t.is_empty()), "{record:#}");
        for difference in record["differences"].as_array().unwrap() {
            assert!(!is_timing(difference["field"].as_str().unwrap()), "{record:#}");
            shown.push_str(&format!("{} -> {}\n", difference["primary"], difference["shadow"]));
        }
    }
    assert!(shown.lines().any(|l| l.contains("Oslo") && l.contains("Bergen")), "{shown}");
    eprintln!(
        "changed: {} requests, {}, verdict {}, changed {changed:?}, reasons {reasons:?}",
        paths.len(),
        run.report["comparison"],
        verdict["state"]
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn another_datasette_release_fails_naming_its_real_changes_first_and_no_timing() {
    if !e2e_tests::python_peer("datasette") {
        return;
    }
    let Some(older) = older_datasette() else {
        return;
    };
    let (a, b) = databases("datasette-release", false);
    // The running release (0.65.5) is the primary, the older one the candidate.
    let (primary, shadow) = (Datasette::start(&a).await, Datasette::start_from(&b, Some(&older)).await);
    let gateway = TestGateway::builder().file("g.yaml", &config(&primary, &shadow, "compare: true")).start().await;

    let paths = requests(400, 0xbee5);
    let run = run(&gateway, &paths).await;
    let verdict = &run.report["verdict"];
    assert_eq!(verdict["state"], "fail", "{verdict:#}");
    let reasons = reasons(verdict);
    assert!(reasons[0].starts_with("fail: "), "{reasons:?}");
    assert!(reasons.iter().all(|r| !is_timing(r)), "{reasons:?}");
    let changed = changed_fields(verdict);
    assert!(!changed.is_empty() && changed.iter().all(|f| !is_timing(f)), "{changed:?}");
    // What changed between the releases is named: the version each footer shows, at least.
    let examples: Vec<String> = verdict["changed"].as_array().unwrap().iter().map(|f| f["example"].to_string()).collect();
    assert!(examples.iter().any(|e| e.contains("0.64.8") || e.contains("0.65.5")), "{examples:#?}");
    eprintln!(
        "release: {} requests, {}, verdict {}, changed {changed:?}, reasons {reasons:?}",
        paths.len(),
        run.report["comparison"],
        verdict["state"]
    );
    gateway.stop().await;
}
