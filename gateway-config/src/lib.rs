//! The gateway's routing configuration: one internal model and the two front-ends that make it.
//!
//! - [`model`]: the ordered [`RouteTable`] of matchers, rewrites, weighted destinations, mirror
//!   policies and destinations resolved to endpoints. It is all the gateway sees.
//! - `native`: the gateway's own YAML (see `docs/CONTRACT.md`, "Native gateway configuration").
//! - `istio`: Istio `networking.istio.io` documents (Gateway, VirtualService, DestinationRule,
//!   ServiceEntry). Fields the gateway does not implement become [`Warning`]s, never silence.
//! - `validate`: runs once on everything the files said, whichever format: resolves host/subset
//!   names to endpoints and checks the table (unknown names, weights, duplicates, ...).
//! - `matching`: pure route matching ([`RouteTable::find`]) and Istio URI rewriting
//!   ([`RouteHit::rewrite_path`]).
//!
//! Several files are merged in order ([`load_files`]); each file is either native or Istio, and
//! the two can be mixed across files (e.g. the tutorial's `istio.yaml` plus a file of
//! ServiceEntries saying where the workloads are). Every error is one line naming the file, a
//! path inside it and the problem.

mod de;
pub mod duration;
mod hosts;
mod istio;
mod matching;
pub mod model;
mod native;
mod sources;
mod validate;

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use serde_norway::Value;

pub use de::parse_size;
pub use hosts::{host_matches, is_secret_header, split_host_port};
pub use istio::{ANNOTATION_COMPARE, ANNOTATION_IGNORE_HEADERS, ANNOTATION_IGNORE_PATHS, ANNOTATION_NOISE_PERCENT};
pub use matching::RouteHit;
pub use model::{
    CompareSpec, Destination, DestinationId, Endpoint, HeaderMatch, MethodSet, MirrorPolicy, Route, RouteMatch, RouteTable, StringMatch,
    WeightedDestination,
};

/// A loaded, validated table and what the loaders could not honour.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub table: RouteTable,
    /// Fields accepted but not implemented (mostly Istio features): log them at start-up.
    pub warnings: Vec<Warning>,
}

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
}

impl ConfigError {
    /// Builds an error kept on one line: control characters from the input are escaped.
    pub fn new(file: impl AsRef<str>, path: impl AsRef<str>, message: impl AsRef<str>) -> Self {
        ConfigError { file: one_line(file.as_ref()), path: one_line(path.as_ref()), message: one_line(message.as_ref()) }
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

/// Loads and merges several configuration files, in order, and validates the result.
pub fn load_files(paths: &[PathBuf]) -> Result<Loaded, ConfigError> {
    let mut texts = Vec::with_capacity(paths.len());
    for path in paths {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new(&name, "(file)", format!("cannot read: {e}")))?;
        texts.push((name, text));
    }
    load_texts(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())))
}

/// Loads one configuration text, `file_name` being what errors call it.
pub fn load_str(file_name: &str, text: &str) -> Result<Loaded, ConfigError> {
    load_texts(std::iter::once((file_name, text)))
}

/// Loads several (file name, text) pairs, merged in order; what [`load_files`] does after reading.
pub fn load_texts<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Loaded, ConfigError> {
    let mut sources = sources::Sources::default();
    let mut warnings = Vec::new();
    for (name, text) in files {
        load_one(name, text, &mut sources, &mut warnings)?;
    }
    let table = validate::build(sources)?;
    for w in &warnings {
        tracing::debug!(warning = %w, "configuration warning");
    }
    Ok(Loaded { table, warnings })
}

fn load_one(file: &str, text: &str, sources: &mut sources::Sources, warnings: &mut Vec<Warning>) -> Result<(), ConfigError> {
    sources.files.push(file.to_string());
    let docs = parse_documents(file, text)?;
    let docs: Vec<(usize, Value)> = docs.into_iter().enumerate().map(|(i, d)| (i + 1, d)).filter(|(_, d)| !d.is_null()).collect();
    if docs.is_empty() {
        warnings.push(Warning::new(file, "(file)", "empty configuration file"));
        return Ok(());
    }
    let is_istio = docs.iter().any(|(_, d)| d.as_mapping().is_some_and(|m| m.contains_key("apiVersion")));
    if is_istio {
        istio::load(file, docs, sources, warnings)
    } else {
        let several = docs.len() > 1;
        for (index, doc) in docs {
            let label = if several { format!("document {index}") } else { String::new() };
            native::load(de::Doc { file, label: &label }, doc, sources)?;
        }
        Ok(())
    }
}

/// Every document of a YAML stream; an unparsable one is an error naming its position.
fn parse_documents(file: &str, text: &str) -> Result<Vec<Value>, ConfigError> {
    use serde::Deserialize;
    let mut docs = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let doc = Value::deserialize(de).map_err(|e| {
            let path = match e.location() {
                Some(l) => format!("document {} (line {}, column {})", i + 1, l.line(), l.column()),
                None => format!("document {}", i + 1),
            };
            ConfigError::new(file, path, format!("invalid YAML: {}", de::one_line(&e)))
        })?;
        docs.push(doc);
    }
    Ok(docs)
}
