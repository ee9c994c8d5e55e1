//! Learning which fields differ even between two answers of the primary (Diffy-style noise), as
//! a property of the field, with its evidence per path pattern.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::pattern::path_pattern;
use crate::{Change, Comparison, Difference, SkipReason};

/// A field that differed between two primary answers on this many path patterns is noise on every
/// pattern, unless a pattern's own evidence says otherwise.
pub const NOISE_EVERYWHERE_AFTER_PATTERNS: usize = 3;
/// A pattern whose primary was compared with itself this many times without the field differing
/// keeps the field compared, even when it is noise elsewhere.
pub const STABLE_AFTER_SAMPLES: u64 = 8;
/// Requests per new path pattern that [`NoiseFilter::wants_sample`] asks to learn from before
/// leaving it to the configured share.
pub const WARM_UP_SAMPLES: u32 = 3;
/// The patterns a field keeps evidence for; past that it still counts its samples, and new
/// patterns follow the "noise everywhere" rule.
const PATTERNS_PER_FIELD: usize = 64;

/// A comparison after known noise was taken out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Classified {
    /// Nothing differs.
    Match,
    /// These fields differ and are not known noise.
    Mismatch(Vec<Difference>),
    /// Every differing field is known noise: these ones.
    Noise(Vec<String>),
    /// The responses could not be compared.
    Skipped(SkipReason),
}

impl Classified {
    /// A short fixed name for metrics labels and logs: `match`, `mismatch`, `noise`, `skipped`.
    pub fn label(&self) -> &'static str {
        match self {
            Classified::Match => "match",
            Classified::Mismatch(_) => "mismatch",
            Classified::Noise(_) => "noise",
            Classified::Skipped(_) => "skipped",
        }
    }
}

/// One field learned as noise on one path pattern, and from how many samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedNoise {
    /// The request path pattern it was learned on ([`path_pattern`]).
    pub pattern: String,
    pub field: String,
    /// A changed value, or a field one answer had and the other did not.
    pub change: Change,
    /// How many primary-against-primary comparisons on this pattern showed it differing.
    pub samples: u64,
}

/// One noisy field with its evidence across patterns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseField {
    pub field: String,
    pub change: Change,
    /// Primary-against-primary comparisons that showed it differing, on any pattern.
    pub samples: u64,
    /// Path patterns it differed on (counted up to a bound).
    pub patterns: usize,
    /// Noise on every pattern, not only where it was seen (it was seen on
    /// [`NOISE_EVERYWHERE_AFTER_PATTERNS`] patterns or more).
    pub everywhere: bool,
}

/// What the noise store holds and whether it had to stop learning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseSummary {
    pub fields: Vec<NoiseField>,
    /// Path patterns with learning evidence.
    pub patterns: usize,
    /// The store holds as many fields as it may: new fields are no longer learned.
    pub full: bool,
    /// Differences of new fields not learned because the store was full.
    pub not_learned: u64,
}

/// The fields known to differ between two answers of the primary to the same request.
///
/// Fed by [`NoiseFilter::learn`] with comparisons of primary against primary-again, consulted by
/// [`NoiseFilter::classify`] for primary against shadow. A field is noise on a path pattern from
/// its first differing sample there; a field that differed on
/// [`NOISE_EVERYWHERE_AFTER_PATTERNS`] patterns is noise on every pattern (`$.query_ms` learned
/// on three endpoints need not be learned again on the forty-first) unless that pattern's own
/// primary was compared with itself [`STABLE_AFTER_SAMPLES`] times without the field differing.
/// A changed value and a field present on one side only are learned apart: a timing that
/// changes on every answer says nothing of the timing disappearing.
///
/// Shared between requests (`&self` methods); a plain mutex is enough as the critical sections
/// are short. Bounded by fields: at most `max_fields` fields, each with evidence for at most 64
/// patterns, and at most `4 * max_fields` patterns (at least 256); once full, new fields are
/// counted as not learned ([`NoiseSummary`]).
#[derive(Debug)]
pub struct NoiseFilter {
    max_fields: usize,
    max_patterns: usize,
    store: Mutex<Store>,
    /// Comparisons that had differences, all of them known noise.
    reclassified: AtomicU64,
}

#[derive(Debug, Default)]
struct Store {
    patterns: HashMap<String, PatternEvidence>,
    fields: HashMap<String, FieldEvidence>,
    not_learned: u64,
}

#[derive(Debug, Default)]
struct PatternEvidence {
    /// Primary-against-primary comparisons learned from on this pattern.
    learned: u64,
    /// Samples asked for by [`NoiseFilter::wants_sample`].
    asked: u32,
}

#[derive(Debug, Default)]
struct FieldEvidence {
    value: Evidence,
    presence: Evidence,
}

impl FieldEvidence {
    fn of(&self, change: Change) -> &Evidence {
        match change {
            Change::Value => &self.value,
            Change::Presence => &self.presence,
        }
    }

    fn of_mut(&mut self, change: Change) -> &mut Evidence {
        match change {
            Change::Value => &mut self.value,
            Change::Presence => &mut self.presence,
        }
    }
}

#[derive(Debug, Default)]
struct Evidence {
    samples: u64,
    by_pattern: HashMap<String, u64>,
}

impl Evidence {
    fn everywhere(&self) -> bool {
        self.by_pattern.len() >= NOISE_EVERYWHERE_AFTER_PATTERNS
    }
}

impl NoiseFilter {
    /// A filter that will learn at most `max_fields` noisy fields.
    pub fn new(max_fields: usize) -> Self {
        NoiseFilter {
            max_fields,
            max_patterns: max_fields.saturating_mul(4).max(256),
            store: Mutex::new(Store::default()),
            reclassified: AtomicU64::new(0),
        }
    }

    /// Learns from comparing the primary with itself on a request to `path`: every differing
    /// field is noise on that path's pattern, and a sample of evidence for it.
    pub fn learn(&self, path: &str, first: &Comparison) {
        let differences = match first {
            Comparison::Skipped(_) => return,
            Comparison::Match => &[][..],
            Comparison::Mismatch(differences) => differences.as_slice(),
        };
        let pattern = path_pattern(path);
        let mut store = self.lock();
        let store = &mut *store;
        let room = store.patterns.len() < self.max_patterns;
        match store.patterns.get_mut(&pattern) {
            Some(known) => known.learned += 1,
            None if room => {
                store.patterns.insert(pattern.clone(), PatternEvidence { learned: 1, asked: 0 });
            }
            None => {}
        }
        for difference in differences {
            let room = store.fields.len() < self.max_fields;
            let evidence = match store.fields.get_mut(difference.field.as_str()) {
                Some(known) => known,
                None if room => store.fields.entry(difference.field.clone()).or_default(),
                None => {
                    store.not_learned += 1;
                    continue;
                }
            };
            let evidence = evidence.of_mut(difference.change());
            evidence.samples += 1;
            let room = evidence.by_pattern.len() < PATTERNS_PER_FIELD;
            match evidence.by_pattern.entry(pattern.clone()) {
                Entry::Occupied(mut known) => *known.get_mut() += 1,
                Entry::Vacant(new) if room => {
                    new.insert(1);
                }
                Entry::Vacant(_) => {}
            }
        }
    }

    /// Whether a request to `path` should be sent to the primary twice to learn from, beyond the
    /// configured share: yes for the first [`WARM_UP_SAMPLES`] requests of each path pattern
    /// (while the pattern table has room), so that noise is known before it is counted as
    /// mismatches. Each `true` is counted as asked.
    pub fn wants_sample(&self, path: &str) -> bool {
        let pattern = path_pattern(path);
        let mut store = self.lock();
        let room = store.patterns.len() < self.max_patterns;
        match store.patterns.get_mut(&pattern) {
            Some(known) if known.asked < WARM_UP_SAMPLES => {
                known.asked += 1;
                true
            }
            Some(_) => false,
            None if room => {
                store.patterns.insert(pattern, PatternEvidence { learned: 0, asked: 1 });
                true
            }
            None => false,
        }
    }

    /// Drops the differences that are known noise on `path`'s pattern from a mismatch; a mismatch
    /// left empty is [`Classified::Noise`] (and counted as reclassified).
    pub fn classify(&self, path: &str, comparison: Comparison) -> Classified {
        self.split(path, comparison).0
    }

    /// [`Self::classify`], with the differences it took out as known noise beside the result
    /// (those of a [`Classified::Noise`], and those left out of a [`Classified::Mismatch`]): a
    /// verdict compares how often the shadow differs on a noisy field with how often the
    /// primary differs from itself on it.
    pub fn split(&self, path: &str, comparison: Comparison) -> (Classified, Vec<Difference>) {
        match comparison {
            Comparison::Match => (Classified::Match, Vec::new()),
            Comparison::Skipped(reason) => (Classified::Skipped(reason), Vec::new()),
            Comparison::Mismatch(differences) => {
                let pattern = path_pattern(path);
                let store = self.lock();
                let (noise, real): (Vec<Difference>, Vec<Difference>) = differences.into_iter().partition(|d| store.is_noise(&pattern, d));
                drop(store);
                if real.is_empty() {
                    self.reclassified.fetch_add(1, Ordering::Relaxed);
                    (Classified::Noise(noise.iter().map(|d| d.field.clone()).collect()), noise)
                } else {
                    (Classified::Mismatch(real), noise)
                }
            }
        }
    }

    /// The learned noisy fields per pattern, sorted by pattern, field, change.
    pub fn learned(&self) -> Vec<LearnedNoise> {
        let store = self.lock();
        let mut learned = Vec::new();
        for (field, evidence) in &store.fields {
            for change in [Change::Value, Change::Presence] {
                for (pattern, samples) in &evidence.of(change).by_pattern {
                    learned.push(LearnedNoise { pattern: pattern.clone(), field: field.clone(), change, samples: *samples });
                }
            }
        }
        learned.sort_by(|a, b| (&a.pattern, &a.field, a.change).cmp(&(&b.pattern, &b.field, b.change)));
        learned
    }

    /// The learned noisy fields, whatever their pattern, sorted and without repeats.
    pub fn fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = self.lock().fields.keys().cloned().collect();
        fields.sort();
        fields
    }

    /// Every noisy field with its evidence across patterns, and whether the store is full.
    pub fn summary(&self) -> NoiseSummary {
        let store = self.lock();
        let mut fields = Vec::new();
        for (field, evidence) in &store.fields {
            for change in [Change::Value, Change::Presence] {
                let e = evidence.of(change);
                if e.samples > 0 {
                    fields.push(NoiseField {
                        field: field.clone(),
                        change,
                        samples: e.samples,
                        patterns: e.by_pattern.len(),
                        everywhere: e.everywhere(),
                    });
                }
            }
        }
        fields.sort_by(|a, b| (&a.field, a.change).cmp(&(&b.field, b.change)));
        NoiseSummary { fields, patterns: store.patterns.len(), full: store.fields.len() >= self.max_fields, not_learned: store.not_learned }
    }

    /// How many comparisons were mismatches made only of known noise.
    pub fn reclassified(&self) -> u64 {
        self.reclassified.load(Ordering::Relaxed)
    }

    /// A panic elsewhere while holding the lock leaves a store that is still valid: keep using it.
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store {
    fn is_noise(&self, pattern: &str, difference: &Difference) -> bool {
        let Some(evidence) = self.fields.get(difference.field.as_str()) else {
            return false;
        };
        let evidence = evidence.of(difference.change());
        if evidence.by_pattern.contains_key(pattern) {
            return true;
        }
        // Noise on several patterns: here too, unless this pattern's primary was compared with
        // itself often enough without it differing.
        let learned_here = self.patterns.get(pattern).map_or(0, |p| p.learned);
        evidence.everywhere() && learned_here < STABLE_AFTER_SAMPLES
    }
}
