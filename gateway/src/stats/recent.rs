//! The last mismatches of one mirror, side by side, bounded both in count and in bytes (a
//! mismatch holds field values as upstreams sent them).

use std::collections::VecDeque;
use std::sync::Mutex;

use response_diff::{AnsweredBody, Difference};
use serde::{Deserialize, Serialize};

use crate::settings::ReportSettings;

/// One mismatch as shown in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The bodies as each side answered them (decoded, the first [`ANSWERED_BODY_BYTES`]), beside
    /// the parsed view of `differences`; none when the mirror redacts bodies.
    #[serde(default)]
    pub primary_body: Option<AnsweredBody>,
    #[serde(default)]
    pub shadow_body: Option<AnsweredBody>,
}

/// Bytes of each side's body a mismatch record keeps.
pub const ANSWERED_BODY_BYTES: usize = 8 * 1024;

impl MismatchRecord {
    fn size(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        std::mem::size_of::<Self>()
            + self.method.len()
            + self.path.len()
            + self.request_id.len()
            + self.trace_id.len()
            + self.differences.iter().map(|d| d.field.len() + text(&d.primary) + text(&d.shadow) + 64).sum::<usize>()
            + [&self.primary_body, &self.shadow_body].iter().map(|b| b.as_ref().map_or(0, |b| b.text.len())).sum::<usize>()
    }
}

/// The ring of recent mismatches: the oldest go first when either bound is passed.
pub struct RecentMismatches {
    kept: Mutex<Kept>,
    max_records: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct Kept {
    records: VecDeque<MismatchRecord>,
    bytes: usize,
}

impl RecentMismatches {
    pub fn new(settings: &ReportSettings) -> Self {
        Self { kept: Mutex::default(), max_records: settings.recent_mismatches, max_bytes: settings.max_bytes }
    }

    /// Keeps `record` (unless it alone is over the byte bound), dropping the oldest as needed.
    pub fn remember(&self, record: MismatchRecord) {
        if self.max_records == 0 {
            return;
        }
        let size = record.size();
        if size > self.max_bytes {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.bytes += size;
        kept.records.push_back(record);
        while kept.records.len() > self.max_records || kept.bytes > self.max_bytes {
            match kept.records.pop_front() {
                Some(old) => kept.bytes -= old.size(),
                None => break,
            }
        }
    }

    /// Newest first.
    pub fn newest_first(&self) -> Vec<MismatchRecord> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).records.iter().rev().cloned().collect()
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
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
            primary_body: None,
            shadow_body: None,
        }
    }

    #[test]
    fn recent_mismatches_are_bounded_by_count_and_bytes() {
        let recent = RecentMismatches::new(&ReportSettings { recent_mismatches: 3, max_bytes: 4096, trace_url: String::new() });
        for n in 0..10 {
            recent.remember(record(n, 10));
        }
        let kept = recent.newest_first();
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[0].path, "/9", "newest first");
        for n in 0..10 {
            recent.remember(record(n, 1500));
        }
        let (bytes, count) = (recent.bytes(), recent.newest_first().len());
        assert!(bytes <= 4096 && count <= 2, "{bytes} bytes");
    }
}
