//! Prometheus text as the tests read it, and a matcher in the manner of linkerd2-proxy's test
//! support: `metric("gateway_mirror_verdict").label("route", "shop").label("state", "pass").value(1).assert_in(&metrics)`.
//! A series matches when it has the metric's name and every label given (others may be there);
//! with a value, when its sample equals it.

use std::fmt;

/// One scrape: the text of a `/metrics` answer.
#[derive(Debug, Clone)]
pub struct Metrics(String);

/// One sample line, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Metrics {
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// GETs `url` (a `/metrics` endpoint).
    pub async fn scrape(url: &str) -> Self {
        Self(crate::get(url).await.1)
    }

    pub fn text(&self) -> &str {
        &self.0
    }

    /// Every sample line (comments and blank lines left out; a line that does not parse is a
    /// test failure, not a silent miss).
    pub fn samples(&self) -> Vec<Sample> {
        self.0
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| parse(line).unwrap_or_else(|| panic!("not a Prometheus sample line: {line:?}")))
            .collect()
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A matcher for the series called `name`.
pub fn metric(name: &str) -> MetricMatch {
    MetricMatch { name: name.to_owned(), labels: Vec::new(), value: None }
}

#[derive(Debug, Clone)]
pub struct MetricMatch {
    name: String,
    labels: Vec<(String, String)>,
    value: Option<f64>,
}

impl MetricMatch {
    pub fn label(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.labels.push((key.to_owned(), value.to_string()));
        self
    }

    pub fn value(mut self, value: impl Into<f64>) -> Self {
        self.value = Some(value.into());
        self
    }

    fn matches(&self, sample: &Sample) -> bool {
        sample.name == self.name
            && self.labels.iter().all(|(k, v)| sample.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            && self.value.is_none_or(|value| sample.value == value)
    }

    /// The value of the first series that matches (name and labels; a value given is checked).
    pub fn find(&self, metrics: &Metrics) -> Option<f64> {
        metrics.samples().iter().find(|s| self.matches(s)).map(|s| s.value)
    }

    pub fn is_in(&self, metrics: &Metrics) -> bool {
        self.find(metrics).is_some()
    }

    /// How many series match.
    pub fn count_in(&self, metrics: &Metrics) -> usize {
        metrics.samples().iter().filter(|s| self.matches(s)).count()
    }

    #[track_caller]
    pub fn assert_in(&self, metrics: &Metrics) {
        assert!(self.is_in(metrics), "no series matches {self} in:\n{metrics}");
    }
}

impl fmt::Display for MetricMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        write!(f, "{}{{{}}}", self.name, labels.join(","))?;
        match self.value {
            Some(value) => write!(f, " {value}"),
            None => Ok(()),
        }
    }
}

/// `name{k="v",...} value` or `name value` (Prometheus' text format, escapes in label values).
fn parse(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(at) => line.split_at(at),
        None => return None,
    };
    let mut labels = Vec::new();
    let rest = match rest.strip_prefix('{') {
        Some(mut inner) => loop {
            inner = inner.trim_start_matches(',');
            if let Some(after) = inner.strip_prefix('}') {
                break after;
            }
            let (key, after) = inner.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((key.to_owned(), value));
            inner = &after[end + 1..];
        },
        None => rest,
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name: name.to_owned(), labels, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_matches_by_name_labels_and_value() {
        let metrics = Metrics::new(
            "# TYPE x counter\nx{route=\"a\",mirror=\"shop/v2\",q=\"say \\\"hi\\\"\"} 3\nx{route=\"b\"} 0\ny 1.5\nh_bucket{le=\"+Inf\"} 2\n".to_owned(),
        );
        assert_eq!(metric("x").label("route", "a").find(&metrics), Some(3.0));
        assert!(metric("x").label("mirror", "shop/v2").label("q", "say \"hi\"").value(3).is_in(&metrics));
        assert!(!metric("x").label("route", "a").value(2).is_in(&metrics));
        assert!(!metric("x").label("route", "c").is_in(&metrics));
        assert_eq!(metric("x").count_in(&metrics), 2);
        assert_eq!(metric("y").find(&metrics), Some(1.5));
        assert_eq!(metric("h_bucket").label("le", "+Inf").find(&metrics), Some(2.0));
        assert!(!metric("x_total").is_in(&metrics), "the name is matched whole");
    }
}
