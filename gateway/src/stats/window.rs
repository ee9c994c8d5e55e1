//! The evidence window of one mirror: what the verdict is decided on and the latency deltas the
//! report shows, over the last `length` only, in slots of `length / SLOTS`. A slot is cleared
//! and reused when its time comes round again, so memory is bounded whatever the traffic. Every
//! method is given the time: the window reads no clock.

use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use hdrhistogram::Histogram as Hdr;
use response_diff::{Classified, Difference};

use crate::verdict::{Evidence, FieldCounts, FieldExample, PatternCounts};

/// The window slides in steps of a sixth: evidence ages out a slot at a time, and a report
/// covers between five and six sixths of the window.
const SLOTS: usize = 6;
/// Latency pairs sampled per slot for the verdict's rank test (uniformly, by reservoir sampling).
pub(super) const PAIRS_PER_SLOT: usize = 200;
/// Distinct fields (array indices written `[*]`) counted per slot. A new one past that takes
/// the place of the least counted (space-saving: every count keeps a name, and says by how much
/// it may be over).
const FIELDS_PER_SLOT: usize = 64;
/// Distinct path patterns counted per slot, bounded the same way.
const PATTERNS_PER_SLOT: usize = 64;

/// Both answers of one compared request, for the verdict.
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub primary_status: u16,
    pub shadow_status: u16,
    pub primary_latency: Duration,
    pub shadow_latency: Duration,
}

pub struct EvidenceWindow {
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
}

/// One compared request as the verdict sees it.
pub struct Observation<'a> {
    pub method: &'a str,
    /// The request's path (and query).
    pub path: &'a str,
    /// Primary against shadow, learned noise taken out.
    pub result: &'a Classified,
    /// The differences taken out as learned noise.
    pub noise: &'a [Difference],
    /// The primary against a second answer of its own to this request, when the noise share
    /// picked it at random: its differences.
    pub primary_again: Option<&'a [Difference]>,
    pub pair: Pair,
}

impl<'a> Observation<'a> {
    /// A `GET /` with `result` and nothing else (tests).
    #[cfg(test)]
    pub fn of(result: &'a Classified, pair: Pair) -> Self {
        Observation { method: "GET", path: "/", result, noise: &[], primary_again: None, pair }
    }
}

/// What one slot records.
pub enum Sample<'a> {
    /// A compared pair: what differed (beyond noise, in noise), both statuses and latencies.
    Pair(&'a Observation<'a>),
    /// Shadow minus primary latency of a comparison (noise included, skipped not).
    Delta { ms: f64 },
    /// A copy the shadow never answered: a shadow error for the verdict.
    ShadowFailed,
    /// Not evidence, counted so a reader knows what was left out.
    Skipped,
}

impl EvidenceWindow {
    pub fn new(length: Duration, now: Instant) -> Self {
        EvidenceWindow { length, origin: now, slots: (0..SLOTS as u64).map(Slot::new).collect() }
    }

    pub fn length(&self) -> Duration {
        self.length
    }

    fn epoch(&self, now: Instant) -> u64 {
        let step = (self.length / SLOTS as u32).max(Duration::from_millis(1));
        (now.saturating_duration_since(self.origin).as_nanos() / step.as_nanos()) as u64
    }

    /// Adds `sample` to the slot of `now` (cleared first if it still holds an older period).
    pub fn record(&mut self, now: Instant, sample: Sample<'_>) {
        let epoch = self.epoch(now);
        let slot = &mut self.slots[(epoch % SLOTS as u64) as usize];
        if slot.epoch != epoch {
            slot.clear(epoch);
        }
        match sample {
            Sample::Pair(observation) => record_pair(slot, observation),
            Sample::Delta { ms } => record_delta(slot, ms),
            Sample::ShadowFailed => slot.evidence.shadow_failed += 1,
            Sample::Skipped => slot.evidence.skipped += 1,
        }
    }

    /// The slots still inside the window at `now`.
    fn live(&self, now: Instant) -> impl Iterator<Item = &Slot> {
        let epoch = self.epoch(now);
        self.slots.iter().filter(move |slot| slot.epoch + SLOTS as u64 > epoch && slot.epoch <= epoch)
    }

    /// The evidence of the window, as of `now`.
    pub fn evidence(&self, now: Instant) -> Evidence {
        let mut evidence = Evidence::default();
        for slot in self.live(now) {
            evidence.merge(&slot.evidence);
        }
        evidence
    }

    /// The latency deltas of the window, as of `now`.
    pub fn deltas(&self, now: Instant) -> Deltas {
        let mut deltas = Deltas { slower: Slot::new(0).slower, faster: Slot::new(0).faster, window: self.length };
        for slot in self.live(now) {
            // Both auto-resize, so adding never fails for want of range.
            let _ = deltas.slower.add(&slot.slower);
            let _ = deltas.faster.add(&slot.faster);
        }
        deltas
    }
}

fn record_pair(slot: &mut Slot, observation: &Observation<'_>) {
    let e = &mut slot.evidence;
    let pattern = response_diff::path_pattern(observation.path.split('?').next().unwrap_or_default());
    let pattern = bounded_entry(
        &mut e.patterns,
        &pattern,
        PATTERNS_PER_SLOT,
        |c: &PatternCounts| c.compared,
        |c, from| {
            c.compared = from.compared;
            c.overcount = from.compared;
        },
    );
    pattern.compared += 1;
    let real: &[Difference] = match observation.result {
        Classified::Match => {
            e.matched += 1;
            &[]
        }
        Classified::Noise(_) => {
            e.noise += 1;
            pattern.noise += 1;
            &[]
        }
        Classified::Mismatch(differences) => {
            e.mismatched += 1;
            pattern.mismatched += 1;
            differences
        }
        Classified::Skipped(_) => return,
    };
    let pair = &observation.pair;
    e.primary_5xx += u64::from(pair.primary_status >= 500);
    e.shadow_5xx += u64::from(pair.shadow_status >= 500);
    for (differences, is_real) in [(real, true), (observation.noise, false)] {
        for difference in differences {
            let counts = field_entry(&mut e.fields, &difference.field);
            counts.shadow += 1;
            counts.real += u64::from(is_real);
            if counts.example.is_none() {
                counts.example = Some(FieldExample {
                    method: observation.method.to_owned(),
                    path: observation.path.to_owned(),
                    field: difference.field.clone(),
                    primary: difference.primary.clone(),
                    shadow: difference.shadow.clone(),
                });
            }
        }
    }
    if let Some(again) = observation.primary_again {
        e.primary_compared += 1;
        for difference in again {
            field_entry(&mut e.fields, &difference.field).primary += 1;
        }
    }
    // Algorithm R: every pair of the slot has the same chance to be in the sample.
    let (primary, shadow) = (pair.primary_latency.as_secs_f64() * 1e3, pair.shadow_latency.as_secs_f64() * 1e3);
    slot.pairs_seen += 1;
    if e.primary_ms.len() < PAIRS_PER_SLOT {
        e.primary_ms.push(primary);
        e.shadow_ms.push(shadow);
    } else {
        let at = rand::random_range(0..slot.pairs_seen) as usize;
        if at < PAIRS_PER_SLOT {
            (e.primary_ms[at], e.shadow_ms[at]) = (primary, shadow);
        }
    }
}

/// The counts of `field` (its family: array indices as `[*]`), made room for if new.
fn field_entry<'m>(fields: &'m mut BTreeMap<String, FieldCounts>, field: &str) -> &'m mut FieldCounts {
    let family = field_family(field);
    bounded_entry(
        fields,
        &family,
        FIELDS_PER_SLOT,
        |c: &FieldCounts| c.shadow + c.primary,
        |c, from| {
            // Space-saving: the newcomer may have been among the replaced one's counts.
            c.shadow = from.shadow;
            c.real = from.real;
            c.overcount = from.shadow.max(from.primary);
        },
    )
}

/// `map[key]`, made if new; when the map already holds `bound` keys, the least counted one (by
/// `count`; never `status`) is replaced, its counts given to the newcomer by `inherit`.
fn bounded_entry<'m, V: Default>(
    map: &'m mut BTreeMap<String, V>,
    key: &str,
    bound: usize,
    count: impl Fn(&V) -> u64,
    inherit: impl FnOnce(&mut V, &V),
) -> &'m mut V {
    if !map.contains_key(key) && map.len() >= bound {
        let least = map.iter().filter(|(k, _)| k.as_str() != "status").min_by_key(|(_, v)| count(v)).map(|(k, _)| k.clone());
        if let Some(least) = least
            && let Some(replaced) = map.remove(&least)
        {
            let mut newcomer = V::default();
            inherit(&mut newcomer, &replaced);
            map.insert(key.to_owned(), newcomer);
        }
    }
    map.entry(key.to_owned()).or_default()
}

/// A field's family: every array index written `[*]` (`$.rows[3][2]` is `$.rows[*][*]`): a
/// change in the rows of a table is one change whatever row it shows in.
pub fn field_family(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(']') {
            out.push('*');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

fn record_delta(slot: &mut Slot, delta_ms: f64) {
    // Capped at an hour, far past any mirror timeout, so an auto-resize stays small.
    let micros = ((delta_ms.abs() * 1e3).round() as u64).min(3_600_000_000);
    let histogram = if delta_ms < 0.0 { &mut slot.faster } else { &mut slot.slower };
    // `record` grows the histogram as needed (`saturating_record` would clamp at its start size).
    let _ = histogram.record(micros);
}

/// The window's latency deltas, merged.
pub struct Deltas {
    slower: Hdr<u32>,
    faster: Hdr<u32>,
    pub window: Duration,
}

impl Deltas {
    /// Samples in the window.
    pub fn samples(&self) -> u64 {
        self.slower.len() + self.faster.len()
    }

    /// The `q` quantile in milliseconds: ranks below the count of faster samples fall among
    /// them, most negative first.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let (faster, total) = (self.faster.len(), self.samples());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(status: u16, ms: u64) -> Pair {
        let latency = Duration::from_millis(ms);
        Pair { primary_status: 200, shadow_status: status, primary_latency: latency, shadow_latency: latency }
    }

    #[test]
    fn old_latencies_age_out_of_the_window() {
        let t0 = Instant::now();
        let mut window = EvidenceWindow::new(Duration::from_millis(60), t0);
        window.record(t0, Sample::Delta { ms: 5.0 });
        let mismatch = Classified::Mismatch(vec![Difference { field: "$.a".into(), primary: None, shadow: None }]);
        window.record(t0, Sample::Pair(&Observation::of(&mismatch, pair(200, 3))));
        assert_eq!(window.deltas(t0).samples(), 1);
        assert_eq!(window.evidence(t0).mismatched, 1);
        // Still inside the window five sixths of it later, gone once it has moved a whole window on.
        let later = t0 + Duration::from_millis(50);
        assert_eq!((window.deltas(later).samples(), window.evidence(later).mismatched), (1, 1));
        let gone = t0 + Duration::from_millis(60);
        assert_eq!(window.deltas(gone).samples(), 0);
        assert_eq!(window.evidence(gone), Evidence::default());
        window.record(gone, Sample::Delta { ms: 7.0 });
        assert!(window.deltas(gone).quantile(0.5).is_some_and(|p50| (p50 - 7.0).abs() < 0.07), "only the new sample, to 1%");
    }

    fn difference(field: &str) -> Difference {
        Difference { field: field.into(), primary: Some("1".into()), shadow: Some("2".into()) }
    }

    #[test]
    fn fields_are_counted_by_family_beyond_noise_in_noise_and_on_the_primary() {
        let t0 = Instant::now();
        let mut window = EvidenceWindow::new(Duration::from_secs(60), t0);
        let real = Classified::Mismatch(vec![difference("$.rows[3][2]"), difference("status")]);
        let noise = [difference("$.query_ms")];
        let again = [difference("$.query_ms")];
        let observation = Observation {
            method: "GET",
            path: "/shop/customers/12.json?_shape=array",
            result: &real,
            noise: &noise,
            primary_again: Some(&again),
            pair: pair(200, 1),
        };
        window.record(t0, Sample::Pair(&observation));
        let only_noise = Classified::Noise(vec!["$.query_ms".into()]);
        window.record(
            t0,
            Sample::Pair(&Observation { result: &only_noise, primary_again: None, path: "/shop/customers/7.json", ..observation }),
        );
        let e = window.evidence(t0);
        assert_eq!((e.matched, e.mismatched, e.noise, e.primary_compared), (0, 1, 1, 1));
        let rows = &e.fields["$.rows[*][*]"];
        assert_eq!((rows.shadow, rows.real, rows.primary), (1, 1, 0));
        let example = rows.example.as_ref().unwrap();
        assert_eq!((example.field.as_str(), example.path.as_str()), ("$.rows[3][2]", "/shop/customers/12.json?_shape=array"));
        let timing = &e.fields["$.query_ms"];
        assert_eq!((timing.shadow, timing.real, timing.primary), (2, 0, 1), "noise counted on both comparisons");
        let pattern = &e.patterns["/shop/customers/{id}.json"];
        assert_eq!((pattern.compared, pattern.mismatched, pattern.noise), (2, 1, 1));
        assert_eq!(pattern.match_rate(), Some(0.5));
    }

    #[test]
    fn past_the_bound_a_new_field_replaces_the_least_counted_and_keeps_a_name() {
        let t0 = Instant::now();
        let mut window = EvidenceWindow::new(Duration::from_secs(60), t0);
        let mut record = |fields: &[&str]| {
            let result = Classified::Mismatch(fields.iter().map(|f| difference(f)).collect());
            window.record(t0, Sample::Pair(&Observation::of(&result, pair(200, 1))));
        };
        record(&["status"]);
        for i in 0..FIELDS_PER_SLOT {
            let name = format!("$.f{i}");
            record(&[&name, &name]);
        }
        record(&["$.new"]);
        let e = window.evidence(t0);
        assert_eq!(e.fields.len(), FIELDS_PER_SLOT);
        assert!(e.fields.contains_key("status"), "status is never replaced");
        assert!(e.fields.keys().all(|f| !f.contains("other")), "{:?}", e.fields.keys());
        let new = &e.fields["$.new"];
        assert_eq!((new.shadow, new.overcount), (3, 2), "may be over by the replaced one's count");
    }

    #[test]
    fn a_field_family_writes_indices_as_stars() {
        assert_eq!(field_family("$.rows[3][12].city"), "$.rows[*][*].city");
        assert_eq!(field_family("body:text[Queries took {}]"), "body:text[Queries took {}]");
        assert_eq!(field_family("header:vary"), "header:vary");
    }
}
