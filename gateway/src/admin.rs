//! The admin listener: health, the effective routing table, Prometheus metrics, and the mirror
//! report as JSON (`/mirrors`) and as a page (`/`, rendered here, no JavaScript).

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::compare::NoiseReport;
use crate::promote::PromotionReport;
use crate::report::MirrorReport;
use crate::state::Shared;
use crate::verdict::State as VerdictState;
use response_diff::LearnedNoise;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/config", get(config))
        .route("/metrics", get(metrics))
        .route("/mirrors", get(mirrors))
        // POST too: Flagger's webhooks POST their payload (ignored here).
        .route("/verdict/{*name}", get(verdict).post(verdict))
        .with_state(shared)
}

async fn config(State(shared): State<Arc<Shared>>) -> Response {
    let active = shared.active.load();
    let (reloads, last_error) = shared.reload_status();
    let loaded_at = active.loaded_at.duration_since(std::time::SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    axum::Json(json!({
        "files": shared.settings.config,
        "loaded_at": loaded_at,
        "reloads": reloads,
        "last_reload_error": last_error,
        "warnings": active.warnings,
        "routes": active.table.routes,
        "destinations": active.table.destinations,
    }))
    .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    // The verdict gauges are as of now, not of the last comparison.
    for stats in shared.stats.all() {
        stats.verdict();
    }
    service_kit::metrics::scrape(shared.metrics.as_ref()).into_response()
}

fn reports(shared: &Shared) -> Vec<MirrorReport> {
    shared.stats.all().iter().map(|stats| stats.report()).collect()
}

async fn mirrors(State(shared): State<Arc<Shared>>) -> Response {
    let active = shared.active.load();
    let comparing = || {
        active.routes.iter().flat_map(|route| route.mirrors.iter().map(move |mirror| (route, mirror))).filter_map(|(route, mirror)| {
            mirror.comparer.as_ref().map(|comparer| (format!("{}/{}", &*route.label, mirror.policy.name), comparer))
        })
    };
    // What noise learning did per mirror: second requests sent, requests not eligible and why,
    // mismatches reclassified as noise, and the fields learned per path pattern with their samples.
    let noise: serde_json::Map<String, serde_json::Value> = comparing().map(|(name, c)| (name, json!(c.noise_report()))).collect();
    let noise_fields: serde_json::Map<String, serde_json::Value> = comparing().map(|(name, c)| (name, json!(c.noise_fields()))).collect();
    let promotions: Vec<PromotionReport> = shared.stats.promotions.all().iter().map(|p| p.report()).collect();
    axum::Json(json!({ "mirrors": reports(&shared), "noise": noise, "noise_fields": noise_fields, "promotions": promotions }))
        .into_response()
}

/// `GET /verdict/<mirror>` or `/verdict/<route>/<mirror>`: 200 when the mirror's verdict is
/// `pass`, 412 otherwise (pending, fail, or no verdict), with the verdict as JSON; for pipeline
/// gates (a Flagger webhook, an Argo Rollouts `web` metric) that read the status or the body.
/// `?status=200` answers 200 whatever the state, for callers that take any other status for an
/// error rather than a "no" (Argo Rollouts' web metric); they read `state` from the body.
async fn verdict(State(shared): State<Arc<Shared>>, Path(name): Path<String>, Query(query): Query<VerdictQuery>) -> Response {
    let all = shared.stats.all();
    let found: Vec<_> = all.iter().filter(|s| s.mirror == name || format!("{}/{}", s.route, s.mirror) == name).collect();
    let stats = match found.as_slice() {
        [one] => one,
        [] => {
            let known: Vec<String> = all.iter().map(|s| format!("{}/{}", s.route, s.mirror)).collect();
            return (StatusCode::NOT_FOUND, axum::Json(json!({ "error": format!("no mirror named {name:?}"), "mirrors": known })))
                .into_response();
        }
        several => {
            let keys: Vec<String> = several.iter().map(|s| format!("{}/{}", s.route, s.mirror)).collect();
            let error = format!("{name:?} names a mirror on several routes: ask for /verdict/<route>/<mirror>");
            return (StatusCode::CONFLICT, axum::Json(json!({ "error": error, "mirrors": keys }))).into_response();
        }
    };
    let verdict = stats.verdict();
    let status = match verdict.as_ref().map(|v| v.state) {
        Some(VerdictState::Pass) => StatusCode::OK,
        _ if query.status == Some(200) => StatusCode::OK,
        _ => StatusCode::PRECONDITION_FAILED,
    };
    let body = match verdict {
        Some(verdict) => {
            json!({ "route": stats.route, "mirror": stats.mirror, "state": verdict.state, "reasons": verdict.reasons, "verdict": verdict })
        }
        None => json!({
            "route": stats.route,
            "mirror": stats.mirror,
            "state": "off",
            "reasons": ["this mirror has no verdict: it does not compare answers, or its verdict is off"],
        }),
    };
    (status, axum::Json(body)).into_response()
}

#[derive(serde::Deserialize)]
struct VerdictQuery {
    status: Option<u16>,
}

fn window_text(seconds: u64) -> String {
    match seconds {
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn millis(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:+.1} ms"))
}

/// The page at `/`: `templates/mirrors.html`, which escapes every value it prints.
#[derive(Template)]
#[template(path = "mirrors.html")]
struct Page {
    rows: Vec<Row>,
    /// Whether any mirror learns noise (the section is shown only then).
    any_noise: bool,
    mismatches: Vec<MismatchView>,
}

/// One mirror's row, formatted for reading.
struct Row {
    route: String,
    mirror: String,
    destination: String,
    /// `route/mirror`: the `data-mirror` hook tests and scripts find the row by.
    key: String,
    sent: u64,
    answered: u64,
    failed: u64,
    dropped: u64,
    rate: String,
    rate_class: &'static str,
    mismatched: u64,
    noise: u64,
    p50: String,
    p99: String,
    /// `pass`, `fail`, `pending`, or `off` (no verdict): a CSS class.
    state: &'static str,
    state_label: &'static str,
    reasons: Vec<String>,
    evidence_summary: String,
    /// The route's promotion gated by this mirror: where it stands, and its history.
    promotion: Option<PromotionView>,
    /// What noise learning did, when the mirror learns noise.
    learned_noise: Option<NoiseView>,
}

struct NoiseView {
    summary: String,
    learned: Vec<LearnedNoise>,
}

impl NoiseView {
    /// Only for a mirror that learns noise (or has learned some).
    fn new(report: &NoiseReport) -> Option<Self> {
        let active = report.sent + report.not_eligible_method + report.not_eligible_body > 0 || !report.learned.is_empty();
        active.then(|| NoiseView {
            summary: format!(
                "{} second requests to the primary · {} comparisons reclassified as noise · not eligible: {} by method, {} with a body",
                report.sent, report.reclassified, report.not_eligible_method, report.not_eligible_body
            ),
            learned: report.learned.clone(),
        })
    }
}

struct PromotionView {
    summary: String,
    history: Vec<String>,
}

impl PromotionView {
    fn new(p: &PromotionReport) -> Self {
        let steps: Vec<String> = p.steps.iter().map(|s| format!("{s}%")).collect();
        let summary = match p.state {
            "rolled_back" => format!("Promotion to {} rolled back: 0% of the traffic, until the route's configuration changes", p.to),
            "complete" => format!(
                "Promotion to {} complete: {}% of the traffic (make it the route's destination in the configuration)",
                p.to, p.percent
            ),
            _ => format!(
                "Promotion to {}: {}% of the traffic (step {} of {}: {}), one step per {} s while the verdict passes",
                p.to,
                p.percent,
                p.step,
                p.steps.len(),
                steps.join(" → "),
                p.hold_seconds
            ),
        };
        let history = p.history.iter().rev().map(|e| format!("{} {}", clock(e.at), e.what)).collect();
        PromotionView { summary, history }
    }
}

/// `HH:MM:SS` UTC of an epoch time, for the history.
fn clock(epoch_seconds: f64) -> String {
    let s = epoch_seconds as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

struct MismatchView {
    route: String,
    mirror: String,
    method: String,
    path: String,
    primary_status: u16,
    shadow_status: u16,
    request_id: String,
    trace_id: String,
    differences: Vec<DifferenceView>,
}

struct DifferenceView {
    field: String,
    primary: String,
    shadow: String,
}

impl Page {
    fn new(reports: Vec<MirrorReport>, promotions: &[PromotionReport], noise: &HashMap<String, NoiseReport>) -> Self {
        let hidden = |value: Option<String>| value.unwrap_or_else(|| "(hidden or absent)".to_owned());
        let mut mismatches = Vec::new();
        for r in &reports {
            for m in &r.recent_mismatches {
                mismatches.push(MismatchView {
                    route: r.route.clone(),
                    mirror: r.mirror.clone(),
                    method: m.method.clone(),
                    path: m.path.clone(),
                    primary_status: m.primary_status,
                    shadow_status: m.shadow_status,
                    request_id: m.request_id.clone(),
                    trace_id: m.trace_id.clone(),
                    differences: m
                        .differences
                        .iter()
                        .map(|d| DifferenceView {
                            field: d.field.clone(),
                            primary: hidden(d.primary.clone()),
                            shadow: hidden(d.shadow.clone()),
                        })
                        .collect(),
                });
            }
        }
        let rows = reports
            .into_iter()
            .map(|r| Row {
                learned_noise: noise.get(&format!("{}/{}", r.route, r.mirror)).and_then(NoiseView::new),
                promotion: promotions.iter().find(|p| p.route == r.route && p.mirror == r.mirror).map(PromotionView::new),
                key: format!("{}/{}", r.route, r.mirror),
                state: r.verdict.as_ref().map_or("off", |v| v.state.as_str()),
                state_label: match r.verdict.as_ref().map(|v| v.state) {
                    Some(VerdictState::Pass) => "PASS",
                    Some(VerdictState::Fail) => "FAIL",
                    Some(VerdictState::Pending) => "PENDING",
                    None => "NO VERDICT",
                },
                reasons: match &r.verdict {
                    Some(v) => v.reasons.clone(),
                    None if r.comparing => vec!["the verdict is off for this mirror (verdict: false)".to_owned()],
                    None => vec!["not judged: the mirror does not compare answers (add compare: true)".to_owned()],
                },
                evidence_summary: format!(
                    "last {}: {} compared, {} mismatched, {} noise, {} skipped",
                    window_text(r.latency_delta_ms.window_seconds),
                    r.evidence.compared(),
                    r.evidence.mismatched,
                    r.evidence.noise,
                    r.evidence.skipped
                ),
                rate: match (r.comparing, r.match_rate) {
                    (false, _) => "not compared".to_owned(),
                    (true, None) => "no comparisons yet".to_owned(),
                    (true, Some(rate)) => format!("{:.1}%", rate * 100.0),
                },
                rate_class: match r.match_rate {
                    Some(rate) if rate < 1.0 => "bad",
                    Some(_) => "good",
                    None => "",
                },
                sent: r.copies.sent,
                answered: r.copies.ok,
                failed: r.copies.timeout + r.copies.error,
                dropped: r.copies.dropped,
                mismatched: r.comparison.mismatched,
                noise: r.comparison.noise,
                p50: millis(r.latency_delta_ms.p50),
                p99: millis(r.latency_delta_ms.p99),
                route: r.route,
                mirror: r.mirror,
                destination: r.destination,
            })
            .collect();
        let rows: Vec<Row> = rows;
        Page { any_noise: rows.iter().any(|r| r.learned_noise.is_some()), rows, mismatches }
    }
}

async fn page(State(shared): State<Arc<Shared>>) -> Response {
    let promotions: Vec<PromotionReport> = shared.stats.promotions.all().iter().map(|p| p.report()).collect();
    let active = shared.active.load();
    let noise: HashMap<String, NoiseReport> = active
        .routes
        .iter()
        .flat_map(|route| route.mirrors.iter().map(move |mirror| (route, mirror)))
        .filter_map(|(route, mirror)| {
            mirror.comparer.as_ref().map(|comparer| (format!("{}/{}", &*route.label, mirror.policy.name), comparer.noise_report()))
        })
        .collect();
    match Page::new(reports(&shared), &promotions, &noise).render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "rendering the admin page");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered; /mirrors has the same report as JSON").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use response_diff::{Classified, Difference};

    use super::*;
    use crate::report::{MirrorStats, MismatchRecord};
    use crate::settings::ReportSettings;

    #[test]
    fn the_page_escapes_what_upstreams_and_clients_sent() {
        let stats = MirrorStats::new("r<1>", "m\"2", "t/v2", &ReportSettings { recent_mismatches: 3, max_bytes: 4096 });
        let record = MismatchRecord {
            at: 0.0,
            method: "GET".into(),
            path: "/<script>alert(1)</script>".into(),
            request_id: "a&b".into(),
            trace_id: String::new(),
            primary_status: 200,
            shadow_status: 200,
            differences: vec![Difference { field: "$.x".into(), primary: Some("<b>".into()), shadow: None }],
        };
        stats.compared(&Classified::Mismatch(Vec::new()), 1.0, || Some(record));
        let html = Page::new(vec![stats.report()], &[], &HashMap::new()).render().unwrap();
        assert!(!html.contains("<script>") && !html.contains("<b>"), "{html}");
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains(r#"data-mirror="r&#60;1&#62;/m&#34;2""#) || html.contains(r#"data-mirror="r&lt;1&gt;/m&quot;2""#), "{html}");
        assert!(html.contains("(hidden or absent)"));
    }

    #[test]
    fn the_page_shows_the_noise_each_mirror_learned_and_no_section_without_it() {
        let stats = MirrorStats::new("r", "v2", "t/v2", &ReportSettings { recent_mismatches: 3, max_bytes: 4096 });
        let html = Page::new(vec![stats.report()], &[], &HashMap::new()).render().unwrap();
        assert!(!html.contains("Noise learned"));
        let report = NoiseReport {
            sent: 12,
            not_eligible_method: 3,
            not_eligible_body: 1,
            reclassified: 5,
            learned: vec![LearnedNoise { pattern: "/users/{id}".into(), field: "$.seq".into(), samples: 9 }],
        };
        let noise = HashMap::from([("r/v2".to_owned(), report)]);
        let html = Page::new(vec![stats.report()], &[], &noise).render().unwrap();
        assert!(html.contains("<h2>Noise learned</h2>") && html.contains(r#"data-noise="r/v2""#), "{html}");
        assert!(html.contains(
            "12 second requests to the primary · 5 comparisons reclassified as noise · not eligible: 3 by method, 1 with a body"
        ));
        assert!(html.contains("<code>$.seq</code></td><td class=\"num\">9</td>"), "{html}");
    }
}
