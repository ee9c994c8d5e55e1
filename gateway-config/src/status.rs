//! Per-object status, as a Kubernetes controller reports it: each Kubernetes object is
//! accepted, or rejected with its reason, on its own; a rejected object never stops the others
//! from loading. The conditions and reasons are the Gateway API's (`Accepted`, `ResolvedRefs`;
//! `NotAllowedByListeners`, `BackendNotFound`, `InvalidKind`, ...) where it has them.
//!
//! How an object comes to be rejected: every error raised while reading, lowering or validating
//! names the object it is in ([`crate::ConfigError`] carries it from the document it came from).
//! Loading then drops that object (to the others it does not exist) and starts over, until the
//! rest loads. An error in no object (a file that is not YAML, a native file) still refuses the
//! configuration: which objects a broken file held cannot be known, and dropping them would
//! delete them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An object's place in the load order (its index among the Kubernetes objects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjectId(pub usize);

/// Why a condition has its status: the Gateway API's reason names where it has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// Accepted=True.
    Accepted,
    /// ResolvedRefs=True.
    ResolvedRefs,
    /// The object says something invalid (a bad value, a missing key, an unknown host).
    Invalid,
    /// A value the gateway does not support.
    UnsupportedValue,
    /// A route's parent allows no routes of its namespace or kind.
    NotAllowedByListeners,
    /// No listener hostname intersects the route's hostnames.
    NoMatchingListenerHostname,
    /// No listener of the parent matches the `sectionName` or `port`.
    NoMatchingParent,
    /// A backend that nothing defines.
    BackendNotFound,
    /// A backend of a kind the gateway does not implement.
    InvalidKind,
    /// A backend in another namespace without a ReferenceGrant there.
    RefNotPermitted,
    /// A listener protocol the gateway does not serve.
    UnsupportedProtocol,
    /// Valid, but for another gateway (not in `scope`, a mesh-only route, ...): not served here.
    NotThisGateway,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Accepted => "Accepted",
            Reason::ResolvedRefs => "ResolvedRefs",
            Reason::Invalid => "Invalid",
            Reason::UnsupportedValue => "UnsupportedValue",
            Reason::NotAllowedByListeners => "NotAllowedByListeners",
            Reason::NoMatchingListenerHostname => "NoMatchingListenerHostname",
            Reason::NoMatchingParent => "NoMatchingParent",
            Reason::BackendNotFound => "BackendNotFound",
            Reason::InvalidKind => "InvalidKind",
            Reason::RefNotPermitted => "RefNotPermitted",
            Reason::UnsupportedProtocol => "UnsupportedProtocol",
            Reason::NotThisGateway => "NotThisGateway",
        }
    }
}

/// The conditions an object's status has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionType {
    Accepted,
    ResolvedRefs,
}

/// One condition: `Accepted=False NotAllowedByListeners: ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: ConditionType,
    /// `"True"` or `"False"`, as Kubernetes writes it.
    #[serde(with = "true_false")]
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

mod true_false {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(status: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if *status { "True" } else { "False" })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match String::deserialize(d)?.as_str() {
            "True" => Ok(true),
            "False" => Ok(false),
            other => Err(serde::de::Error::custom(format!("condition status {other:?} (True or False)"))),
        }
    }
}

/// Where an object stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectState {
    /// Served (some rules may still answer 500: see its `ResolvedRefs` condition).
    Accepted,
    /// Not served, for the reason its `Accepted` condition gives; the others are unaffected.
    Rejected,
    /// Valid, and meant for another gateway.
    ScopedOut,
}

impl ObjectState {
    pub const ALL: [ObjectState; 3] = [ObjectState::Accepted, ObjectState::Rejected, ObjectState::ScopedOut];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectState::Accepted => "accepted",
            ObjectState::Rejected => "rejected",
            ObjectState::ScopedOut => "scoped_out",
        }
    }
}

/// One Kubernetes object's status: `--check-config` prints it, the admin `/config` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectStatus {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub file: String,
    /// `document 4 (HTTPRoute echo)`.
    pub document: String,
    pub state: ObjectState,
    pub conditions: Vec<Condition>,
}

impl ObjectStatus {
    /// `HTTPRoute shop/echo`.
    pub fn title(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    /// For a rejected object, why, as one line naming the file, the path and the problem (the
    /// line a configuration error would be).
    pub fn rejection(&self) -> Option<String> {
        if self.state != ObjectState::Rejected {
            return None;
        }
        let condition = self.conditions.iter().find(|c| c.kind == ConditionType::Accepted)?;
        Some(format!("{}: {}", self.file, condition.message))
    }

    /// `Accepted=True (Accepted), ResolvedRefs=False (InvalidKind: ...)`.
    pub fn summary(&self) -> String {
        self.conditions
            .iter()
            .map(|c| {
                let status = if c.status { "True" } else { "False" };
                if c.message.is_empty() {
                    format!("{:?}={status} ({})", c.kind, c.reason.as_str())
                } else {
                    format!("{:?}={status} ({}: {})", c.kind, c.reason.as_str(), c.message)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What lowering said about each object, besides errors (which reject it).
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorded {
    by_object: BTreeMap<ObjectId, Notes>,
}

#[derive(Debug, Clone, Default)]
struct Notes {
    /// Valid, for another gateway.
    scoped_out: Option<(Reason, String)>,
    /// Not accepted, without an error: a route its parent does not allow.
    not_accepted: Option<(Reason, String)>,
    /// ResolvedRefs=False reasons: the rules concerned answer 500.
    unresolved: Vec<(Reason, String)>,
}

impl Recorded {
    pub fn scoped_out(&mut self, id: ObjectId, reason: Reason, why: String) {
        self.by_object.entry(id).or_default().scoped_out.get_or_insert((reason, why));
    }

    pub fn not_accepted(&mut self, id: ObjectId, reason: Reason, why: String) {
        self.by_object.entry(id).or_default().not_accepted.get_or_insert((reason, why));
    }

    pub fn unresolved(&mut self, id: ObjectId, reason: Reason, why: String) {
        self.by_object.entry(id).or_default().unresolved.push((reason, why));
    }

    /// The status of the object `id`, accepted unless lowering said otherwise.
    pub fn status(&self, id: ObjectId, has_refs: bool) -> (ObjectState, Vec<Condition>) {
        let notes = self.by_object.get(&id);
        let accepted = |status: bool, reason: Reason, message: &str| Condition {
            kind: ConditionType::Accepted,
            status,
            reason,
            message: message.to_string(),
        };
        if let Some((reason, why)) = notes.and_then(|n| n.not_accepted.as_ref()) {
            return (ObjectState::Rejected, vec![accepted(false, *reason, why)]);
        }
        if let Some((reason, why)) = notes.and_then(|n| n.scoped_out.as_ref()) {
            return (ObjectState::ScopedOut, vec![accepted(false, *reason, why)]);
        }
        let mut conditions = vec![accepted(true, Reason::Accepted, "")];
        let unresolved = notes.map(|n| n.unresolved.as_slice()).unwrap_or_default();
        if let Some((reason, _)) = unresolved.first() {
            let message = unresolved.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
            conditions.push(Condition { kind: ConditionType::ResolvedRefs, status: false, reason: *reason, message });
        } else if has_refs {
            conditions.push(Condition {
                kind: ConditionType::ResolvedRefs,
                status: true,
                reason: Reason::ResolvedRefs,
                message: String::new(),
            });
        }
        (ObjectState::Accepted, conditions)
    }
}
