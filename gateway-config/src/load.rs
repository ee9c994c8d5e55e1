//! Loading: files -> YAML documents -> each format's front-end -> sources -> validation -> the
//! table. Several files are merged in order; each file is either native or Kubernetes
//! documents (Istio, Gateway API), and the two can be mixed across files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_norway::Value;

use crate::context::Translation;
use crate::de;
use crate::error::{ConfigError, Warning};
use crate::formats::{self, Spec, native};
use crate::k8s::{self, Objects};
use crate::model::RouteTable;
use crate::options::LoadOptions;
use crate::report::FileReport;
use crate::status::{Condition, ConditionType, ObjectId, ObjectState, ObjectStatus};
use crate::validate;

/// A loaded, validated table and what the loaders could not honour.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub table: RouteTable,
    /// Fields accepted but not implemented (mostly Istio features), replaced objects, subsets
    /// without endpoints: log them at start-up.
    pub warnings: Vec<Warning>,
    /// Per input file: what was loaded and what was scoped out, in file order.
    pub files: Vec<FileReport>,
    /// Every Kubernetes object, in load order: accepted, rejected (with its reason) or scoped
    /// out. A rejected object is left out; the others are served.
    pub objects: Vec<ObjectStatus>,
    /// The errors that rejected objects, in load order.
    pub rejections: Vec<ConfigError>,
}

impl Loaded {
    /// The objects rejected, each with its reason.
    pub fn rejected(&self) -> impl Iterator<Item = &ObjectStatus> {
        self.objects.iter().filter(|o| o.state == ObjectState::Rejected)
    }

    /// This, or the first error that rejected an object: what a check that accepts nothing
    /// less than every object (`--check-config`, tests) wants.
    pub fn strict(mut self) -> Result<Loaded, ConfigError> {
        if self.rejections.is_empty() {
            return Ok(self);
        }
        let mut first = self.rejections.swap_remove(0);
        first.warnings = self.warnings;
        Err(first)
    }
}

/// A rejected object's conditions: `Accepted=False` with the error's reason and where it is.
fn rejected_conditions(error: &ConfigError) -> Vec<Condition> {
    // The file is the object's own (an error names the document it is in).
    vec![Condition {
        kind: ConditionType::Accepted,
        status: false,
        reason: error.reason,
        message: format!("{}: {}", error.path, error.message),
    }]
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
    let mut translation = Translation::new(options);
    let mut objects = Objects::default();
    for (index, (name, text)) in files.into_iter().enumerate() {
        translation.notes.file(name);
        if let Err(mut e) = load_one(name, index, text, &mut objects, &mut translation) {
            e.warnings = std::mem::take(&mut translation.warnings);
            return Err(e);
        }
    }
    // Each pass lowers and validates every object not rejected yet; an error in an object
    // rejects it and the next pass goes on without it. An error in no object is fatal.
    let mut rejected: BTreeMap<ObjectId, ConfigError> = BTreeMap::new();
    loop {
        let mut pass = translation.clone();
        let excluded: BTreeSet<ObjectId> = rejected.keys().copied().collect();
        match lower_and_validate(&objects, &excluded, &mut pass) {
            Ok(table) => return Ok(finish(table, pass, &objects, &rejected)),
            Err(e) => match e.object {
                Some(id) if !rejected.contains_key(&id) => {
                    tracing::debug!(error = %e, "object rejected");
                    rejected.insert(id, e);
                }
                _ => {
                    let mut e = e;
                    e.warnings = std::mem::take(&mut pass.warnings);
                    return Err(e);
                }
            },
        }
    }
}

fn lower_and_validate(
    objects: &Objects<Spec>,
    excluded: &BTreeSet<ObjectId>,
    translation: &mut Translation,
) -> Result<RouteTable, ConfigError> {
    formats::lower(objects, excluded, translation)?;
    for (what, was, by) in &objects.replaced {
        translation.notes.file(&was.file).scoped_out.push(format!("{what} ({}): replaced by {}: {}", was.label, by.file, by.label));
    }
    let sources = &mut translation.sources;
    // Gateway API routes keep their own order after the others (`formats/gateway_api`).
    sources.routes.sort_by_key(|r| (r.order.0 == usize::MAX, r.catch_all_last, r.order));
    if sources.routes.is_empty() {
        // Zero routes is a valid state, as a controller with no route attached has it: every
        // request answers 404 until a reload brings a route. Said once, with what was scoped out.
        let file = if sources.files.is_empty() { "(no configuration files)".to_string() } else { sources.files.join(", ") };
        let scoped: Vec<&str> = translation.notes.files.iter().flat_map(|f| &f.scoped_out).map(String::as_str).collect();
        let mut message = "no routes are defined (native `routes:`, Istio VirtualService `spec.http` or Gateway API HTTPRoute `rules`): every request answers 404".to_string();
        if !scoped.is_empty() {
            message.push_str(&format!("; scoped out: {}", scoped.join("; ")));
        }
        translation.warnings.push(Warning::new(file, "routes", message));
    }
    validate::build(std::mem::take(&mut translation.sources), &mut translation.warnings, &mut translation.recorded)
}

/// The table of the last pass, with every object's status.
fn finish(table: RouteTable, mut translation: Translation, objects: &Objects<Spec>, rejected: &BTreeMap<ObjectId, ConfigError>) -> Loaded {
    for w in &translation.warnings {
        tracing::debug!(warning = %w, "configuration warning");
    }
    let mut statuses = Vec::with_capacity(objects.items.len() + objects.unreadable.len());
    for (i, o) in objects.items.iter().enumerate() {
        let id = ObjectId(i);
        let (state, conditions) = match rejected.get(&id) {
            Some(error) => (ObjectState::Rejected, rejected_conditions(error)),
            None => translation.recorded.status(id, matches!(o.meta.kind.as_str(), "HTTPRoute" | "VirtualService")),
        };
        let m = &o.meta;
        statuses.push(ObjectStatus {
            kind: m.kind.clone(),
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            file: m.at.file.clone(),
            document: m.at.label.clone(),
            state,
            conditions,
        });
    }
    for u in &objects.unreadable {
        statuses.push(ObjectStatus {
            kind: u.kind.clone(),
            namespace: u.namespace.clone(),
            name: u.name.clone(),
            file: u.at.file.clone(),
            document: u.at.label.clone(),
            state: ObjectState::Rejected,
            conditions: rejected_conditions(&u.error),
        });
    }
    let mut rejections: Vec<ConfigError> = rejected.values().cloned().collect();
    rejections.extend(objects.unreadable.iter().map(|u| u.error.clone()));
    Loaded {
        table,
        warnings: std::mem::take(&mut translation.warnings),
        files: std::mem::take(&mut translation.notes.files),
        objects: statuses,
        rejections,
    }
}

fn load_one(file: &str, index: usize, text: &str, objects: &mut Objects<Spec>, translation: &mut Translation) -> Result<(), ConfigError> {
    translation.sources.files.push(file.to_string());
    let docs = parse_documents(file, text)?;
    let docs: Vec<(usize, Value)> = docs.into_iter().enumerate().map(|(i, d)| (i + 1, d)).filter(|(_, d)| !d.is_null()).collect();
    if docs.is_empty() {
        translation.warnings.push(Warning::new(file, "(file)", "empty configuration file"));
        return Ok(());
    }
    let is_k8s = docs.iter().any(|(_, d)| d.as_mapping().is_some_and(|m| m.contains_key("apiVersion")));
    if is_k8s {
        k8s::collect(file, index, docs, objects, &mut translation.warnings)
    } else {
        let several = docs.len() > 1;
        for (doc_index, doc) in docs {
            let label = if several { format!("document {doc_index}") } else { String::new() };
            let sources = &mut translation.sources;
            let before = (sources.routes.len(), sources.services.len());
            native::load(de::Doc { file, label: &label, object: None }, (index, doc_index), doc, sources)?;
            let (routes, services) = (sources.routes.len() - before.0, sources.services.len() - before.1);
            translation.notes.file(file).loaded.push(format!(
                "{}native: {routes} routes, {services} services",
                if several { format!("{label}: ") } else { String::new() }
            ));
        }
        Ok(())
    }
}

/// Every document of a YAML stream; an unparsable one is an error naming its position.
fn parse_documents(file: &str, text: &str) -> Result<Vec<Value>, ConfigError> {
    let mut text = std::borrow::Cow::Borrowed(text);
    // Each retry quotes one more scalar; a file has at most one per line.
    for _ in 0..=text.lines().count() {
        match parse_yaml(file, &text).map_err(|failed| *failed) {
            Ok(docs) => return Ok(docs),
            Err((error, Some(fixed))) => {
                tracing::debug!(%error, "YAML parsed again with a flow scalar quoted, as sigs.k8s.io/yaml reads it");
                text = std::borrow::Cow::Owned(fixed);
            }
            Err((error, None)) => return Err(error),
        }
    }
    parse_yaml(file, &text).map_err(|failed| failed.0)
}

/// The documents of `text`; on an error, also the text fixed when the error is one that
/// Kubernetes' YAML reader (sigs.k8s.io/yaml, go-yaml) does not make.
/// (Boxed: the error is the rare path, and a large one would be copied on every return.)
fn parse_yaml(file: &str, text: &str) -> Result<Vec<Value>, Box<(ConfigError, Option<String>)>> {
    use serde::Deserialize;
    let mut docs = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let doc = Value::deserialize(de).map_err(|e| {
            let path = match e.location() {
                Some(l) => format!("document {} (line {}, column {})", i + 1, l.line(), l.column()),
                None => format!("document {}", i + 1),
            };
            let message = de::one_line(&e);
            Box::new((ConfigError::new(file, path, format!("invalid YAML: {message}")), quote_flow_scalar(text, &message)))
        })?;
        docs.push(doc);
    }
    Ok(docs)
}

/// go-yaml reads `[1.2.3.4, 001:db8::]` as two strings: in a flow collection a plain scalar
/// may hold a `:` followed by `]`, `,` or `}` (Istio's own valid ServiceEntry test file writes
/// an IPv6 address so). libyaml stops there with "found unexpected ':'"; the scalar it was
/// scanning is quoted, up to the flow indicator that ends it in go-yaml, so it reads the same.
fn quote_flow_scalar(text: &str, message: &str) -> Option<String> {
    let (_, at) = message.split_once("found unexpected ':'")?;
    let (_, at) = at.split_once("while scanning a plain scalar at line ")?;
    let (line, at) = at.split_once(" column ")?;
    let column: usize = at.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    let line: usize = line.trim().parse().ok()?;
    let mut lines: Vec<&str> = text.split('\n').collect();
    let target = *lines.get(line.checked_sub(1)?)?;
    let start = target.char_indices().nth(column.checked_sub(1)?).map(|(i, _)| i)?;
    let rest = &target[start..];
    let len = rest.find([',', ']', '}']).unwrap_or(rest.len());
    let scalar = rest[..len].trim_end();
    if scalar.is_empty() || scalar.contains(['"', '\\', '#']) {
        return None;
    }
    let fixed = format!("{}\"{scalar}\"{}", &target[..start], &rest[scalar.len()..]);
    lines[line - 1] = &fixed;
    Some(lines.join("\n"))
}
