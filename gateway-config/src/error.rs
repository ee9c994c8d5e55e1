//! What loading reports: [`ConfigError`], which refuses the configuration, and [`Warning`],
//! which does not. Both are one line naming the file, a path inside it and the problem.

use std::fmt;

use serde::Serialize;

use crate::status::{ObjectId, Reason};

/// Something the configuration says that the gateway accepts without doing all of it: a field
/// it does not implement, a replaced object, a subset without endpoints yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub file: String,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.path, self.message)
    }
}

/// Bad configuration, as one line: `{file}: {path}: {message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {path}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub path: String,
    pub message: String,
    /// What loading had already noticed (not-implemented fields, ...): shown with the error,
    /// so a refused configuration does not hide them.
    pub warnings: Vec<Warning>,
    /// The Kubernetes object the error is in: loading rejects that object alone and goes on
    /// ([`crate::status`]). `None`: the configuration as a whole is refused.
    pub(crate) object: Option<ObjectId>,
    /// The condition reason a rejection reports (`Invalid` when not said).
    pub(crate) reason: Reason,
}

impl ConfigError {
    /// Builds an error kept on one line: control characters from the input are escaped.
    pub fn new(file: impl AsRef<str>, path: impl AsRef<str>, message: impl AsRef<str>) -> Self {
        ConfigError {
            file: one_line(file.as_ref()),
            path: one_line(path.as_ref()),
            message: one_line(message.as_ref()),
            warnings: Vec::new(),
            object: None,
            reason: Reason::Invalid,
        }
    }

    /// The same error, in `object`.
    pub(crate) fn of_object(mut self, object: Option<ObjectId>) -> Self {
        self.object = object;
        self
    }

    /// The same error, reported with `reason` when it rejects an object.
    pub(crate) fn because(mut self, reason: Reason) -> Self {
        self.reason = reason;
        self
    }
}

impl Warning {
    /// Builds a warning kept on one line, like [`ConfigError::new`].
    pub fn new(file: impl AsRef<str>, path: impl AsRef<str>, message: impl AsRef<str>) -> Self {
        Warning { file: one_line(file.as_ref()), path: one_line(path.as_ref()), message: one_line(message.as_ref()) }
    }
}

/// Escapes control characters (a newline in a YAML key or value) so messages stay one line.
fn one_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}
