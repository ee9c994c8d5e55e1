//! Secrets (issue 11): the values of `authorization`, `cookie` and `set-cookie` never appear in
//! the gateway's logs (at debug level), its spans as the OTLP receiver got them, `/config`,
//! `/mirrors` or the report page, after traffic that carried them through a comparing mirror
//! whose answers differ exactly in those headers.

use std::time::Duration;

use e2e_tests::client;
use e2e_tests::gateway::TestGateway;
use e2e_tests::otlp::Receiver;
use e2e_tests::upstream::{Behaviour, Upstream};
use reqwest::StatusCode;

const AUTHORIZATION: &str = "Bearer AUTH-SECRET-7f3a9c";
const COOKIE: &str = "sid=COOKIE-SECRET-41d2e8";
const PRIMARY_SET_COOKIE: &str = "session=SET-COOKIE-PRIMARY-SECRET-9b1f";
const SHADOW_SET_COOKIE: &str = "session=SET-COOKIE-SHADOW-SECRET-c6e0";
const SHADOW_AUTHORIZATION: &str = "Bearer SHADOW-AUTH-SECRET-55aa";

/// The distinctive part of every secret value: none may appear anywhere.
const NEEDLES: [&str; 5] =
    ["AUTH-SECRET-7f3a9c", "COOKIE-SECRET-41d2e8", "PRIMARY-SECRET-9b1f", "SHADOW-SECRET-c6e0", "SHADOW-AUTH-SECRET-55aa"];

fn leaked(what: &str, text: &str) -> Vec<String> {
    NEEDLES.iter().filter(|needle| text.contains(*needle)).map(|needle| format!("{what} contains {needle}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_header_values_never_reach_logs_spans_config_mirrors_or_the_page() {
    let receiver = Receiver::start_local().await.unwrap();
    let answer = |set_cookie: &str| Behaviour::Answer {
        status: StatusCode::OK,
        body: "{\"same\":true}".into(),
        headers: vec![("content-type", "application/json".into()), ("set-cookie", set_cookie.to_owned())],
    };
    let primary = Upstream::start(answer(PRIMARY_SET_COOKIE)).await;
    let shadow = Upstream::start(answer(SHADOW_SET_COOKIE)).await;
    let config = format!(
        r#"
services:
  app: {{ v1: [{primary}], v2: [{shadow}] }}
routes:
  - name: app
    to: app/v1
    mirrors:
      - to: app/v2
        name: v2
        compare: {{ ignore_headers: [] }}
        headers: {{ set: {{ authorization: "{SHADOW_AUTHORIZATION}" }} }}
"#,
        primary = primary.addr,
        shadow = shadow.addr
    );
    let gateway = TestGateway::builder().file("g.yaml", &config).otlp(&receiver).capture_logs().start().await;

    for i in 0..3 {
        let response = client()
            .get(gateway.url(&format!("/account/{i}")))
            .header("authorization", AUTHORIZATION)
            .header("cookie", COOKIE)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["set-cookie"], PRIMARY_SET_COOKIE, "the client gets the primary's cookie");
        response.text().await.unwrap();
    }

    // The secrets did travel: the primary and the copy got them, and the comparison saw the
    // set-cookie difference.
    assert_eq!(primary.requests()[0].headers["authorization"], AUTHORIZATION);
    assert_eq!(primary.requests()[0].headers["cookie"], COOKIE);
    let copies = shadow.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(copies[0].headers["authorization"], SHADOW_AUTHORIZATION);
    assert_eq!(copies[0].headers["cookie"], COOKIE);
    let report = gateway.wait_compared("v2", 3).await;
    let c = &report.comparison;
    assert_eq!(c.matched + c.mismatched + c.skipped, 3, "{report:?}");
    let mismatch = &report.recent_mismatches[0];
    assert!(
        mismatch.differences.iter().any(|d| d.field.contains("set-cookie")),
        "the set-cookie difference is reported (redacted): {report:?}"
    );

    gateway.flush().await;
    let spans = receiver
        .wait_until(Duration::from_secs(30), |spans| {
            spans.iter().filter(|s| s.name == "mirror" && s.attr("mirror.diff").is_some()).count() >= 3
        })
        .await;
    assert!(spans.iter().any(|s| s.attr("mirror.diff.fields").is_some_and(|f| f.to_string().contains("set-cookie"))), "{spans:?}");

    let mut leaks = Vec::new();
    leaks.extend(leaked("logs", &gateway.logs()));
    leaks.extend(leaked("spans", &serde_json::to_string(&spans).unwrap()));
    for path in ["/config", "/mirrors", "/"] {
        let body = client().get(gateway.admin_url(path)).send().await.unwrap().text().await.unwrap();
        assert!(!body.is_empty(), "{path}");
        leaks.extend(leaked(path, &body));
    }
    assert!(gateway.logs().contains("mirror copy done"), "the logs of the mirrored traffic were captured: {}", gateway.logs());
    assert!(leaks.is_empty(), "{leaks:#?}");
    gateway.stop().await;
}
