//! Objects as `kubectl apply` sees them: each is identified by group, kind, namespace and name;
//! a later object with the same identity replaces the earlier one (with a notice) and keeps its
//! place in the load order, the way an applied update keeps an object's creation time.

use crate::de::Doc;
use std::collections::BTreeSet;

use crate::error::{ConfigError, Warning};
use crate::status::ObjectId;

/// Where an object was written.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub file: String,
    /// `document 4 (VirtualService target)`, `document 1 (List) items[2] (...)`.
    pub label: String,
    /// The object's place in [`Objects::items`] once inserted.
    pub object: Option<ObjectId>,
}

impl Located {
    pub fn doc(&self) -> Doc<'_> {
        Doc { file: &self.file, label: &self.label, object: self.object }
    }
}

/// What Kubernetes knows of an object besides its spec: its identity, its annotations, where
/// it was written and its place in the load order.
pub(crate) struct Meta {
    pub group: &'static str,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub annotations: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    pub at: Located,
    /// (file, document) of the first object with this identity.
    pub order: (usize, usize),
}

impl Meta {
    /// `VirtualService test/target`.
    pub fn title(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn same_identity(&self, other: &Meta) -> bool {
        self.group == other.group && self.kind == other.kind && self.namespace == other.namespace && self.name == other.name
    }
}

/// An object whose spec a front-end read into its own types (`S`).
pub(crate) struct Object<S> {
    pub meta: Meta,
    pub spec: S,
}

/// An object seen by one front-end: its metadata and its spec in that front-end's types.
pub(crate) struct Ref<'a, S> {
    pub meta: &'a Meta,
    pub spec: &'a S,
}

impl<S> Clone for Ref<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Ref<'_, S> {}

/// Every object of every file, in load order.
pub(crate) struct Objects<S> {
    pub items: Vec<Object<S>>,
    /// Objects replaced by a later one: (what, where it was, where the replacement is).
    pub replaced: Vec<(String, Located, Located)>,
    /// Documents whose spec does not read (a wrong type, a missing required key): each is
    /// rejected on its own, and an earlier object of the same identity stays, as it would in a
    /// cluster whose API server refused the update.
    pub unreadable: Vec<Unreadable>,
}

/// A document that names an object but does not read as one.
pub(crate) struct Unreadable {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub at: Located,
    pub error: ConfigError,
}

impl<S> Default for Objects<S> {
    fn default() -> Self {
        Objects { items: Vec::new(), replaced: Vec::new(), unreadable: Vec::new() }
    }
}

impl<S> Objects<S> {
    pub fn insert(&mut self, mut object: Object<S>, warnings: &mut Vec<Warning>) {
        match self.items.iter().position(|o| o.meta.same_identity(&object.meta)) {
            Some(index) => {
                let existing = &mut self.items[index];
                object.meta.at.object = Some(ObjectId(index));
                warnings.push(object.meta.at.doc().warning(
                    "",
                    format!(
                        "replaces {} from {}: {} (as kubectl apply would: the later object wins)",
                        existing.meta.title(),
                        existing.meta.at.file,
                        existing.meta.at.label
                    ),
                ));
                self.replaced.push((existing.meta.title(), existing.meta.at.clone(), object.meta.at.clone()));
                object.meta.order = existing.meta.order;
                *existing = object;
            }
            None => {
                object.meta.at.object = Some(ObjectId(self.items.len()));
                self.items.push(object);
            }
        }
    }

    /// The objects one front-end reads (`pick` says which, and gives their spec), in load order.
    /// Rejected objects (`excluded`) are left out: to the others they do not exist.
    pub fn of<T>(&self, excluded: &BTreeSet<ObjectId>, pick: impl Fn(&S) -> Option<&T>) -> Vec<Ref<'_, T>> {
        self.items
            .iter()
            .enumerate()
            .filter(|(i, _)| !excluded.contains(&ObjectId(*i)))
            .filter_map(|(_, o)| pick(&o.spec).map(|spec| Ref { meta: &o.meta, spec }))
            .collect()
    }
}
