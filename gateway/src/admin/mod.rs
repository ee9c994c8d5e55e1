//! The admin listener: health, the effective routing table, Prometheus metrics, and the mirror
//! report as JSON (`/mirrors`) and as a page (`/`). Its answers are the typed documents of
//! [`api`], which `gateway verdict` ([`cli`]) and the tests read back.

pub mod api;
pub mod cli;
mod page;

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use self::api::{ConfigDocument, ErrorAnswer, MirrorKey, MirrorsDocument, Unresolved, VerdictAnswer};
use self::page::Page;
use crate::state::Shared;
use crate::verdict::State as VerdictState;

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
    let (reloads, last_reload_error) = shared.reload_status();
    let loaded_at = active.loaded_at.duration_since(std::time::SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    axum::Json(ConfigDocument {
        files: &shared.settings.config,
        loaded_at,
        reloads,
        last_reload_error,
        warnings: &active.warnings,
        objects: &active.objects,
        routes: &active.table.routes,
        destinations: &active.table.destinations,
    })
    .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    // The verdict gauges are as of now, not of the last comparison.
    for stats in shared.stats.all() {
        stats.verdict();
    }
    service_kit::metrics::scrape(shared.metrics.as_ref()).into_response()
}

/// What `/mirrors` answers and the page shows: every mirror's report, what noise learning did
/// per mirror that compares now, and the promotions in force.
fn document(shared: &Shared) -> MirrorsDocument {
    let active = shared.active.load();
    let comparing = || {
        active.routes.iter().flat_map(|route| route.mirrors.iter().map(move |mirror| (route, mirror))).filter_map(|(route, mirror)| {
            mirror.comparer.as_ref().map(|comparison| (MirrorKey::new(&route.label, &mirror.policy.name), comparison))
        })
    };
    MirrorsDocument {
        mirrors: shared.stats.all().iter().map(|stats| stats.report()).collect(),
        noise: comparing().map(|(key, c)| (key, c.noise_report())).collect::<BTreeMap<_, _>>(),
        noise_fields: comparing().map(|(key, c)| (key, c.noise_fields())).collect::<BTreeMap<_, _>>(),
        promotions: shared.promotions.all().iter().map(|p| p.report()).collect(),
    }
}

async fn mirrors(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(document(&shared)).into_response()
}

/// `GET /verdict/<mirror>` or `/verdict/<route>/<mirror>`: 200 when the mirror's verdict is
/// `pass`, 412 otherwise (pending, fail, or no verdict), with the verdict as JSON; for pipeline
/// gates (a Flagger webhook, an Argo Rollouts `web` metric) that read the status or the body.
/// `?status=200` answers 200 whatever the state, for callers that take any other status for an
/// error rather than a "no" (Argo Rollouts' web metric); they read `state` from the body.
async fn verdict(State(shared): State<Arc<Shared>>, Path(name): Path<String>, Query(query): Query<VerdictQuery>) -> Response {
    let all = shared.stats.all();
    let stats = match MirrorKey::lookup(&name, &all, |stats| stats.key.clone()) {
        Ok(stats) => stats,
        Err(Unresolved::Unknown { known }) => {
            let error =
                ErrorAnswer { error: format!("no mirror named {name:?}"), mirrors: known.iter().map(ToString::to_string).collect() };
            return (StatusCode::NOT_FOUND, axum::Json(error)).into_response();
        }
        Err(Unresolved::Ambiguous { candidates }) => {
            let error = ErrorAnswer {
                error: format!("{name:?} names a mirror on several routes: ask for /verdict/<route>/<mirror>"),
                mirrors: candidates.iter().map(ToString::to_string).collect(),
            };
            return (StatusCode::CONFLICT, axum::Json(error)).into_response();
        }
    };
    let answer = VerdictAnswer::new(&stats.key, stats.verdict());
    let status = match answer.state {
        Some(VerdictState::Pass) => StatusCode::OK,
        _ if query.status == Some(200) => StatusCode::OK,
        _ => StatusCode::PRECONDITION_FAILED,
    };
    (status, axum::Json(answer)).into_response()
}

#[derive(serde::Deserialize)]
struct VerdictQuery {
    status: Option<u16>,
}

/// The page for `document`: the admin page's, also written by `gateway replay --report`; with
/// `trace_url` (a Jaeger UI), each mismatch links to its trace.
pub fn render_page(document: &MirrorsDocument, trace_url: &str) -> Result<String, askama::Error> {
    Page::new(document).with_trace_url(trace_url).render()
}

async fn page(State(shared): State<Arc<Shared>>) -> Response {
    match render_page(&document(&shared), &shared.settings.report.trace_url) {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "rendering the admin page");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered; /mirrors has the same report as JSON").into_response()
        }
    }
}
