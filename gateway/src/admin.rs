//! The admin listener: health, the effective routing table, Prometheus metrics, and the mirror
//! report as JSON (`/mirrors`) and as a page (`/`, rendered here, no JavaScript).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::report::MirrorReport;
use crate::state::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/config", get(config))
        .route("/metrics", get(metrics))
        .route("/mirrors", get(mirrors))
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
    axum::Json(json!({ "mirrors": reports(&shared), "noise": noise, "noise_fields": noise_fields })).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn millis(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:+.1} ms"))
}

async fn page(State(shared): State<Arc<Shared>>) -> Html<String> {
    let reports = reports(&shared);
    let mut rows = String::new();
    for r in &reports {
        let rate = match (r.comparing, r.match_rate) {
            (false, _) => "not compared".to_owned(),
            (true, None) => "no comparisons yet".to_owned(),
            (true, Some(rate)) => format!("{:.1}%", rate * 100.0),
        };
        let class = match r.match_rate {
            Some(rate) if rate < 1.0 => "bad",
            Some(_) => "good",
            None => "",
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num match-rate {class}\" data-mirror=\"{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&r.route),
            escape(&r.mirror),
            escape(&r.destination),
            r.copies.sent,
            r.copies.ok,
            r.copies.timeout + r.copies.error,
            r.copies.dropped,
            escape(&format!("{}/{}", r.route, r.mirror)),
            rate,
            r.comparison.mismatched,
            r.comparison.noise,
            millis(r.latency_delta_ms.p50),
            millis(r.latency_delta_ms.p99),
        );
    }
    if reports.is_empty() {
        rows.push_str("<tr><td colspan=\"12\">No mirrors are configured.</td></tr>");
    }
    let mut mismatches = String::new();
    for r in &reports {
        for m in &r.recent_mismatches {
            let _ = write!(
                mismatches,
                "<section class=\"mismatch\"><h3>{} {} <small>route {} → mirror {} · status {} vs {} · request {}{}</small></h3>\
                 <table><thead><tr><th>field</th><th>primary</th><th>shadow</th></tr></thead><tbody>",
                escape(&m.method),
                escape(&m.path),
                escape(&r.route),
                escape(&r.mirror),
                m.primary_status,
                m.shadow_status,
                escape(&m.request_id),
                if m.trace_id.is_empty() { String::new() } else { format!(" · trace {}", escape(&m.trace_id)) },
            );
            for d in &m.differences {
                let _ = write!(
                    mismatches,
                    "<tr><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                    escape(&d.field),
                    escape(d.primary.as_deref().unwrap_or("(hidden or absent)")),
                    escape(d.shadow.as_deref().unwrap_or("(hidden or absent)")),
                );
            }
            mismatches.push_str("</tbody></table></section>");
        }
    }
    if mismatches.is_empty() {
        mismatches.push_str("<p>No mismatches recorded.</p>");
    }
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Gateway mirrors</title>
<meta http-equiv="refresh" content="10">
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}
table{{border-collapse:collapse;margin:.5rem 0 1.5rem}}
th,td{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}}
th{{background:#f3f3f3}} td.num{{text-align:right}}
.good{{background:#e6f4ea}} .bad{{background:#fce8e6}}
code{{white-space:pre-wrap;word-break:break-all}} small{{color:#666;font-weight:normal}}
</style></head><body>
<h1>Shadow traffic</h1>
<p>Each row is one mirror: a copy of a route's traffic sent to a shadow version. The match rate
counts compared responses whose status, headers and body equal the primary's (ignoring configured
fields and learned noise). Latency is the shadow's response time minus the primary's.</p>
<table id="mirrors"><thead><tr><th>route</th><th>mirror</th><th>shadow destination</th><th>copies sent</th>
<th>answered</th><th>failed</th><th>dropped</th><th>match rate</th><th>mismatches</th><th>noise</th>
<th>latency Δ p50</th><th>latency Δ p99</th></tr></thead><tbody>{rows}</tbody></table>
<h2>Recent mismatches</h2>
{mismatches}
<p><small>JSON: <a href="/mirrors">/mirrors</a> · metrics: <a href="/metrics">/metrics</a> · routing: <a href="/config">/config</a></small></p>
</body></html>"#
    ))
}
