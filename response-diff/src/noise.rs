//! Learning which fields differ even between two answers of the primary (Diffy-style noise).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::{Comparison, Difference, SkipReason};

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

/// One field learned as noise, where, and from how many samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedNoise {
    /// The request path pattern it was learned on ([`path_pattern`]).
    pub pattern: String,
    pub field: String,
    /// How many primary-against-primary comparisons showed it differing.
    pub samples: u64,
}

/// The fields known to differ between two answers of the primary to the same request, per path
/// pattern: `$.seq` noisy on `/orders/{id}` says nothing of `/prices`.
///
/// Fed by [`NoiseFilter::learn`] with comparisons of primary against primary-again, consulted by
/// [`NoiseFilter::classify`] for primary against shadow: a field is noise from its first sample
/// on. Shared between requests (`&self` methods); a plain mutex is enough as learning is off the
/// request path and the critical sections are short. Bounded: once `max_fields` (pattern, field)
/// pairs are known, new ones are not learned.
#[derive(Debug)]
pub struct NoiseFilter {
    max_fields: usize,
    fields: Mutex<HashMap<(String, String), u64>>,
    /// Comparisons that had differences, all of them known noise.
    reclassified: AtomicU64,
}

impl NoiseFilter {
    /// A filter that will learn at most `max_fields` noisy fields.
    pub fn new(max_fields: usize) -> Self {
        NoiseFilter { max_fields, fields: Mutex::new(HashMap::new()), reclassified: AtomicU64::new(0) }
    }

    /// Learns from comparing the primary with itself on a request to `path`: every differing
    /// field becomes noise for that path's pattern.
    pub fn learn(&self, path: &str, first: &Comparison) {
        let Comparison::Mismatch(differences) = first else {
            return;
        };
        let pattern = path_pattern(path);
        let mut fields = self.lock();
        for difference in differences {
            let key = (pattern.clone(), difference.field.clone());
            let room = fields.len() < self.max_fields;
            match fields.entry(key) {
                std::collections::hash_map::Entry::Occupied(mut known) => *known.get_mut() += 1,
                std::collections::hash_map::Entry::Vacant(new) if room => {
                    new.insert(1);
                }
                std::collections::hash_map::Entry::Vacant(_) => {}
            }
        }
    }

    /// Drops the fields known as noise on `path`'s pattern from a mismatch; a mismatch left empty
    /// is [`Classified::Noise`] (and counted as reclassified).
    pub fn classify(&self, path: &str, comparison: Comparison) -> Classified {
        match comparison {
            Comparison::Match => Classified::Match,
            Comparison::Skipped(reason) => Classified::Skipped(reason),
            Comparison::Mismatch(differences) => {
                let pattern = path_pattern(path);
                let fields = self.lock();
                let (noise, real): (Vec<Difference>, Vec<Difference>) =
                    differences.into_iter().partition(|d| fields.contains_key(&(pattern.clone(), d.field.clone())));
                if real.is_empty() {
                    self.reclassified.fetch_add(1, Ordering::Relaxed);
                    Classified::Noise(noise.into_iter().map(|d| d.field).collect())
                } else {
                    Classified::Mismatch(real)
                }
            }
        }
    }

    /// The learned noisy fields, sorted by pattern then field.
    pub fn learned(&self) -> Vec<LearnedNoise> {
        let mut learned: Vec<LearnedNoise> = self
            .lock()
            .iter()
            .map(|((pattern, field), samples)| LearnedNoise { pattern: pattern.clone(), field: field.clone(), samples: *samples })
            .collect();
        learned.sort_by(|a, b| (&a.pattern, &a.field).cmp(&(&b.pattern, &b.field)));
        learned
    }

    /// The learned noisy fields, whatever their pattern, sorted and without repeats.
    pub fn fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = self.lock().keys().map(|(_, field)| field.clone()).collect();
        fields.sort();
        fields.dedup();
        fields
    }

    /// How many comparisons were mismatches made only of known noise.
    pub fn reclassified(&self) -> u64 {
        self.reclassified.load(Ordering::Relaxed)
    }

    /// A panic elsewhere while holding the lock leaves a map that is still valid: keep using it.
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), u64>> {
        self.fields.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A request path with its query dropped and its identifier-like segments (numbers, UUIDs, long
/// hex or mixed letter-and-digit tokens) replaced by `{id}`: `/users/42/orders?x=1` is
/// `/users/{id}/orders`.
pub fn path_pattern(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if is_identifier(segment) { "{id}" } else { segment });
    }
    if out.is_empty() { "/".to_owned() } else { out }
}

fn is_identifier(segment: &str) -> bool {
    if segment.is_empty() {
        return false;
    }
    let digits = segment.bytes().filter(u8::is_ascii_digit).count();
    let hex_like = segment.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    digits == segment.len()
        || (hex_like && segment.len() >= 8 && digits > 0)
        || (digits >= 2 && segment.len() >= 6 && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}
