//! What the gateway knows about each mirror: copies and their outcomes, comparison results, the
//! shadow-minus-primary latency distribution, and the last mismatches (bounded in count and bytes).
//! Served as JSON at `/mirrors`, as a page at `/`, and as Prometheus metrics.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gateway_config::VerdictSpec;
use hdrhistogram::Histogram as Hdr;
use metrics::{Counter, Gauge, Histogram, SharedString};
use response_diff::{Classified, Difference};
use serde::Serialize;

use crate::settings::ReportSettings;
use crate::verdict::{self, Evidence, Limits, State, Verdict};

/// How one copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowOutcome {
    /// The shadow answered (any status) within the mirror's timeout.
    Ok,
    Timeout,
    /// Refused, reset, or the copy's body was abandoned mid-way.
    Error,
    /// Not sent, or abandoned before it was complete, for `DropReason`.
    Dropped(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// `max_in_flight` copies were already running.
    InFlightCap,
    /// The request body is larger than the mirror's `max_body`.
    BodyOverCap,
    /// The shadow read the body more slowly than the client sent it.
    BodyBackpressure,
    /// The client's body failed or was abandoned.
    ClientAborted,
    /// The shadow destination is ejected: its last copies got no answer ([`crate::upstream::Ejection`]).
    ShadowEjected,
}

/// Why a request could not be copied at all. Counted by each mirror that would have copied it,
/// in `gateway_mirror_copies_total{outcome="not_eligible"}`. (A `CONNECT` tunnel is not one: no
/// mirror's methods ever take it, so no mirror would have copied it.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotEligible {
    /// An upgrade (WebSocket, any `Upgrade` protocol): a copy cannot hold a conversation.
    Upgrade = 0,
}

impl NotEligible {
    pub fn as_str(self) -> &'static str {
        match self {
            NotEligible::Upgrade => "upgrade",
        }
    }
}

impl ShadowOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowOutcome::Ok => "ok",
            ShadowOutcome::Timeout => "timeout",
            ShadowOutcome::Error => "error",
            ShadowOutcome::Dropped(_) => "dropped",
        }
    }
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::InFlightCap => "max_in_flight",
            DropReason::BodyOverCap => "body_over_cap",
            DropReason::BodyBackpressure => "body_backpressure",
            DropReason::ClientAborted => "client_aborted",
            DropReason::ShadowEjected => "shadow_ejected",
        }
    }
}

/// How far back the report looks when no verdict sets a window.
const DEFAULT_WINDOW: Duration = Duration::from_secs(600);
/// The window slides in steps of a sixth: evidence ages out a slot at a time, and a report
/// covers between five and six sixths of the window.
const SLOTS: usize = 6;
/// Latency pairs sampled per slot for the verdict's rank test (uniformly, by reservoir sampling).
const PAIRS_PER_SLOT: usize = 200;
/// Distinct mismatching fields counted per slot; more are counted as one "(other fields)".
const FIELDS_PER_SLOT: usize = 32;
/// The verdict behind `verdict_state` is recomputed at most this often as comparisons arrive.
const VERDICT_REFRESH: Duration = Duration::from_secs(1);

/// One mismatch as shown in the report.
#[derive(Debug, Clone, Serialize)]
pub struct MismatchRecord {
    /// Seconds since the Unix epoch.
    pub at: f64,
    pub method: String,
    pub path: String,
    pub request_id: String,
    pub trace_id: String,
    pub primary_status: u16,
    pub shadow_status: u16,
    pub differences: Vec<Difference>,
}

impl MismatchRecord {
    fn size(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        std::mem::size_of::<Self>()
            + self.method.len()
            + self.path.len()
            + self.request_id.len()
            + self.trace_id.len()
            + self.differences.iter().map(|d| d.field.len() + text(&d.primary) + text(&d.shadow) + 64).sum::<usize>()
    }
}

struct Recent {
    records: VecDeque<MismatchRecord>,
    bytes: usize,
}

/// Counters and samples of one mirror of one route.
pub struct MirrorStats {
    pub route: String,
    pub mirror: String,
    pub destination: String,
    comparing: AtomicBool,
    limits: Mutex<Option<Limits>>,
    /// The last verdict's state, by [`state_code`]; read by spans on every copy.
    verdict_state: AtomicU8,
    judged_at: Mutex<Option<Instant>>,
    sent: AtomicU64,
    ok: AtomicU64,
    timeout: AtomicU64,
    error: AtomicU64,
    dropped: [AtomicU64; 5],
    matched: AtomicU64,
    mismatched: AtomicU64,
    noise: AtomicU64,
    skipped: AtomicU64,
    window: Mutex<Window>,
    recent: Mutex<Recent>,
    max_records: usize,
    max_bytes: usize,
    metrics: MirrorMetrics,
}

/// This mirror's Prometheus series, registered once: counting a copy allocates nothing.
struct MirrorMetrics {
    sent: Counter,
    ok: Counter,
    timeout: Counter,
    error: Counter,
    /// By [`drop_index`].
    dropped: [Counter; 5],
    matched: Counter,
    mismatched: Counter,
    noise: Counter,
    skipped: Counter,
    latency_delta: Histogram,
    /// `gateway_mirror_verdict{state}`: 1 for the current state, 0 for the others (by `State::ALL`).
    verdict: [Gauge; 3],
    /// By `NotEligible` as an index; registered when first counted, so a mirror that never saw an
    /// upgrade shows no series for it.
    not_eligible: [std::sync::OnceLock<Counter>; 1],
    route: SharedString,
    mirror: SharedString,
}

impl MirrorMetrics {
    fn register(route: &str, mirror: &str) -> Self {
        let (route, mirror) = (SharedString::from(Arc::<str>::from(route)), SharedString::from(Arc::<str>::from(mirror)));
        let copies = |outcome: &'static str, reason: &'static str| metrics::counter!("gateway_mirror_copies_total", "route" => route.clone(), "mirror" => mirror.clone(), "outcome" => outcome, "reason" => reason);
        let compared = |result: &'static str| metrics::counter!("gateway_mirror_comparisons_total", "route" => route.clone(), "mirror" => mirror.clone(), "result" => result);
        let dropped = [
            DropReason::InFlightCap,
            DropReason::BodyOverCap,
            DropReason::BodyBackpressure,
            DropReason::ClientAborted,
            DropReason::ShadowEjected,
        ]
        .map(|reason| copies("dropped", reason.as_str()));
        Self {
            sent: metrics::counter!("gateway_mirror_copies_sent_total", "route" => route.clone(), "mirror" => mirror.clone()),
            ok: copies("ok", ""),
            timeout: copies("timeout", ""),
            error: copies("error", ""),
            dropped,
            matched: compared("match"),
            mismatched: compared("mismatch"),
            noise: compared("noise"),
            skipped: compared("skipped"),
            latency_delta: metrics::histogram!("gateway_mirror_latency_delta_seconds", "route" => route.clone(), "mirror" => mirror.clone()),
            verdict: State::ALL.map(|state| metrics::gauge!("gateway_mirror_verdict", "route" => route.clone(), "mirror" => mirror.clone(), "state" => state.as_str())),
            not_eligible: Default::default(),
            route,
            mirror,
        }
    }

    fn not_eligible(&self, reason: NotEligible) -> &Counter {
        self.not_eligible[reason as usize].get_or_init(|| {
            metrics::counter!("gateway_mirror_copies_total", "route" => self.route.clone(), "mirror" => self.mirror.clone(), "outcome" => "not_eligible", "reason" => reason.as_str())
        })
    }
}

/// `/mirrors` entry for one mirror.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorReport {
    pub route: String,
    pub mirror: String,
    pub destination: String,
    pub comparing: bool,
    pub copies: CopyCounts,
    pub comparison: ComparisonCounts,
    /// matched / (matched + mismatched); noise and skipped are not counted either way.
    pub match_rate: Option<f64>,
    /// Shadow minus primary response time, milliseconds, over the recent compared requests.
    pub latency_delta_ms: LatencyDelta,
    pub recent_mismatches: Vec<MismatchRecord>,
    /// The decision, when the mirror has a verdict (it compares, and `verdict` is not off).
    pub verdict: Option<Verdict>,
    /// What the verdict is decided on, over the window: counts and paired latency samples, so
    /// `gateway verdict` can add up several replicas' evidence before deciding.
    pub evidence: Evidence,
}

/// Both answers of one compared request, for the verdict.
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub primary_status: u16,
    pub shadow_status: u16,
    pub primary_latency: Duration,
    pub shadow_latency: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct CopyCounts {
    pub sent: u64,
    pub ok: u64,
    pub timeout: u64,
    pub error: u64,
    pub dropped: u64,
    pub dropped_max_in_flight: u64,
    pub dropped_body_over_cap: u64,
    pub dropped_body_backpressure: u64,
    pub dropped_client_aborted: u64,
    pub dropped_shadow_ejected: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComparisonCounts {
    pub matched: u64,
    pub mismatched: u64,
    pub noise: u64,
    pub skipped: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyDelta {
    /// Compared pairs in the window.
    pub samples: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    /// How far back the samples go (at most).
    pub window_seconds: u64,
}

fn drop_index(reason: DropReason) -> usize {
    match reason {
        DropReason::InFlightCap => 0,
        DropReason::BodyOverCap => 1,
        DropReason::BodyBackpressure => 2,
        DropReason::ClientAborted => 3,
        DropReason::ShadowEjected => 4,
    }
}

impl MirrorStats {
    pub fn new(route: &str, mirror: &str, destination: &str, settings: &ReportSettings) -> Self {
        Self {
            route: route.to_owned(),
            mirror: mirror.to_owned(),
            destination: destination.to_owned(),
            comparing: AtomicBool::new(false),
            limits: Mutex::new(None),
            verdict_state: AtomicU8::new(NO_VERDICT),
            judged_at: Mutex::new(None),
            sent: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            timeout: AtomicU64::new(0),
            error: AtomicU64::new(0),
            dropped: Default::default(),
            matched: AtomicU64::new(0),
            mismatched: AtomicU64::new(0),
            noise: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            window: Mutex::new(Window::new(DEFAULT_WINDOW)),
            recent: Mutex::new(Recent { records: VecDeque::new(), bytes: 0 }),
            max_records: settings.recent_mismatches,
            max_bytes: settings.max_bytes,
            metrics: MirrorMetrics::register(route, mirror),
        }
    }

    pub fn set_comparing(&self, on: bool) {
        self.comparing.store(on, Ordering::Relaxed);
    }

    /// The mirror's verdict configuration (after every load). A new window length starts the
    /// evidence afresh: it answers a different question.
    pub fn set_verdict(&self, spec: Option<&VerdictSpec>) {
        let limits = spec.map(Limits::from);
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
        let length = spec.map_or(DEFAULT_WINDOW, |spec| spec.window);
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if window.length != length {
            *window = Window::new(length);
        }
        drop(window);
        self.verdict();
    }

    /// The verdict's limits, when it has one.
    pub fn limits(&self) -> Option<Limits> {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The evidence one compared request adds to the verdict: its result, both statuses and
    /// both latencies. Noise and skipped results are not evidence and are ignored here.
    pub fn evidence(&self, result: &Classified, pair: &Pair) {
        let fields: Vec<&str> = match result {
            Classified::Match => Vec::new(),
            Classified::Mismatch(differences) => differences.iter().map(|d| d.field.as_str()).collect(),
            Classified::Noise(_) | Classified::Skipped(_) => return,
        };
        self.window.lock().unwrap_or_else(|p| p.into_inner()).current().record_pair(
            matches!(result, Classified::Mismatch(_)),
            &fields,
            pair,
        );
        let due = {
            let mut judged_at = self.judged_at.lock().unwrap_or_else(|p| p.into_inner());
            let due = judged_at.is_none_or(|at| at.elapsed() >= VERDICT_REFRESH);
            if due {
                *judged_at = Some(Instant::now());
            }
            due
        };
        if due {
            self.verdict();
        }
    }

    /// Judges the window's evidence now (and updates [`Self::verdict_state`] and the gauges).
    pub fn verdict(&self) -> Option<Verdict> {
        let limits = *self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let verdict = limits.map(|limits| verdict::judge(&limits, &self.window.lock().unwrap_or_else(|p| p.into_inner()).evidence()));
        let state = verdict.as_ref().map(|v| v.state);
        self.verdict_state.store(state.map_or(NO_VERDICT, state_code), Ordering::Relaxed);
        for (gauge, s) in self.metrics.verdict.iter().zip(State::ALL) {
            gauge.set(if Some(s) == state { 1.0 } else { 0.0 });
        }
        verdict
    }

    /// The state of the latest verdict (`pending`, `pass`, `fail`; `off` without one), as of at
    /// most a second ago while comparisons arrive: cheap enough for every copy's span
    /// (`mirror.verdict`).
    pub fn verdict_state(&self) -> &'static str {
        match self.verdict_state.load(Ordering::Relaxed) {
            NO_VERDICT => "off",
            code => State::ALL[usize::from(code)].as_str(),
        }
    }

    /// A copy was sent to the shadow.
    pub fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.metrics.sent.increment(1);
    }

    /// How a copy ended (sent or not).
    pub fn outcome(&self, outcome: ShadowOutcome) {
        let counter = match outcome {
            ShadowOutcome::Ok => &self.ok,
            ShadowOutcome::Timeout => &self.timeout,
            ShadowOutcome::Error => &self.error,
            ShadowOutcome::Dropped(reason) => &self.dropped[drop_index(reason)],
        };
        counter.fetch_add(1, Ordering::Relaxed);
        // A copy dropped because the shadow is ejected counts as unanswered: the shadow is down,
        // and not sending to it must not make it look healthier to the verdict.
        if matches!(outcome, ShadowOutcome::Timeout | ShadowOutcome::Error | ShadowOutcome::Dropped(DropReason::ShadowEjected)) {
            self.window.lock().unwrap_or_else(|p| p.into_inner()).current().evidence.shadow_failed += 1;
        }
        let handle = match outcome {
            ShadowOutcome::Ok => &self.metrics.ok,
            ShadowOutcome::Timeout => &self.metrics.timeout,
            ShadowOutcome::Error => &self.metrics.error,
            ShadowOutcome::Dropped(reason) => &self.metrics.dropped[drop_index(reason)],
        };
        handle.increment(1);
    }

    /// A request this mirror would have copied could not be (Prometheus only).
    pub fn not_eligible(&self, reason: NotEligible) {
        self.metrics.not_eligible(reason).increment(1);
    }

    /// A comparison result, with the latency delta of the pair (shadow minus primary).
    pub fn compared(&self, result: &Classified, latency_delta_ms: f64, record: impl FnOnce() -> Option<MismatchRecord>) {
        let counter = match result {
            Classified::Match => &self.matched,
            Classified::Mismatch(_) => &self.mismatched,
            Classified::Noise(_) => &self.noise,
            Classified::Skipped(_) => &self.skipped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let handle = match result {
            Classified::Match => &self.metrics.matched,
            Classified::Mismatch(_) => &self.metrics.mismatched,
            Classified::Noise(_) => &self.metrics.noise,
            Classified::Skipped(_) => &self.metrics.skipped,
        };
        handle.increment(1);
        if !matches!(result, Classified::Skipped(_)) {
            self.metrics.latency_delta.record(latency_delta_ms / 1e3);
            self.window.lock().unwrap_or_else(|p| p.into_inner()).current().record_delta(latency_delta_ms);
        }
        match result {
            Classified::Noise(_) => self.window.lock().unwrap_or_else(|p| p.into_inner()).current().evidence.noise += 1,
            Classified::Skipped(_) => self.window.lock().unwrap_or_else(|p| p.into_inner()).current().evidence.skipped += 1,
            Classified::Match | Classified::Mismatch(_) => {}
        }
        if matches!(result, Classified::Mismatch(_))
            && let Some(record) = record()
        {
            self.remember(record);
        }
    }

    fn remember(&self, record: MismatchRecord) {
        if self.max_records == 0 {
            return;
        }
        let size = record.size();
        if size > self.max_bytes {
            return;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.bytes += size;
        recent.records.push_back(record);
        while recent.records.len() > self.max_records || recent.bytes > self.max_bytes {
            match recent.records.pop_front() {
                Some(old) => recent.bytes -= old.size(),
                None => break,
            }
        }
    }

    pub fn report(&self) -> MirrorReport {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let dropped: Vec<u64> = self.dropped.iter().map(load).collect();
        let (matched, mismatched) = (load(&self.matched), load(&self.mismatched));
        let (deltas, evidence) = {
            let window = self.window.lock().unwrap_or_else(|p| p.into_inner());
            (window.deltas(), window.evidence())
        };
        let verdict = self.verdict();
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner()).records.iter().rev().cloned().collect();
        MirrorReport {
            route: self.route.clone(),
            mirror: self.mirror.clone(),
            destination: self.destination.clone(),
            comparing: self.comparing.load(Ordering::Relaxed),
            copies: CopyCounts {
                sent: load(&self.sent),
                ok: load(&self.ok),
                timeout: load(&self.timeout),
                error: load(&self.error),
                dropped: dropped.iter().sum(),
                dropped_max_in_flight: dropped[0],
                dropped_body_over_cap: dropped[1],
                dropped_body_backpressure: dropped[2],
                dropped_client_aborted: dropped[3],
                dropped_shadow_ejected: dropped[4],
            },
            comparison: ComparisonCounts { matched, mismatched, noise: load(&self.noise), skipped: load(&self.skipped) },
            match_rate: (matched + mismatched > 0).then(|| matched as f64 / (matched + mismatched) as f64),
            latency_delta_ms: LatencyDelta {
                samples: deltas.len(),
                p50: deltas.quantile(0.5),
                p99: deltas.quantile(0.99),
                window_seconds: deltas.window.as_secs(),
            },
            recent_mismatches: recent,
            verdict,
            evidence,
        }
    }
}

/// Recent evidence of one mirror in slots of `window / SLOTS`; a slot is cleared and reused
/// when its time comes round again, so memory is bounded whatever the traffic.
struct Window {
    length: Duration,
    origin: Instant,
    slots: Vec<Slot>,
}

struct Slot {
    /// Which `length / SLOTS` period since `origin` this slot holds.
    epoch: u64,
    /// Shadow-minus-primary latency in microseconds: the shadow slower (or equal), and faster
    /// (magnitudes), since a histogram holds no negative values.
    slower: Hdr<u32>,
    faster: Hdr<u32>,
    /// Counts, fields and a reservoir of at most `PAIRS_PER_SLOT` latency pairs.
    evidence: Evidence,
    /// Compared pairs offered to the reservoir.
    pairs_seen: u64,
}

impl Slot {
    fn new(epoch: u64) -> Self {
        // Two significant digits (1% precision) and auto-resizing from a small start: a few KiB.
        let histogram = || Hdr::new(2).expect("2 significant digits is a valid precision");
        Slot { epoch, slower: histogram(), faster: histogram(), evidence: Evidence::default(), pairs_seen: 0 }
    }

    fn clear(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.slower.reset();
        self.faster.reset();
        // Keep the reservoir's allocations for the slot's next period.
        let (mut primary_ms, mut shadow_ms) = (std::mem::take(&mut self.evidence.primary_ms), std::mem::take(&mut self.evidence.shadow_ms));
        primary_ms.clear();
        shadow_ms.clear();
        self.evidence = Evidence { primary_ms, shadow_ms, ..Evidence::default() };
        self.pairs_seen = 0;
    }

    fn record_pair(&mut self, mismatch: bool, fields: &[&str], pair: &Pair) {
        let e = &mut self.evidence;
        if mismatch {
            e.mismatched += 1;
        } else {
            e.matched += 1;
        }
        e.primary_5xx += u64::from(pair.primary_status >= 500);
        e.shadow_5xx += u64::from(pair.shadow_status >= 500);
        for field in fields {
            let known = e.fields.len() < FIELDS_PER_SLOT || e.fields.contains_key(*field);
            *e.fields.entry(if known { (*field).to_owned() } else { "(other fields)".to_owned() }).or_default() += 1;
        }
        // Algorithm R: every pair of the slot has the same chance to be in the sample.
        let (primary, shadow) = (pair.primary_latency.as_secs_f64() * 1e3, pair.shadow_latency.as_secs_f64() * 1e3);
        self.pairs_seen += 1;
        if e.primary_ms.len() < PAIRS_PER_SLOT {
            e.primary_ms.push(primary);
            e.shadow_ms.push(shadow);
        } else {
            let at = rand::random_range(0..self.pairs_seen) as usize;
            if at < PAIRS_PER_SLOT {
                (e.primary_ms[at], e.shadow_ms[at]) = (primary, shadow);
            }
        }
    }

    fn record_delta(&mut self, delta_ms: f64) {
        // Capped at an hour, far past any mirror timeout, so an auto-resize stays small.
        let micros = ((delta_ms.abs() * 1e3).round() as u64).min(3_600_000_000);
        let histogram = if delta_ms < 0.0 { &mut self.faster } else { &mut self.slower };
        // `record` grows the histogram as needed (`saturating_record` would clamp at its start size).
        let _ = histogram.record(micros);
    }
}

impl Window {
    fn new(length: Duration) -> Self {
        Window { length, origin: Instant::now(), slots: (0..SLOTS as u64).map(Slot::new).collect() }
    }

    fn epoch(&self) -> u64 {
        let step = (self.length / SLOTS as u32).max(Duration::from_millis(1));
        (self.origin.elapsed().as_nanos() / step.as_nanos()) as u64
    }

    /// The slot for now, cleared first if it still holds an older period.
    fn current(&mut self) -> &mut Slot {
        let epoch = self.epoch();
        let slot = &mut self.slots[(epoch % SLOTS as u64) as usize];
        if slot.epoch != epoch {
            slot.clear(epoch);
        }
        slot
    }

    /// The slots still inside the window.
    fn live(&self) -> impl Iterator<Item = &Slot> {
        let epoch = self.epoch();
        self.slots.iter().filter(move |slot| slot.epoch + SLOTS as u64 > epoch && slot.epoch <= epoch)
    }

    fn evidence(&self) -> Evidence {
        let mut evidence = Evidence::default();
        for slot in self.live() {
            evidence.merge(&slot.evidence);
        }
        evidence
    }

    fn deltas(&self) -> Deltas {
        let mut deltas = Deltas { slower: Slot::new(0).slower, faster: Slot::new(0).faster, window: self.length };
        for slot in self.live() {
            // Both auto-resize, so adding never fails for want of range.
            let _ = deltas.slower.add(&slot.slower);
            let _ = deltas.faster.add(&slot.faster);
        }
        deltas
    }
}

/// The window's latency deltas, merged.
struct Deltas {
    slower: Hdr<u32>,
    faster: Hdr<u32>,
    window: Duration,
}

impl Deltas {
    fn len(&self) -> u64 {
        self.slower.len() + self.faster.len()
    }

    /// The `q` quantile in milliseconds: ranks below the count of faster samples fall among
    /// them, most negative first.
    fn quantile(&self, q: f64) -> Option<f64> {
        let (faster, total) = (self.faster.len(), self.len());
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let micros = if rank <= faster {
            -(self.faster.value_at_quantile((faster - rank + 1) as f64 / faster as f64) as f64)
        } else {
            self.slower.value_at_quantile((rank - faster) as f64 / self.slower.len() as f64) as f64
        };
        Some(micros / 1e3)
    }
}

/// `verdict_state` when the mirror has no verdict.
const NO_VERDICT: u8 = u8::MAX;

fn state_code(state: State) -> u8 {
    State::ALL.iter().position(|s| *s == state).map_or(NO_VERDICT, |i| i as u8)
}

/// Seconds since the Unix epoch, for records.
pub fn now_epoch_seconds() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize, len: usize) -> MismatchRecord {
        MismatchRecord {
            at: 0.0,
            method: "GET".into(),
            path: format!("/{n}"),
            request_id: String::new(),
            trace_id: String::new(),
            primary_status: 200,
            shadow_status: 200,
            differences: vec![Difference { field: "$.a".into(), primary: Some("x".repeat(len)), shadow: None }],
        }
    }

    #[test]
    fn recent_mismatches_are_bounded_by_count_and_bytes() {
        let stats = MirrorStats::new("r", "m", "t/v2", &ReportSettings { recent_mismatches: 3, max_bytes: 4096 });
        let mismatch = Classified::Mismatch(Vec::new());
        for n in 0..10 {
            stats.compared(&mismatch, 1.0, || Some(record(n, 10)));
        }
        let report = stats.report();
        assert_eq!(report.recent_mismatches.len(), 3);
        assert_eq!(report.recent_mismatches[0].path, "/9", "newest first");
        for n in 0..10 {
            stats.compared(&mismatch, 1.0, || Some(record(n, 1500)));
        }
        let kept = stats.recent.lock().unwrap();
        assert!(kept.bytes <= 4096 && kept.records.len() <= 2, "{} bytes", kept.bytes);
    }

    #[test]
    fn match_rate_and_percentiles() {
        let stats = MirrorStats::new("r", "m", "t/v2", &ReportSettings { recent_mismatches: 3, max_bytes: 4096 });
        for delta in 1..=100 {
            let result = if delta % 4 == 0 { Classified::Mismatch(Vec::new()) } else { Classified::Match };
            stats.compared(&result, f64::from(delta), || None);
        }
        let report = stats.report();
        assert_eq!(report.match_rate, Some(0.75));
        assert_eq!(report.latency_delta_ms.samples, 100);
        // Histogram buckets are 1% wide: a quantile is exact to that precision.
        let near = |got: Option<f64>, want: f64| got.is_some_and(|got| (got - want).abs() <= want * 0.01);
        assert!(near(report.latency_delta_ms.p50, 50.0), "{:?}", report.latency_delta_ms);
        assert!(near(report.latency_delta_ms.p99, 99.0), "{:?}", report.latency_delta_ms);
    }

    #[test]
    fn percentiles_span_a_faster_and_a_slower_shadow() {
        let stats = MirrorStats::new("r", "m", "t/v2", &ReportSettings { recent_mismatches: 3, max_bytes: 4096 });
        for delta in -50..50 {
            stats.compared(&Classified::Match, f64::from(delta), || None);
        }
        let report = stats.report();
        let near = |got: Option<f64>, want: f64| got.is_some_and(|got| (got - want).abs() <= want.abs() * 0.01 + 1e-9);
        assert!(near(report.latency_delta_ms.p50, -1.0), "{:?}", report.latency_delta_ms);
        assert!(near(report.latency_delta_ms.p99, 48.0), "{:?}", report.latency_delta_ms);
    }

    fn pair(status: u16, ms: u64) -> Pair {
        let latency = Duration::from_millis(ms);
        Pair { primary_status: 200, shadow_status: status, primary_latency: latency, shadow_latency: latency }
    }

    #[test]
    fn only_compared_pairs_are_verdict_evidence() {
        let stats = MirrorStats::new("r", "m", "t/v2", &ReportSettings { recent_mismatches: 3, max_bytes: 4096 });
        assert_eq!(stats.verdict_state(), "off");
        stats.set_verdict(Some(&VerdictSpec { min_compared: 10, ..VerdictSpec::default() }));
        assert_eq!(stats.verdict_state(), "pending");
        for _ in 0..1000 {
            let noise = Classified::Noise(vec!["$.seq".to_owned()]);
            stats.compared(&noise, 1.0, || None);
            stats.evidence(&noise, &pair(500, 1));
            let skipped = Classified::Skipped(response_diff::SkipReason::Incomplete("test"));
            stats.compared(&skipped, 0.0, || None);
            stats.evidence(&skipped, &pair(500, 1));
        }
        let report = stats.report();
        assert_eq!((report.evidence.compared(), report.evidence.noise, report.evidence.skipped), (0, 1000, 1000));
        assert_eq!(report.evidence.shadow_5xx, 0);
        assert_eq!(report.verdict.unwrap().state, State::Pending);
        for i in 0..1000 {
            stats.evidence(&Classified::Match, &pair(200, 1 + i % 19));
        }
        let verdict = stats.verdict().unwrap();
        assert_eq!(verdict.state, State::Pass, "{:?}", verdict.reasons);
        assert_eq!(stats.verdict_state(), "pass");
        let report = stats.report();
        assert_eq!(report.evidence.compared(), 1000);
        assert_eq!(report.evidence.primary_ms.len(), PAIRS_PER_SLOT, "the latency sample is bounded");
        let mismatch = Classified::Mismatch(vec![Difference { field: "$.price".into(), primary: None, shadow: None }]);
        for i in 0..100 {
            stats.evidence(&mismatch, &pair(200, 1 + i % 19));
        }
        let verdict = stats.verdict().unwrap();
        assert_eq!(verdict.state, State::Fail);
        assert!(verdict.reasons[0].contains("$.price (100)"), "{:?}", verdict.reasons);
        stats.set_verdict(None);
        assert_eq!((stats.verdict_state(), stats.verdict()), ("off", None));
    }

    #[test]
    fn old_latencies_age_out_of_the_window() {
        let mut window = Window::new(Duration::from_millis(60));
        window.current().record_delta(5.0);
        window.current().record_pair(true, &["$.a"], &pair(200, 3));
        assert_eq!(window.deltas().len(), 1);
        assert_eq!(window.evidence().mismatched, 1);
        // Wait on the window's own clock, not a guess: once its epoch has moved a whole window on.
        let start = window.epoch();
        while window.epoch() < start + SLOTS as u64 {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(window.deltas().len(), 0);
        assert_eq!(window.evidence(), Evidence::default());
        window.current().record_delta(7.0);
        assert!(window.deltas().quantile(0.5).is_some_and(|p50| (p50 - 7.0).abs() < 0.07), "only the new sample, to 1%");
    }
}
