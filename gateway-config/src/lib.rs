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
mod gateway_api;
mod istio;
mod k8s;
mod matching;
pub mod model;
mod native;
pub mod normalize;
mod sources;
mod validate;

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use serde_norway::Value;

pub use de::parse_size;
pub use istio::{ANNOTATION_COMPARE, ANNOTATION_IGNORE_HEADERS, ANNOTATION_IGNORE_PATHS, ANNOTATION_NOISE_PERCENT, ANNOTATION_VERDICT};
pub use matching::RouteHit;
pub use model::{
    Answer, CompareSpec, Destination, DestinationId, Endpoint, HeaderMatch, HeaderOps, IgnorePath, MethodSet, MirrorPolicy, PathRedirect,
    PromoteSpec, Protocol, QueryMatch, Redirect, Route, RouteMatch, RouteTable, StringMatch, UriRewrite, VerdictSpec, VirtualHost,
    WeightedDestination,
};
pub use normalize::{EscapedSlashes, PathNormalization, PathRejected};

/// A loaded, validated table and what the loaders could not honour.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub table: RouteTable,
    /// Fields accepted but not implemented (mostly Istio features), replaced objects, subsets
    /// without endpoints: log them at start-up.
    pub warnings: Vec<Warning>,
    /// Per input file: what was loaded and what was scoped out, in file order.
    pub files: Vec<FileReport>,
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
    /// What loading had already noticed (not-implemented fields, ...): shown with the error,
    /// so a refused configuration does not hide them.
    pub warnings: Vec<Warning>,
}

impl ConfigError {
    /// Builds an error kept on one line: control characters from the input are escaped.
    pub fn new(file: impl AsRef<str>, path: impl AsRef<str>, message: impl AsRef<str>) -> Self {
        ConfigError {
            file: one_line(file.as_ref()),
            path: one_line(path.as_ref()),
            message: one_line(message.as_ref()),
            warnings: Vec::new(),
        }
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

/// What the configuration files cannot say: which Gateway resources this gateway is, and
/// whether it also routes for the mesh. The gateway takes them from its process settings.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadOptions {
    /// Gateway resources (Istio or Gateway API) this gateway is, as `namespace/name` (or a
    /// bare name in namespace `default`). Empty, with no `labels`: every Gateway in the files.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// This gateway's labels: an Istio Gateway whose `selector` they satisfy is this gateway.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Also serve mesh VirtualServices (no `gateways`, or `mesh`), as the mesh's router.
    #[serde(default)]
    pub mesh: bool,
}

/// What one file contributed, for `--check-config`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileReport {
    pub file: String,
    /// `VirtualService test/target: 1 route`, `routes: 3` (native), ...
    pub loaded: Vec<String>,
    /// Objects that are valid but not served here, each with the reason.
    pub scoped_out: Vec<String>,
}

/// Collects the per-file report while loading.
#[derive(Default)]
pub(crate) struct Notes {
    files: Vec<FileReport>,
}

impl Notes {
    fn file(&mut self, file: &str) -> &mut FileReport {
        if let Some(i) = self.files.iter().position(|f| f.file == file) {
            return &mut self.files[i];
        }
        self.files.push(FileReport { file: file.to_string(), ..FileReport::default() });
        self.files.last_mut().expect("just pushed")
    }

    pub(crate) fn loaded(&mut self, o: &k8s::Object, what: String) {
        self.file(&o.at.file).loaded.push(format!("{}: {what}", o.title()));
    }

    pub(crate) fn scoped_out(&mut self, o: &k8s::Object, why: String) {
        self.file(&o.at.file).scoped_out.push(format!("{}: {why}", o.title()));
    }
}

/// Loads and merges several configuration files, in order, and validates the result.
pub fn load_files(paths: &[PathBuf]) -> Result<Loaded, ConfigError> {
    load_files_with(paths, &LoadOptions::default())
}

/// [`load_files`] with the options the settings give.
pub fn load_files_with(paths: &[PathBuf], options: &LoadOptions) -> Result<Loaded, ConfigError> {
    let mut texts = Vec::with_capacity(paths.len());
    for path in paths {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new(&name, "(file)", format!("cannot read: {e}")))?;
        texts.push((name, text));
    }
    load_texts_with(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())), options)
}

/// Loads one configuration text, `file_name` being what errors call it.
pub fn load_str(file_name: &str, text: &str) -> Result<Loaded, ConfigError> {
    load_texts(std::iter::once((file_name, text)))
}

/// Loads several (file name, text) pairs, merged in order; what [`load_files`] does after reading.
pub fn load_texts<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Loaded, ConfigError> {
    load_texts_with(files, &LoadOptions::default())
}

/// [`load_texts`] with the options the settings give.
pub fn load_texts_with<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>, options: &LoadOptions) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    load_all(files, options, &mut warnings).map_err(|mut e| {
        e.warnings = warnings;
        e
    })
}

fn load_all<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
    options: &LoadOptions,
    warnings: &mut Vec<Warning>,
) -> Result<Loaded, ConfigError> {
    let mut sources = sources::Sources::default();
    let mut objects = k8s::Objects::default();
    let mut notes = Notes::default();
    for (index, (name, text)) in files.into_iter().enumerate() {
        notes.file(name);
        load_one(name, index, text, &mut sources, &mut objects, warnings, &mut notes)?;
    }
    istio::build(&objects, options, &mut sources, warnings, &mut notes)?;
    gateway_api::build(&objects, options, &mut sources, warnings, &mut notes)?;
    for (what, was, by) in &objects.replaced {
        notes.file(&was.file).scoped_out.push(format!("{what} ({}): replaced by {}: {}", was.label, by.file, by.label));
    }
    sources.routes.sort_by_key(|r| r.order);
    if sources.routes.is_empty() {
        let file = if sources.files.is_empty() { "(no configuration files)".to_string() } else { sources.files.join(", ") };
        let scoped: Vec<&str> = notes.files.iter().flat_map(|f| &f.scoped_out).map(String::as_str).collect();
        let mut message =
            "nothing to serve: no routes are defined (native `routes:`, Istio VirtualService `spec.http` or Gateway API HTTPRoute `rules`)"
                .to_string();
        if !scoped.is_empty() {
            message.push_str(&format!("; scoped out: {}", scoped.join("; ")));
        }
        return Err(ConfigError::new(file, "routes", message));
    }
    let table = validate::build(sources, warnings)?;
    for w in warnings.iter() {
        tracing::debug!(warning = %w, "configuration warning");
    }
    Ok(Loaded { table, warnings: std::mem::take(warnings), files: notes.files })
}

fn load_one(
    file: &str,
    index: usize,
    text: &str,
    sources: &mut sources::Sources,
    objects: &mut k8s::Objects,
    warnings: &mut Vec<Warning>,
    notes: &mut Notes,
) -> Result<(), ConfigError> {
    sources.files.push(file.to_string());
    let docs = parse_documents(file, text)?;
    let docs: Vec<(usize, Value)> = docs.into_iter().enumerate().map(|(i, d)| (i + 1, d)).filter(|(_, d)| !d.is_null()).collect();
    if docs.is_empty() {
        warnings.push(Warning::new(file, "(file)", "empty configuration file"));
        return Ok(());
    }
    let is_k8s = docs.iter().any(|(_, d)| d.as_mapping().is_some_and(|m| m.contains_key("apiVersion")));
    if is_k8s {
        k8s::collect(file, index, docs, objects, warnings)
    } else {
        let several = docs.len() > 1;
        for (doc_index, doc) in docs {
            let label = if several { format!("document {doc_index}") } else { String::new() };
            let before = (sources.routes.len(), sources.services.len());
            native::load(de::Doc { file, label: &label }, (index, doc_index), doc, sources)?;
            let report = notes.file(file);
            let (routes, services) = (sources.routes.len() - before.0, sources.services.len() - before.1);
            report.loaded.push(format!(
                "{}native: {routes} routes, {services} services",
                if several { format!("{label}: ") } else { String::new() }
            ));
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
