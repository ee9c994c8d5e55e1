//! The writer thread of one capture file. The file is a valid HAR document after every entry:
//! each entry is written before the closing `]}}`, which is written again after it (so a reader,
//! or a crash, never finds a half document). Before the file would grow past `max_file_bytes`
//! it is rotated: `file` becomes `file.1`, `file.1` becomes `file.2`, up to `keep`; older ones
//! are removed. A file already there at start is rotated away, never appended to.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use response_diff::Classified;

use super::har::{self, Content, Entry, PostData, Request, Response, Timings};
use super::{Exchange, Job, redact};

const TRAILER: &[u8] = b"\n]}}\n";

/// `file.N`: the N-th rotated capture.
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

pub(super) struct HarWriter {
    path: PathBuf,
    file: File,
    /// Bytes in the file, the trailer included.
    len: u64,
    entries: u64,
    max_bytes: u64,
    keep: usize,
}

impl HarWriter {
    pub fn open(path: PathBuf, max_bytes: u64, keep: usize) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            rotate(&path, keep)?;
        }
        let (file, len) = start(&path)?;
        Ok(Self { path, file, len, entries: 0, max_bytes, keep })
    }

    /// Appends one entry (JSON text), rotating first when it would not fit.
    pub fn append(&mut self, entry: &[u8]) -> std::io::Result<()> {
        if self.entries > 0 && self.len + entry.len() as u64 + 2 > self.max_bytes {
            rotate(&self.path, self.keep)?;
            let (file, len) = start(&self.path)?;
            (self.file, self.len, self.entries) = (file, len, 0);
        }
        let mut bytes = Vec::with_capacity(entry.len() + TRAILER.len() + 2);
        if self.entries > 0 {
            bytes.extend_from_slice(b",\n");
        }
        bytes.extend_from_slice(entry);
        bytes.extend_from_slice(TRAILER);
        let at = self.len - TRAILER.len() as u64;
        self.file.seek(SeekFrom::Start(at))?;
        self.file.write_all(&bytes)?;
        self.len = at + bytes.len() as u64;
        self.entries += 1;
        Ok(())
    }
}

/// A new file holding an empty HAR log; its length.
fn start(path: &Path) -> std::io::Result<(File, u64)> {
    let mut file = File::create(path)?;
    // `pages` is optional in HAR 1.2, but some readers expect the list.
    let head = serde_json::json!({"version": "1.2", "creator": {"name": "gateway", "version": env!("CARGO_PKG_VERSION")}, "pages": []});
    let head = head.to_string();
    // `{"log":{"creator":...,"version":"1.2","entries":[` then the trailer.
    let text = format!("{{\"log\":{},\"entries\":[", &head[..head.len() - 1]);
    file.write_all(text.as_bytes())?;
    file.write_all(TRAILER)?;
    Ok((file, (text.len() + TRAILER.len()) as u64))
}

fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    let _ = std::fs::remove_file(rotated_path(path, keep));
    for n in (1..keep).rev() {
        let from = rotated_path(path, n);
        if from.exists() {
            std::fs::rename(&from, rotated_path(path, n + 1))?;
        }
    }
    std::fs::rename(path, rotated_path(path, 1))
}

/// The thread's loop: until every sink of the file is gone.
pub(super) fn run(mut writer: HarWriter, jobs: std::sync::mpsc::Receiver<Job>, queued: &AtomicUsize) {
    let mut last_error: Option<Instant> = None;
    for job in jobs {
        queued.fetch_sub(job.size, Ordering::Relaxed);
        let entry = entry(&job.exchange, &job.spec);
        let written = serde_json::to_vec(&entry).map_err(std::io::Error::other).and_then(|text| writer.append(&text));
        match written {
            Ok(()) => job.written.increment(1),
            Err(error) => {
                job.failed.increment(1);
                // Logged at most once a minute: a full disk must not flood the log too.
                if last_error.is_none_or(|at| at.elapsed().as_secs() >= 60) {
                    tracing::warn!(file = %writer.path.display(), %error, "cannot write to the capture file; entries are dropped and counted");
                    last_error = Some(Instant::now());
                }
            }
        }
    }
}

/// The HAR entry of an exchange, redacted as the capture says.
pub(super) fn entry(x: &Exchange, spec: &gateway_config::CaptureSpec) -> Entry {
    let version = har::version_text(x.request.version).to_owned();
    let url = x.request.url.clone();
    let query_string = url::Url::parse(&url)
        .map(|u| u.query_pairs().map(|(name, value)| har::NameValue { name: name.into_owned(), value: value.into_owned() }).collect())
        .unwrap_or_default();
    let content_type =
        |headers: &http::HeaderMap| headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let post_data = (!x.request.body.is_empty()).then(|| {
        let body = redact::body(&x.request.body, &x.request.headers, spec);
        let (text, encoding) = har::body_text(&body[..body.len().min(spec.max_body_bytes)]);
        PostData {
            mime_type: content_type(&x.request.headers),
            text,
            encoding,
            truncated: x.request.body_truncated || body.len() > spec.max_body_bytes,
        }
    });
    let response = |captured: &response_diff::Captured, time: Option<f64>| {
        let body = redact::body(&captured.body, &captured.headers, spec);
        let kept = &body[..body.len().min(spec.max_body_bytes)];
        let (text, encoding) = har::body_text(kept);
        let status = http::StatusCode::from_u16(captured.status).ok();
        Response {
            status: captured.status,
            status_text: status.and_then(|s| s.canonical_reason()).unwrap_or_default().to_owned(),
            http_version: version.clone(),
            cookies: Vec::new(),
            headers: redact::headers(&captured.headers, spec),
            content: Content {
                size: body.len() as i64,
                mime_type: content_type(&captured.headers),
                text: Some(text),
                encoding,
                truncated: captured.truncated || kept.len() < body.len(),
            },
            redirect_url: captured.headers.get(http::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned(),
            headers_size: -1,
            body_size: captured.body.len() as i64,
            time,
        }
    };
    let mismatch = match &x.result {
        Classified::Mismatch(differences) => Some(differences.clone()),
        _ => None,
    };
    Entry {
        started_date_time: har::rfc3339(x.started),
        time: x.primary_ms,
        request: Request {
            method: x.request.method.to_string(),
            url,
            http_version: version.clone(),
            cookies: Vec::new(),
            headers: redact::headers(&x.request.headers, spec),
            query_string,
            post_data,
            headers_size: -1,
            body_size: x.request.body.len() as i64,
        },
        response: response(&x.primary, None),
        cache: serde_json::Map::new(),
        timings: Timings { send: 0.0, wait: x.primary_ms, receive: 0.0 },
        route: Some(x.route.clone()),
        mirror: Some(x.mirror.clone()),
        trace_id: (!x.trace_id.is_empty()).then(|| x.trace_id.clone()),
        request_id: (!x.request_id.is_empty()).then(|| x.request_id.clone()),
        result: Some(x.result.label().to_owned()),
        mismatch,
        shadow: Some(response(&x.shadow, Some(x.shadow_ms))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gateway-capture-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("c.har")
    }

    fn entries(path: &Path) -> Vec<serde_json::Value> {
        let har: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).expect("a whole JSON document");
        assert_eq!(har["log"]["version"], "1.2");
        har["log"]["entries"].as_array().unwrap().clone()
    }

    #[test]
    fn the_file_is_a_whole_har_after_every_entry() {
        let path = scratch("whole");
        let mut writer = HarWriter::open(path.clone(), 1 << 20, 2).unwrap();
        assert!(entries(&path).is_empty());
        writer.append(br#"{"n":1}"#).unwrap();
        assert_eq!(entries(&path), [serde_json::json!({"n": 1})]);
        writer.append(br#"{"n":2}"#).unwrap();
        assert_eq!(entries(&path), [serde_json::json!({"n": 1}), serde_json::json!({"n": 2})]);
    }

    #[test]
    fn files_rotate_by_size_and_only_keep_are_kept() {
        let path = scratch("rotate");
        std::fs::write(&path, "an older capture").unwrap();
        let mut writer = HarWriter::open(path.clone(), 300, 2).unwrap();
        assert_eq!(std::fs::read_to_string(rotated_path(&path, 1)).unwrap(), "an older capture", "never appended to");
        let entry = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100));
        for _ in 0..7 {
            writer.append(entry.as_bytes()).unwrap();
        }
        for file in [path.clone(), rotated_path(&path, 1), rotated_path(&path, 2)] {
            assert!(std::fs::metadata(&file).unwrap().len() <= 300, "{}", file.display());
            assert!(!entries(&file).is_empty(), "{} holds entries", file.display());
        }
        assert!(!rotated_path(&path, 3).exists(), "only `keep` rotated files");
    }
}
