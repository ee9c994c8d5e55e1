//! Kubernetes objects across files, as `kubectl apply` sees them: each document (or item of a
//! `kind: List`) is one object identified by group, kind, namespace and name; a later object
//! with the same identity replaces the earlier one (with a notice) and keeps its place in the
//! load order, the way an applied update keeps an object's creation time.
//!
//! Each object's spec is read into the typed structs of its front-end ([`crate::istio`],
//! [`crate::gateway_api`]); fields they do not declare become warnings naming them.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_norway::Value;

use crate::Warning;
use crate::de::{Doc, Ordered, Result, Scalar, kind_of, typed};
use crate::{gateway_api, istio};

const ISTIO: &str = "networking.istio.io";
const ISTIO_VERSIONS: &[&str] = &["v1alpha3", "v1beta1", "v1"];
const GATEWAY_API: &str = "gateway.networking.k8s.io";
const GATEWAY_API_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// Where an object was written.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub file: String,
    pub label: String,
}

impl Located {
    pub fn doc(&self) -> Doc<'_> {
        Doc { file: &self.file, label: &self.label }
    }
}

pub(crate) enum Spec {
    IstioGateway(istio::GatewaySpec),
    VirtualService(istio::VirtualServiceSpec),
    DestinationRule(istio::DestinationRuleSpec),
    ServiceEntry(istio::ServiceEntrySpec),
    Gateway(gateway_api::GatewaySpec),
    HttpRoute(gateway_api::HttpRouteSpec),
    ReferenceGrant(gateway_api::ReferenceGrantSpec),
}

pub(crate) struct Object {
    pub group: &'static str,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub annotations: Vec<(String, String)>,
    pub spec: Spec,
    pub at: Located,
    /// (file, document) of the first object with this identity.
    pub order: (usize, usize),
}

impl Object {
    /// `VirtualService test/target`.
    pub fn title(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Every object of every file, in load order.
#[derive(Default)]
pub(crate) struct Objects {
    pub items: Vec<Object>,
    /// Objects replaced by a later one: (what, where it was, where the replacement is).
    pub replaced: Vec<(String, Located, Located)>,
}

impl Objects {
    fn insert(&mut self, mut object: Object, warnings: &mut Vec<Warning>) {
        let same =
            |o: &&mut Object| o.group == object.group && o.kind == object.kind && o.namespace == object.namespace && o.name == object.name;
        match self.items.iter_mut().find(same) {
            Some(existing) => {
                warnings.push(object.at.doc().warning(
                    "",
                    format!(
                        "replaces {} from {}: {} (as kubectl apply would: the later object wins)",
                        existing.title(),
                        existing.at.file,
                        existing.at.label
                    ),
                ));
                self.replaced.push((existing.title(), existing.at.clone(), object.at.clone()));
                object.order = existing.order;
                *existing = object;
            }
            None => self.items.push(object),
        }
    }
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
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    annotations: Ordered<Scalar>,
    // Labels select objects in Kubernetes; nothing here selects by them.
    #[serde(default, rename = "labels")]
    _labels: Ordered<Scalar>,
}

/// Adds the objects of one file (documents numbered from 1, as positioned in the stream).
pub(crate) fn collect(
    file: &str,
    file_index: usize,
    docs: Vec<(usize, Value)>,
    objects: &mut Objects,
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

fn one(file: &str, order: (usize, usize), label: String, value: Value, objects: &mut Objects, warnings: &mut Vec<Warning>) -> Result<()> {
    let doc = Doc { file, label: &label };
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
    let (group, version) = api.split_once('/').unwrap_or(("", api.as_str()));
    let group = match group {
        ISTIO if ISTIO_VERSIONS.contains(&version) => ISTIO,
        GATEWAY_API if GATEWAY_API_VERSIONS.contains(&version) => GATEWAY_API,
        ISTIO => {
            return Err(doc.err("apiVersion", format!("unsupported apiVersion \"{api}\" (expected {ISTIO}/v1alpha3, v1beta1 or v1)")));
        }
        GATEWAY_API => {
            return Err(doc.err("apiVersion", format!("unsupported apiVersion \"{api}\" (expected {GATEWAY_API}/v1 or v1beta1)")));
        }
        _ => {
            warnings.push(doc.warning("", format!("apiVersion \"{api}\" is not {ISTIO} or {GATEWAY_API}; document ignored")));
            return Ok(());
        }
    };
    let at = Located { file: file.to_string(), label: label.clone() };
    let (meta, spec) = match (group, kind.as_str()) {
        (_, "") => return Err(doc.err("kind", "required key is missing")),
        (ISTIO, "Gateway") => parse(value, doc, warnings, Spec::IstioGateway)?,
        (ISTIO, "VirtualService") => parse(value, doc, warnings, Spec::VirtualService)?,
        (ISTIO, "DestinationRule") => parse(value, doc, warnings, Spec::DestinationRule)?,
        (ISTIO, "ServiceEntry") => parse(value, doc, warnings, Spec::ServiceEntry)?,
        (GATEWAY_API, "Gateway") => parse(value, doc, warnings, Spec::Gateway)?,
        (GATEWAY_API, "HTTPRoute") => parse(value, doc, warnings, Spec::HttpRoute)?,
        (GATEWAY_API, "ReferenceGrant") => parse(value, doc, warnings, Spec::ReferenceGrant)?,
        (_, other) => {
            warnings.push(doc.warning("", format!("kind {other} is not implemented by this gateway; document ignored")));
            return Ok(());
        }
    };
    let object = Object {
        group,
        kind,
        // `kubectl apply` without `-n` puts an object in the `default` namespace.
        namespace: meta.namespace.filter(|n| !n.is_empty()).unwrap_or_else(|| "default".to_string()),
        name: meta.name.unwrap_or_default(),
        annotations: meta.annotations.0.into_iter().map(|(k, v)| (k, v.0)).collect(),
        spec,
        at,
        order,
    };
    objects.insert(object, warnings);
    Ok(())
}

/// The typed object; each field it does not declare becomes a warning.
fn parse<S: DeserializeOwned>(value: Value, doc: Doc<'_>, warnings: &mut Vec<Warning>, wrap: fn(S) -> Spec) -> Result<(Metadata, Spec)> {
    let (envelope, ignored) = typed::<Envelope<S>>(value, doc)?;
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
    Ok((envelope.metadata, wrap(envelope.spec)))
}

/// `spec.http[0].match[1].queryParams` or `spec.rules[0].matches[1].x`: a condition of a match.
fn is_match_condition(path: &str) -> bool {
    path.rsplit_once('.').is_some_and(|(parent, _)| {
        parent.ends_with(']') && ((parent.starts_with("spec.http[") && parent.contains("].match[")) || parent.contains("].matches["))
    })
}
