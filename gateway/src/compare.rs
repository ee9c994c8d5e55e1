//! In-line comparison of a shadow's response with the primary's, run off the request path in the
//! mirror's task once both responses are complete. The differ itself is the `response-diff` crate.

use gateway_config::CompareSpec;
use response_diff::{Captured, Classified, DiffOptions, JsonPath, NoiseFilter, PathError};

/// Fields learned as noise per mirror at most (the filter is bounded).
const MAX_NOISE_FIELDS: usize = 256;

/// One mirror's comparison settings and learned noise.
pub struct Comparer {
    options: DiffOptions,
    noise: NoiseFilter,
    /// Share (0..=100) of compared requests also sent a second time to the primary.
    pub noise_percent: f64,
    /// Response bodies are kept up to this many bytes for comparison.
    pub max_body_bytes: usize,
}

impl Comparer {
    pub fn new(spec: &CompareSpec) -> Result<Self, PathError> {
        let ignore_paths = spec.ignore_paths.iter().map(|p| p.parse::<JsonPath>()).collect::<Result<Vec<_>, _>>()?;
        let options = DiffOptions {
            ignore_headers: spec.ignore_headers.clone(),
            ignore_paths,
            redact_values: spec.redact_bodies,
            ..DiffOptions::default()
        };
        Ok(Self {
            options,
            noise: NoiseFilter::new(MAX_NOISE_FIELDS),
            noise_percent: spec.noise_percent,
            max_body_bytes: spec.max_body_bytes,
        })
    }

    /// Primary against shadow, with learned noise taken out.
    pub fn compare(&self, primary: &Captured, shadow: &Captured) -> Classified {
        self.noise.classify(response_diff::compare(primary, shadow, &self.options))
    }

    /// Primary against a second answer of the primary: what differs is noise.
    pub fn learn_noise(&self, first: &Captured, second: &Captured) {
        self.noise.learn(&response_diff::compare(first, second, &self.options));
    }

    pub fn noise_fields(&self) -> Vec<String> {
        self.noise.fields()
    }
}
