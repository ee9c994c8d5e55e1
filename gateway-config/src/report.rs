//! What each file contributed, for `--check-config`: what it loaded and what it scoped out.

use serde::Serialize;

/// What one file contributed, for `--check-config`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileReport {
    pub file: String,
    /// `VirtualService test/target: 1 route`, `routes: 3` (native), ...
    pub loaded: Vec<String>,
    /// Objects that are valid but not served here, each with the reason.
    pub scoped_out: Vec<String>,
}

/// Collects the per-file report while loading, files in the order first seen.
#[derive(Default, Clone)]
pub(crate) struct Notes {
    pub files: Vec<FileReport>,
}

impl Notes {
    pub fn file(&mut self, file: &str) -> &mut FileReport {
        if let Some(i) = self.files.iter().position(|f| f.file == file) {
            return &mut self.files[i];
        }
        self.files.push(FileReport { file: file.to_string(), ..FileReport::default() });
        self.files.last_mut().expect("just pushed")
    }
}
