//! The Kubernetes rules every Kubernetes front-end (Istio, Gateway API) shares:
//!
//! - [`object`]: objects across files, identified as `kubectl apply` identifies them (group,
//!   kind, namespace, name); a later object replaces an earlier one and keeps its place.
//! - [`read`]: documents (and `kind: List` items) into objects, each spec read into its
//!   front-end's types through [`Kinds`], every undeclared field a warning naming it.
//! - [`names`]: namespace qualification of hosts and references, route names.
//! - [`annotations`]: the gateway's own `mirror.gateway/*` annotations.

pub(crate) mod annotations;
pub(crate) mod names;
mod object;
mod read;

pub(crate) use object::{Meta, Objects, Ref};
pub(crate) use read::{Kinds, Read, collect, metadata_only, spec};
