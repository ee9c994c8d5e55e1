//! The evidence window of one mirror: what the verdict is decided on and the latency deltas the
//! report shows, over the last `length` only, in slots of `length / SLOTS`. A slot is cleared
//! and reused when its time comes round again, so memory is bounded whatever the traffic. Every
//! method is given the time: the window reads no clock.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram as Hdr;

use crate::verdict::Evidence;

/// The window slides in steps of a sixth: evidence ages out a slot at a time, and a report
/// covers between five and six sixths of the window.
const SLOTS: usize = 6;
/// Latency pairs sampled per slot for the verdict's rank test (uniformly, by reservoir sampling).
pub(super) const PAIRS_PER_SLOT: usize = 200;
/// Distinct mismatching fields counted per slot; more are counted as one "(other fields)".
const FIELDS_PER_SLOT: usize = 32;

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

/// What one slot records.
pub enum Sample<'a> {
    /// A compared pair: matched or not (then on which fields), both statuses and latencies.
    Pair {
        mismatch: bool,
        fields: &'a [&'a str],
        pair: &'a Pair,
    },
    /// Shadow minus primary latency of a comparison (noise included, skipped not).
    Delta {
        ms: f64,
    },
    /// A copy the shadow never answered: a shadow error for the verdict.
    ShadowFailed,
    /// Not evidence, counted so a reader knows what was left out.
    Noise,
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
            Sample::Pair { mismatch, fields, pair } => record_pair(slot, mismatch, fields, pair),
            Sample::Delta { ms } => record_delta(slot, ms),
            Sample::ShadowFailed => slot.evidence.shadow_failed += 1,
            Sample::Noise => slot.evidence.noise += 1,
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

fn record_pair(slot: &mut Slot, mismatch: bool, fields: &[&str], pair: &Pair) {
    let e = &mut slot.evidence;
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
        window.record(t0, Sample::Pair { mismatch: true, fields: &["$.a"], pair: &pair(200, 3) });
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
}
