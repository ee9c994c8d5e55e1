//! Learning which fields differ even between two answers of the primary (Diffy-style noise).

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

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

/// The fields known to differ between two answers of the primary to the same request.
///
/// Fed by [`NoiseFilter::learn`] with comparisons of primary against primary-again, consulted by
/// [`NoiseFilter::classify`] for primary against shadow. Shared between requests (`&self`
/// methods); a plain mutex is enough as learning is off the request path and the critical sections
/// are short. Bounded: once `max_fields` fields are known, new ones are not learned.
#[derive(Debug)]
pub struct NoiseFilter {
    max_fields: usize,
    fields: Mutex<HashSet<String>>,
}

impl NoiseFilter {
    /// A filter that will learn at most `max_fields` noisy fields.
    pub fn new(max_fields: usize) -> Self {
        NoiseFilter { max_fields, fields: Mutex::new(HashSet::new()) }
    }

    /// Learns from comparing the primary with itself: every differing field becomes noise.
    pub fn learn(&self, first: &Comparison) {
        let Comparison::Mismatch(differences) = first else {
            return;
        };
        let mut fields = self.lock();
        for difference in differences {
            if fields.len() >= self.max_fields {
                break;
            }
            if !fields.contains(&difference.field) {
                fields.insert(difference.field.clone());
            }
        }
    }

    /// Drops known-noise fields from a mismatch; a mismatch left empty is [`Classified::Noise`].
    pub fn classify(&self, comparison: Comparison) -> Classified {
        match comparison {
            Comparison::Match => Classified::Match,
            Comparison::Skipped(reason) => Classified::Skipped(reason),
            Comparison::Mismatch(differences) => {
                let fields = self.lock();
                let (noise, real): (Vec<Difference>, Vec<Difference>) = differences.into_iter().partition(|d| fields.contains(&d.field));
                if real.is_empty() { Classified::Noise(noise.into_iter().map(|d| d.field).collect()) } else { Classified::Mismatch(real) }
            }
        }
    }

    /// The learned noisy fields, sorted.
    pub fn fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = self.lock().iter().cloned().collect();
        fields.sort();
        fields
    }

    /// A panic elsewhere while holding the lock leaves a set that is still valid: keep using it.
    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.fields.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
