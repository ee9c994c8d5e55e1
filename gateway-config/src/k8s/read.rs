//! Reading the Kubernetes documents of one file into [`Objects`]: each document (or item of a
//! `kind: List`) is one object; its spec is read by the front-end of its kind ([`Kinds`]), and
//! every field the front-end's types do not declare becomes a warning naming it.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_norway::Value;

use super::object::{Located, Meta, Object, Objects, Unreadable};
use crate::de::{Doc, Ordered, Result, Scalar, kind_of, typed};
use crate::error::Warning;

/// The kinds this gateway reads, each into its front-end's spec types.
pub(crate) trait Kinds: Sized {
    /// The object of `api` (`group/version`) and `kind` (possibly empty); `Ok(None)` when this
    /// gateway does not read it (a warning says so).
    fn read(api: &str, kind: &str, value: Value, doc: Doc<'_>, warnings: &mut Vec<Warning>) -> Result<Option<Read<Self>>>;
}

/// One object as its front-end read it.
pub(crate) struct Read<S> {
    pub group: &'static str,
    pub metadata: Metadata,
    pub spec: S,
}

#[derive(Deserialize)]
struct Envelope<S> {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: Metadata,
    spec: S,
}

#[derive(Deserialize, Default)]
pub(crate) struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    annotations: Ordered<Scalar>,
    /// What selectors select by (a Gateway API listener's namespace `Selector`).
    #[serde(default)]
    labels: Ordered<Scalar>,
}

/// Adds the objects of one file (documents numbered from 1, as positioned in the stream).
pub(crate) fn collect<S: Kinds>(
    file: &str,
    file_index: usize,
    docs: Vec<(usize, Value)>,
    objects: &mut Objects<S>,
    warnings: &mut Vec<Warning>,
) -> Result<()> {
    for (index, value) in docs {
        let label = doc_label(&format!("document {index}"), &value);
        one(file, (file_index, index), label, value, objects, warnings)?;
    }
    Ok(())
}

fn doc_label(position: &str, value: &Value) -> String {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = value.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("");
    match (kind.is_empty(), name.is_empty()) {
        (true, _) => position.to_string(),
        (false, true) => format!("{position} ({kind})"),
        (false, false) => format!("{position} ({kind} {name})"),
    }
}

fn one<S: Kinds>(
    file: &str,
    order: (usize, usize),
    label: String,
    value: Value,
    objects: &mut Objects<S>,
    warnings: &mut Vec<Warning>,
) -> Result<()> {
    let doc = Doc { file, label: &label, object: None };
    if !value.is_mapping() {
        return Err(doc.err("", format!("expected a mapping, found {}", kind_of(&value))));
    }
    let Some(api) = value.get("apiVersion") else {
        return Err(doc.err(
            "",
            "a document without apiVersion in a file of Kubernetes documents \
             (one file is either native gateway configuration or Istio / Gateway API documents)",
        ));
    };
    let Some(api) = api.as_str().map(str::to_string) else {
        return Err(doc.err("apiVersion", format!("expected a string, found {}", kind_of(api))));
    };
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
    if kind == "List" && api == "v1" {
        // What `kubectl get -o yaml` writes: each item is an object of its own.
        let Some(items) = value.get("items").and_then(Value::as_sequence) else {
            return Err(doc.err("items", "a List needs a list of items"));
        };
        for (i, item) in items.iter().enumerate() {
            let label = doc_label(&format!("{label} items[{i}]"), item);
            one(file, order, label, item.clone(), objects, warnings)?;
        }
        return Ok(());
    }
    let identity = |key: &str| value.get("metadata").and_then(|m| m.get(key)).and_then(Value::as_str).unwrap_or("").to_string();
    let (name, namespace) = (identity("name"), identity("namespace"));
    let read = match S::read(&api, &kind, value, doc, warnings) {
        Ok(read) => read,
        Err(error) => {
            // The object is rejected on its own; the others load.
            let namespace = if namespace.is_empty() { "default".to_string() } else { namespace };
            let at = Located { file: file.to_string(), label: label.clone(), object: None };
            objects.unreadable.push(Unreadable { kind, namespace, name, at, error });
            return Ok(());
        }
    };
    let Some(Read { group, metadata, spec }) = read else {
        return Ok(());
    };
    let meta = Meta {
        group,
        kind,
        // `kubectl apply` without `-n` puts an object in the `default` namespace.
        namespace: metadata.namespace.filter(|n| !n.is_empty()).unwrap_or_else(|| "default".to_string()),
        name: metadata.name.unwrap_or_default(),
        annotations: metadata.annotations.0.into_iter().map(|(k, v)| (k, v.0)).collect(),
        labels: metadata.labels.0.into_iter().map(|(k, v)| (k, v.0)).collect(),
        at: Located { file: file.to_string(), label: label.clone(), object: None },
        order,
    };
    objects.insert(Object { meta, spec }, warnings);
    Ok(())
}

/// An object's metadata and its spec as `T`, wrapped by the front-end; each field `T` does
/// not declare becomes a warning.
pub(crate) fn spec<T: DeserializeOwned, S>(
    group: &'static str,
    value: Value,
    doc: Doc<'_>,
    warnings: &mut Vec<Warning>,
    wrap: fn(T) -> S,
) -> Result<Option<Read<S>>> {
    let (envelope, ignored) = typed::<Envelope<T>>(value, doc)?;
    for path in ignored {
        // Object bookkeeping (uid, resourceVersion, status, ...) is not routing.
        if path.starts_with("metadata.") || path == "status" || path.starts_with("status.") {
            continue;
        }
        let message = if is_match_condition(&path) {
            "match condition not implemented by this gateway; ignored, so this match is broader than in Istio"
        } else {
            "not implemented by this gateway; ignored"
        };
        warnings.push(doc.warning(&path, message));
    }
    Ok(Some(Read { group, metadata: envelope.metadata, spec: wrap(envelope.spec) }))
}

#[derive(Deserialize)]
struct MetadataOnly {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: Metadata,
}

/// An object of which only the metadata matters (a `Namespace`: its labels), as `spec`.
pub(crate) fn metadata_only<S>(group: &'static str, value: Value, doc: Doc<'_>, spec: S) -> Result<Option<Read<S>>> {
    let (envelope, _spec_and_status) = typed::<MetadataOnly>(value, doc)?;
    Ok(Some(Read { group, metadata: envelope.metadata, spec }))
}

/// `spec.http[0].match[1].queryParams` or `spec.rules[0].matches[1].x`: a condition of a match.
fn is_match_condition(path: &str) -> bool {
    path.rsplit_once('.').is_some_and(|(parent, _)| {
        parent.ends_with(']') && ((parent.starts_with("spec.http[") && parent.contains("].match[")) || parent.contains("].matches["))
    })
}

impl<S> Read<S> {
    /// The same object, its spec wrapped (a front-end's kind into the gateway's set of kinds).
    pub fn map<T>(self, wrap: impl FnOnce(S) -> T) -> Read<T> {
        Read { group: self.group, metadata: self.metadata, spec: wrap(self.spec) }
    }
}
