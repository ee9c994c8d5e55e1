//! Verdicts on live traffic through a running gateway: an identical shadow passes, a shadow that
//! differs on a share of requests fails naming the field, a mirror without traffic is pending; the
//! verdict as JSON, at `/verdict/<mirror>`, in Prometheus, and on the page read by Chromium.

use std::time::Duration;

use e2e_tests::gateway::TestGateway;
use e2e_tests::metrics::metric;
use e2e_tests::upstream::{Behaviour, Upstream};
use e2e_tests::{client, eventually};
use gateway::admin::api::{MirrorReport, PromotionState, State};

/// Small evidence needs, so a test decides after tens of requests rather than hundreds; the
/// latency allowance is wide because both upstreams answer in well under a millisecond here.
const VERDICT: &str = "{ min_compared: 30, max_mismatch_rate: 0.2, max_latency_increase: 300%, max_error_rate_increase: 0.2, window: 10m }";

fn by_path(price: &str) -> Behaviour {
    Behaviour::ByPath {
        bodies: vec![("/index", r#"{"page":"index"}"#.to_owned()), ("/price", format!(r#"{{"price":{price}}}"#))],
        default: "{}".into(),
        content_type: "application/json",
    }
}

/// One route named `route` with mirror `v2` that compares and is judged by `verdict`.
fn config(route: &str, primary: &Upstream, shadow: &Upstream, verdict: &str) -> String {
    format!(
        "services: {{ app: {{ v1: [{}], v2: [{}] }} }}\nroutes:\n  - name: {route}\n    to: app/v1\n    mirrors:\n      - {{ to: app/v2, name: v2, compare: true, verdict: {verdict} }}\n",
        primary.addr, shadow.addr
    )
}

/// The report of route `route`'s mirror `v2`.
async fn report_of(gateway: &TestGateway, route: &str) -> MirrorReport {
    gateway.mirror(&format!("{route}/v2")).await
}

/// Sends GETs of `paths` one after the other, each once the previous one is compared (so none is
/// skipped for want of a comparator slot on a busy machine).
async fn send_compared(gateway: &TestGateway, route: &str, paths: &[&str]) {
    let mirror = format!("{route}/v2");
    for path in paths {
        let status = gateway.send_compared(&mirror, || client().get(gateway.url(path)).send()).await;
        assert!(status.is_success(), "{path}: {status}");
    }
}

/// `gateway_mirror_verdict` of route `route`'s mirror `v2` in `state`, at `value` (1: the current state).
fn verdict_gauge(route: &str, state: &str, value: u32) -> e2e_tests::metrics::MetricMatch {
    metric("gateway_mirror_verdict").label("route", route).label("mirror", "v2").label("state", state).value(value)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identical_shadow_passes_in_json_at_the_endpoint_in_metrics_and_on_the_page() {
    let primary = Upstream::start(Behaviour::json(r#"{"user":{"name":"Ann","id":7}}"#)).await;
    let shadow = Upstream::start(Behaviour::json(r#"{"user":{"id":7,"name":"Ann"}}"#)).await;
    let gateway = TestGateway::builder().file("g.yaml", &config("same", &primary, &shadow, VERDICT)).start().await;
    send_compared(&gateway, "same", &["/users/7"; 29]).await;
    let report = report_of(&gateway, "same").await;
    assert_eq!(report.verdict.as_ref().map(|v| v.state), Some(State::Pending), "29 of 30 needed: {report:?}");
    assert_eq!(gateway.verdict("v2").await.0, 412);

    send_compared(&gateway, "same", &["/users/7"; 11]).await;
    let report = report_of(&gateway, "same").await;
    let verdict = report.verdict.as_ref().expect("a verdict");
    assert_eq!(verdict.state, State::Pass, "{verdict:?}");
    assert_eq!(verdict.compared, 40);
    assert_eq!(report.evidence.matched, 40);
    assert_eq!(report.evidence.primary_ms.len(), 40);
    let reasons = &verdict.reasons;
    assert!(reasons.iter().all(|r| r.starts_with("pass: ")) && reasons.len() == 3, "{reasons:?}");
    assert!(reasons[0].contains("0% of answers differ beyond noise (0 of 40;"), "{reasons:?}");

    let (status, answer) = gateway.verdict("v2").await;
    assert_eq!((status, answer.clone().map(|a| a.state)), (200, Ok(Some(State::Pass))), "{answer:?}");
    assert_eq!(gateway.verdict("same/v2").await.0, 200);

    let metrics = gateway.metrics().await;
    verdict_gauge("same", "pass", 1).assert_in(&metrics);
    verdict_gauge("same", "pending", 0).assert_in(&metrics);

    if let Some(chromium) = e2e_tests::browser::chromium() {
        let dom = chromium.dump_dom(&gateway.admin_url("/")).expect("chromium renders the page");
        let cell = e2e_tests::browser::cell_text(&dom, "data-mirror-verdict=\"same/v2\"").expect("a verdict cell for same/v2");
        assert!(cell.contains(">PASS<"), "{cell}");
        assert_eq!(e2e_tests::browser::cell_text(&dom, "data-mirror=\"same/v2\"").as_deref(), Some("100.0%"));
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shadow_that_differs_on_a_share_of_requests_fails_naming_the_field() {
    let primary = Upstream::start(by_path("10")).await;
    let shadow = Upstream::start(by_path("12")).await;
    // A 5% limit: 10 mismatches of 30 (96% confidence sequence 8%-68%) are clearly over it.
    let verdict = VERDICT.replace("max_mismatch_rate: 0.2", "max_mismatch_rate: 0.05");
    let gateway = TestGateway::builder().file("g.yaml", &config("differs", &primary, &shadow, &verdict)).start().await;
    let paths: Vec<&str> = ["/index", "/price", "/other"].into_iter().cycle().take(30).collect();
    send_compared(&gateway, "differs", &paths).await;

    let report = report_of(&gateway, "differs").await;
    assert_eq!((report.evidence.matched, report.evidence.mismatched), (20, 10), "{report:?}");
    let verdict = report.verdict.as_ref().expect("a verdict");
    assert_eq!(verdict.state, State::Fail, "{verdict:?}");
    let first = &verdict.reasons[0];
    assert!(
        first.starts_with("fail: 33.33% of answers differ beyond noise (10 of 30;") && first.contains("changed: $.price (10)"),
        "{first}"
    );

    let (status, answer) = gateway.verdict("differs/v2").await;
    assert_eq!((status, answer.clone().map(|a| a.state)), (412, Ok(Some(State::Fail))), "{answer:?}");
    let metrics = gateway.metrics().await;
    verdict_gauge("differs", "fail", 1).assert_in(&metrics);
    verdict_gauge("differs", "pass", 0).assert_in(&metrics);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_without_traffic_is_pending_and_names_are_resolved_or_refused() {
    let primary = Upstream::start(Behaviour::json("{}")).await;
    let shadow = Upstream::start(Behaviour::json("{}")).await;
    let text = format!(
        "services: {{ app: {{ v1: [{}], v2: [{}] }} }}\nroutes:\n  - name: idle\n    match: {{ prefix: /a }}\n    to: app/v1\n    mirrors: [{{ to: app/v2, name: v2, compare: true, verdict: {VERDICT} }}]\n  - name: idle2\n    to: app/v1\n    mirrors: [{{ to: app/v2, name: v2 }}]\n",
        primary.addr, shadow.addr
    );
    let gateway = TestGateway::builder().file("g.yaml", &text).start().await;
    let report = report_of(&gateway, "idle").await;
    let verdict = report.verdict.as_ref().expect("a verdict");
    assert_eq!(verdict.state, State::Pending, "{report:?}");
    assert_eq!(
        verdict.reasons[0],
        "0 of the 30 compared requests needed before deciding (0 with noise only count as matches; skipped 0 do not count)"
    );
    let (status, answer) = gateway.verdict("idle/v2").await;
    assert_eq!((status, answer.clone().map(|a| a.state)), (412, Ok(Some(State::Pending))), "{answer:?}");
    // Flagger POSTs its webhooks; Argo Rollouts reads the state from a 200.
    let response = client().post(gateway.admin_url("/verdict/idle/v2")).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 412);
    let (status, answer) = gateway.verdict("idle/v2?status=200").await;
    assert_eq!((status, answer.clone().map(|a| a.state)), (200, Ok(Some(State::Pending))), "{answer:?}");
    // A mirror that does not compare has no verdict.
    assert_eq!(report_of(&gateway, "idle2").await.verdict, None);
    let (status, answer) = gateway.verdict("idle2/v2").await;
    assert_eq!((status, answer.clone().map(|a| a.state)), (412, Ok(None)), "off: {answer:?}");
    // "v2" is a mirror on both routes: the route must be named.
    let (status, answer) = gateway.verdict("v2").await;
    assert_eq!(status, 409, "{answer:?}");
    assert_eq!(answer.err().map(|e| e.mirrors), Some(vec!["idle/v2".to_owned(), "idle2/v2".to_owned()]));
    assert_eq!(gateway.verdict("nope").await.0, 404);
    gateway.stop().await;
}

/// `gateway verdict ARGS...` run in-process: its exit status and the lines it printed.
async fn gateway_verdict(args: &[&str]) -> (u8, String) {
    #[derive(clap::Parser)]
    struct Command {
        #[command(flatten)]
        args: gateway::admin::cli::Args,
    }
    let parsed = <Command as clap::Parser>::try_parse_from(std::iter::once("gateway verdict").chain(args.iter().copied())).unwrap();
    let mut out = Vec::new();
    let code = gateway::admin::cli::check(&parsed.args, &mut out).await;
    (code, String::from_utf8(out).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_verdict_adds_up_replicas_and_exits_0_pass_1_fail_3_pending_2_unknown() {
    let primary = Upstream::start(Behaviour::json(r#"{"ok":true}"#)).await;
    let shadow = Upstream::start(Behaviour::json(r#"{"ok":true}"#)).await;
    // Two replicas of one gateway; each sees 20 of the 40 compared requests.
    let replicas = [
        TestGateway::builder().file("g.yaml", &config("cli", &primary, &shadow, VERDICT)).start().await,
        TestGateway::builder().file("g.yaml", &config("cli", &primary, &shadow, VERDICT)).start().await,
    ];
    for gateway in &replicas {
        send_compared(gateway, "cli", &["/"; 20]).await;
    }
    let admin = |g: &TestGateway| g.admin.to_string();
    let (one, two) = (admin(&replicas[0]), admin(&replicas[1]));

    let (code, out) = gateway_verdict(&["--admin", &one]).await;
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("PENDING cli → v2 (20 compared, 1 gateway): 20 of the 30 compared requests needed"), "{out}");
    let (code, out) = gateway_verdict(&["--admin", &one, "--admin", &format!("http://{two}/"), "--mirror", "v2"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("PASS cli → v2 (40 compared, 2 gateways): pass: 0% of answers differ beyond noise (0 of 40;"), "{out}");
    assert_eq!(out.lines().count(), 1);
    // --wait polls; a mirror still short of evidence when it is over stays pending.
    let (code, _) = gateway_verdict(&["--admin", &one, "--wait", "1s"]).await;
    assert_eq!(code, 3);

    let (code, out) = gateway_verdict(&["--admin", &one, "--mirror", "nope"]).await;
    assert_eq!((code, out.as_str()), (2, ""));

    // A third gateway whose shadow changes a field on every other request: a fail, exit 1.
    let changed = Upstream::start(Behaviour::ByPath {
        bodies: vec![("/a", r#"{"ok":true}"#.to_owned())],
        default: r#"{"ok":false}"#.into(),
        content_type: "application/json",
    })
    .await;
    let verdict = VERDICT.replace("max_mismatch_rate: 0.2", "max_mismatch_rate: 0.05");
    let failing = TestGateway::builder().file("g.yaml", &config("cli-fail", &primary, &changed, &verdict)).start().await;
    let paths: Vec<&str> = ["/a", "/b"].into_iter().cycle().take(30).collect();
    send_compared(&failing, "cli-fail", &paths).await;
    let (code, out) = gateway_verdict(&["--admin", &failing.admin.to_string(), "--wait", "10m"]).await;
    assert_eq!(code, 1, "a fail ends the wait at once: {out}");
    assert!(out.starts_with("FAIL cli-fail → v2 (30 compared, 1 gateway): fail: 50% of answers differ beyond noise (15 of 30;"), "{out}");
    assert!(out.contains("changed: $.ok (15)"), "{out}");

    failing.stop().await;
    for gateway in replicas {
        gateway.stop().await;
    }
}

/// Requests the upstream answered as the primary (copies carry `x-shadow`).
fn served_as_primary(upstream: &Upstream) -> usize {
    upstream.requests().iter().filter(|r| !r.headers.contains_key("x-shadow")).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn promotion_moves_live_traffic_in_steps_and_rolls_back_when_the_candidate_differs() {
    // The candidate answers like v1 on /a and differently on /b.
    let answers = |price: &str| Behaviour::ByPath {
        bodies: vec![("/a", r#"{"page":"a"}"#.to_owned()), ("/b", format!(r#"{{"price":{price}}}"#))],
        default: "{}".into(),
        content_type: "application/json",
    };
    let (v1, v2) = (Upstream::start(answers("10")).await, Upstream::start(answers("12")).await);
    // The last step is 50%, so comparisons go on (on the half still served by v1) whatever the
    // timing, and the rollback can be seen.
    let verdict = VERDICT.replace("min_compared: 30", "min_compared: 20");
    let text = format!(
        "services: {{ app: {{ v1: [{}], v2: [{}] }} }}\nroutes:\n  - name: promo\n    to: app/v1\n    mirrors: [{{ to: app/v2, name: v2, compare: true, verdict: {verdict} }}]\n    promote: {{ to: app/v2, steps: [20, 50], hold: 1s }}\n",
        v1.addr, v2.addr
    );
    let gateway = TestGateway::builder().file("g.yaml", &text).start().await;
    let promotion = || gateway.promotion("promo");
    assert_eq!(promotion().await.percent, 0);
    // 20 needed before deciding; 24 clean ones take the confidence sequence under the 20% limit.
    send_compared(&gateway, "promo", &["/a"; 24]).await;
    assert_eq!(report_of(&gateway, "promo").await.verdict.map(|v| v.state), Some(State::Pass));
    assert_eq!(served_as_primary(&v2), 0, "before the first step the candidate serves nothing");

    eventually("the first step (20%)", Duration::from_secs(10), || async { promotion().await.percent == 20 }).await;
    // An unchanged route keeps its step across a reload.
    gateway.reloader.reload().expect("the same files reload");
    let state = promotion().await;
    assert_eq!(state.percent, 20, "{state:?}");

    for _ in 0..40 {
        client().get(gateway.url("/a")).send().await.unwrap().text().await.unwrap();
    }
    let moved = served_as_primary(&v2);
    assert!(moved > 0 && moved < 40, "about 20% of 40 requests served by the candidate: {moved}");
    eventually("the second step (50%)", Duration::from_secs(10), || async { promotion().await.percent == 50 }).await;

    // The candidate starts to differ: the verdict fails and the traffic goes back at once.
    // One at a time, each copy compared before the next request (the comparator runs at idle
    // priority: on a busy machine a burst would mostly be skipped, not judged).
    for _ in 0..200 {
        client().get(gateway.url("/b")).send().await.unwrap().text().await.unwrap();
        eventually("every copy sent has its comparison", Duration::from_secs(10), || async {
            let report = report_of(&gateway, "promo").await;
            report.comparison.total() >= report.copies.sent
        })
        .await;
        if promotion().await.state == PromotionState::RolledBack {
            break;
        }
    }
    eventually("the rollback", Duration::from_secs(10), || async { promotion().await.state == PromotionState::RolledBack }).await;
    let state = promotion().await;
    assert_eq!(state.percent, 0, "{state:?}");
    let history: Vec<&str> = state.history.iter().map(|e| e.what.as_str()).collect();
    assert!(
        history[1].starts_with("advanced to 20% (step 1 of 2)") && history[2].starts_with("advanced to 50% (step 2 of 2)"),
        "{history:?}"
    );
    assert!(history[3].starts_with("rolled back from 50%: fail: ") && history[3].contains("$.price"), "{history:?}");
    assert_eq!(history.iter().filter(|h| h.starts_with("started")).count(), 1, "{history:?}");

    let before = served_as_primary(&v2);
    for _ in 0..20 {
        client().get(gateway.url("/a")).send().await.unwrap().text().await.unwrap();
    }
    assert_eq!(served_as_primary(&v2), before, "after the rollback the candidate serves nothing");
    gateway.reloader.reload().expect("the same files reload");
    assert_eq!(promotion().await.state, PromotionState::RolledBack, "a rollback stays until the configuration changes");
    metric("gateway_promotion_percent").label("route", "promo").label("to", "app/v2").value(0).assert_in(&gateway.metrics().await);

    if let Some(chromium) = e2e_tests::browser::chromium() {
        let dom = chromium.dump_dom(&gateway.admin_url("/")).expect("chromium renders the page");
        assert!(dom.contains("Promotion to app/v2 rolled back"), "{dom}");
    }
    gateway.stop().await;
}
