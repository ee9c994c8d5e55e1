//! The page at `/`: the mirror report for reading (`templates/mirrors.html`, which escapes every
//! value it prints; no JavaScript), made from the same [`MirrorsDocument`] as `/mirrors`.

use askama::Template;
use response_diff::{AnsweredBody, Difference, LearnedNoise};

use super::api::{MirrorReport, MirrorsDocument, NoiseReport, PromotionReport, PromotionState, ShadowOutcome};

fn window_text(seconds: u64) -> String {
    match seconds {
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn millis(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:+.1} ms"))
}

#[derive(Template)]
#[template(path = "mirrors.html")]
pub struct Page {
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
    /// Per field that differed in the window: how often, and an example.
    fields: Vec<FieldView>,
    /// Per path pattern compared in the window: its match rate.
    patterns: Vec<PatternView>,
}

struct FieldView {
    field: String,
    /// Differences beyond noise, in all, of the compared requests.
    real: u64,
    shadow: u64,
    /// `3 of 40 (7.5%)`: how often the primary differed from itself on it.
    noise_rate: String,
    /// `~ up to 4 more` when the bounded table replaced a field with this one.
    overcount: String,
    example_request: String,
    example_primary: String,
    example_shadow: String,
}

struct PatternView {
    pattern: String,
    compared: u64,
    mismatched: u64,
    noise: u64,
    rate: String,
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
            PromotionState::RolledBack => {
                format!("Promotion to {} rolled back: 0% of the traffic, until the route's configuration changes", p.to)
            }
            PromotionState::Complete => format!(
                "Promotion to {} complete: {}% of the traffic (make it the route's destination in the configuration)",
                p.to, p.percent
            ),
            PromotionState::Waiting => format!(
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
    /// The trace in Jaeger (`report.trace_url`): the primary's server span and, as its child,
    /// the copy's `mirror` span, which `?uiFind=mirror` highlights.
    trace_link: Option<String>,
    differences: Vec<DifferenceView>,
    /// What each side answered, as sent (decoded), when kept.
    primary_body: Option<String>,
    shadow_body: Option<String>,
}

struct DifferenceView {
    field: String,
    primary: String,
    shadow: String,
}

/// A side's value as the page shows it: `(absent)` when that side did not have the field at
/// all, `(hidden)` when it had one that is never shown (a secret header, redacted bodies).
fn side(value: &Option<String>) -> String {
    match value {
        None => "(absent)".to_owned(),
        Some(_) if Difference::hidden(value) => "(hidden)".to_owned(),
        Some(value) => value.clone(),
    }
}

/// A body as answered, with how much of it is shown.
fn body_text(body: &Option<AnsweredBody>) -> Option<String> {
    body.as_ref().map(|b| {
        let note = if b.cut { format!("first part of {} bytes", b.bytes) } else { format!("{} bytes", b.bytes) };
        format!("({note})\n{}", b.text)
    })
}

impl Page {
    pub fn new(document: &MirrorsDocument) -> Self {
        let mut mismatches = Vec::new();
        for r in &document.mirrors {
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
                    trace_link: None,
                    differences: m
                        .differences
                        .iter()
                        .map(|d| DifferenceView { field: d.field.clone(), primary: side(&d.primary), shadow: side(&d.shadow) })
                        .collect(),
                    primary_body: body_text(&m.primary_body),
                    shadow_body: body_text(&m.shadow_body),
                });
            }
        }
        let rows: Vec<Row> = document.mirrors.iter().map(|r| Row::new(r, document)).collect();
        Page { any_noise: rows.iter().any(|r| r.learned_noise.is_some()), rows, mismatches }
    }

    /// Links each mismatch's trace id to its trace under `base` (a Jaeger UI: `http://jaeger:16686`).
    pub fn with_trace_url(mut self, base: &str) -> Self {
        let base = base.trim_end_matches('/');
        if !base.is_empty() {
            for m in self.mismatches.iter_mut().filter(|m| !m.trace_id.is_empty()) {
                m.trace_link = Some(format!("{base}/trace/{}", m.trace_id));
            }
        }
        self
    }
}

impl Row {
    fn new(r: &MirrorReport, document: &MirrorsDocument) -> Self {
        let key = r.key();
        Row {
            learned_noise: document.noise.get(&key).and_then(NoiseView::new),
            promotion: document.promotions.iter().find(|p| p.route == r.route && p.mirror == r.mirror).map(PromotionView::new),
            key: key.to_string(),
            state: r.verdict.as_ref().map_or("off", |v| v.state.as_str()),
            state_label: r.verdict.as_ref().map_or("NO VERDICT", |v| v.state.label()),
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
            answered: r.copies[ShadowOutcome::Ok],
            failed: r.copies[ShadowOutcome::Timeout] + r.copies[ShadowOutcome::Error],
            dropped: r.copies.dropped(),
            mismatched: r.comparison.mismatched,
            noise: r.comparison.noise,
            p50: millis(r.latency_delta_ms.p50),
            p99: millis(r.latency_delta_ms.p99),
            route: r.route.clone(),
            mirror: r.mirror.clone(),
            destination: r.destination.clone(),
            fields: field_views(r),
            patterns: pattern_views(r),
        }
    }
}

/// Fields shown per mirror at most, those that differed beyond noise first.
const FIELDS_SHOWN: usize = 30;

fn field_views(r: &MirrorReport) -> Vec<FieldView> {
    let e = &r.evidence;
    let mut fields: Vec<_> = e.fields.iter().collect();
    fields.sort_by(|a, b| {
        (b.0 == "status").cmp(&(a.0 == "status")).then(b.1.real.cmp(&a.1.real)).then(b.1.shadow.cmp(&a.1.shadow)).then(a.0.cmp(b.0))
    });
    fields
        .into_iter()
        .take(FIELDS_SHOWN)
        .map(|(field, c)| FieldView {
            field: field.clone(),
            real: c.real,
            shadow: c.shadow,
            noise_rate: match e.primary_compared {
                0 => "not sampled yet".to_owned(),
                n => format!("{} of {n} ({:.1}%)", c.primary, c.primary as f64 * 100.0 / n as f64),
            },
            overcount: if c.overcount > 0 { format!(" (may be over by {})", c.overcount) } else { String::new() },
            example_request: c.example.as_ref().map_or_else(String::new, |x| format!("{} {} ({})", x.method, x.path, x.field)),
            example_primary: c.example.as_ref().map_or_else(String::new, |x| side(&x.primary)),
            example_shadow: c.example.as_ref().map_or_else(String::new, |x| side(&x.shadow)),
        })
        .collect()
}

fn pattern_views(r: &MirrorReport) -> Vec<PatternView> {
    let mut patterns: Vec<_> = r.evidence.patterns.iter().collect();
    // The worst first.
    patterns.sort_by(|a, b| {
        let rate = |c: &crate::verdict::PatternCounts| c.match_rate().unwrap_or(1.0);
        rate(a.1).total_cmp(&rate(b.1)).then(b.1.compared.cmp(&a.1.compared)).then(a.0.cmp(b.0))
    });
    patterns
        .into_iter()
        .map(|(pattern, c)| PatternView {
            pattern: pattern.clone(),
            compared: c.compared,
            mismatched: c.mismatched,
            noise: c.noise,
            rate: c.match_rate().map_or_else(|| "–".to_owned(), |rate| format!("{:.1}%", rate * 100.0)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use response_diff::{Classified, Difference};

    use super::*;
    use crate::admin::api::{MirrorKey, MismatchRecord};
    use crate::settings::ReportSettings;
    use crate::stats::MirrorStats;

    fn page(report: MirrorReport, noise: BTreeMap<MirrorKey, NoiseReport>) -> String {
        let document = MirrorsDocument { mirrors: vec![report], noise, noise_fields: BTreeMap::new(), promotions: Vec::new() };
        Page::new(&document).render().unwrap()
    }

    #[test]
    fn the_page_escapes_what_upstreams_and_clients_sent() {
        let stats =
            MirrorStats::new("r<1>", "m\"2", "t/v2", &ReportSettings { recent_mismatches: 3, max_bytes: 4096, trace_url: String::new() });
        let record = MismatchRecord {
            at: 0.0,
            method: "GET".into(),
            path: "/<script>alert(1)</script>".into(),
            request_id: "a&b".into(),
            trace_id: String::new(),
            primary_status: 200,
            shadow_status: 200,
            differences: vec![
                Difference { field: "$.x".into(), primary: Some("<b>".into()), shadow: None },
                Difference { field: "header:set-cookie".into(), primary: Some(response_diff::REDACTED.into()), shadow: None },
            ],
            primary_body: Some(AnsweredBody { text: "{\"x\":\"<b>\"}".into(), bytes: 11, cut: false }),
            shadow_body: Some(AnsweredBody { text: "{}".into(), bytes: 2, cut: false }),
        };
        stats.compared(&Classified::Mismatch(Vec::new()), 1.0, || Some(record));
        let html = page(stats.report(), BTreeMap::new());
        assert!(!html.contains("<script>") && !html.contains("<b>"), "{html}");
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains(r#"data-mirror="r&#60;1&#62;/m&#34;2""#) || html.contains(r#"data-mirror="r&lt;1&gt;/m&quot;2""#), "{html}");
        assert!(html.contains("(absent)") && html.contains("(hidden)"), "absent and hidden are told apart: {html}");
        assert!(html.contains("(11 bytes)") && html.contains("(2 bytes)"), "the bodies as sent: {html}");
    }

    #[test]
    fn the_page_shows_each_field_with_its_noise_rate_and_an_example_and_each_pattern_with_its_match_rate() {
        let stats =
            MirrorStats::new("r", "v2", "t/v2", &ReportSettings { recent_mismatches: 3, max_bytes: 4096, trace_url: String::new() });
        let real = Classified::Mismatch(vec![Difference {
            field: "$.rows[4].city".into(),
            primary: Some("\"Oslo\"".into()),
            shadow: Some("\"Bergen\"".into()),
        }]);
        let noise = [Difference { field: "$.query_ms".into(), primary: Some("1.5".into()), shadow: Some("2.5".into()) }];
        let pair = crate::stats::Pair {
            primary_status: 200,
            shadow_status: 200,
            primary_latency: std::time::Duration::from_millis(1),
            shadow_latency: std::time::Duration::from_millis(1),
        };
        let observation = crate::stats::Observation {
            method: "GET",
            path: "/shop/customers/7.json",
            result: &real,
            noise: &noise,
            primary_again: Some(&noise),
            pair,
        };
        stats.evidence(&observation);
        let only_noise = Classified::Noise(vec!["$.query_ms".into()]);
        stats.evidence(&crate::stats::Observation { result: &only_noise, path: "/shop/orders.json", primary_again: None, ..observation });
        let html = page(stats.report(), BTreeMap::new());
        assert!(html.contains("<code>$.rows[*].city</code>"), "{html}");
        assert!(html.contains("GET /shop/customers/7.json ($.rows[4].city)"), "{html}");
        assert!(html.contains("&#34;Oslo&#34;") || html.contains("&quot;Oslo&quot;"), "{html}");
        assert!(html.contains("1 of 1 (100.0%)"), "the timing's noise rate: {html}");
        assert!(html.contains("<code>/shop/customers/{id}.json</code>") && html.contains("0.0%") && html.contains("100.0%"), "{html}");
    }

    #[test]
    fn the_page_shows_the_noise_each_mirror_learned_and_no_section_without_it() {
        let stats =
            MirrorStats::new("r", "v2", "t/v2", &ReportSettings { recent_mismatches: 3, max_bytes: 4096, trace_url: String::new() });
        let html = page(stats.report(), BTreeMap::new());
        assert!(!html.contains("Noise learned"));
        let report = NoiseReport {
            sent: 12,
            not_eligible_method: 3,
            not_eligible_body: 1,
            reclassified: 5,
            learned: vec![LearnedNoise {
                pattern: "/users/{id}".into(),
                field: "$.seq".into(),
                change: response_diff::Change::Value,
                samples: 9,
            }],
            fields: Vec::new(),
            full: false,
            not_learned: 0,
        };
        let noise = BTreeMap::from([(MirrorKey::new("r", "v2"), report)]);
        let html = page(stats.report(), noise);
        assert!(html.contains("<h2>Noise learned</h2>") && html.contains(r#"data-noise="r/v2""#), "{html}");
        assert!(html.contains(
            "12 second requests to the primary · 5 comparisons reclassified as noise · not eligible: 3 by method, 1 with a body"
        ));
        assert!(html.contains("<code>$.seq</code></td><td class=\"num\">9</td>"), "{html}");
    }

    #[test]
    fn with_a_trace_url_each_mismatch_links_to_its_trace_and_the_copys_span() {
        let stats =
            MirrorStats::new("r", "v2", "t/v2", &ReportSettings { recent_mismatches: 3, max_bytes: 4096, trace_url: String::new() });
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let record = |trace_id: &str| MismatchRecord {
            at: 0.0,
            method: "GET".into(),
            path: "/".into(),
            request_id: "r-1".into(),
            trace_id: trace_id.into(),
            primary_status: 200,
            shadow_status: 200,
            differences: vec![Difference { field: "$.x".into(), primary: Some("1".into()), shadow: Some("2".into()) }],
            primary_body: None,
            shadow_body: None,
        };
        stats.compared(&Classified::Mismatch(Vec::new()), 1.0, || Some(record(trace)));
        let document = MirrorsDocument {
            mirrors: vec![stats.report()],
            noise: BTreeMap::new(),
            noise_fields: BTreeMap::new(),
            promotions: Vec::new(),
        };
        let linked = Page::new(&document).with_trace_url("http://jaeger:16686/").render().unwrap();
        assert!(linked.contains(&format!(r#"<a href="http://jaeger:16686/trace/{trace}">{trace}</a>"#)), "{linked}");
        assert!(linked.contains(&format!(r#"<a href="http://jaeger:16686/trace/{trace}?uiFind=mirror">"#)), "{linked}");
        let plain = Page::new(&document).with_trace_url("").render().unwrap();
        assert!(plain.contains(trace) && !plain.contains("/trace/"), "no link without a trace_url");
    }
}
