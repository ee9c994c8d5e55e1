//! The configuration formats, each read into its own serde types and lowered into the sources
//! validation resolves: [`native`] (the gateway's own YAML), [`istio`] (`networking.istio.io`)
//! and [`gateway_api`] (`gateway.networking.k8s.io`). Nothing past the sources knows which
//! format a route came from.
//!
//! Each format is a folder: `spec.rs` holds its data-only serde types, the other modules lower
//! them. The two Kubernetes formats share the rules in [`crate::k8s`] and report through the
//! translation context ([`crate::context`]); neither imports the other.

pub(crate) mod gateway_api;
pub(crate) mod istio;
pub(crate) mod native;

use std::collections::BTreeSet;

use serde_norway::Value;

use crate::context::Translation;
use crate::de::{Doc, Result};
use crate::error::Warning;
use crate::k8s::{Kinds, Objects, Read};
use crate::status::ObjectId;

/// A Kubernetes object's spec, in the types of the front-end its group belongs to.
pub(crate) enum Spec {
    Istio(istio::Kind),
    GatewayApi(gateway_api::Kind),
}

impl Kinds for Spec {
    fn read(api: &str, kind: &str, value: Value, doc: Doc<'_>, warnings: &mut Vec<Warning>) -> Result<Option<Read<Spec>>> {
        use gateway_api::GROUP as GATEWAY_API;
        use istio::GROUP as ISTIO;
        if api == "v1" && kind == "Namespace" {
            // Only its labels matter: a Gateway API listener selects namespaces by them.
            return Ok(gateway_api::read_namespace(value, doc)?.map(|r| r.map(Spec::GatewayApi)));
        }
        let (group, version) = api.split_once('/').unwrap_or(("", api));
        let group = match group {
            ISTIO if istio::VERSIONS.contains(&version) => ISTIO,
            GATEWAY_API if gateway_api::VERSIONS.contains(&version) => GATEWAY_API,
            ISTIO => {
                return Err(doc.err("apiVersion", format!("unsupported apiVersion \"{api}\" (expected {ISTIO}/v1alpha3, v1beta1 or v1)")));
            }
            GATEWAY_API => {
                return Err(doc.err("apiVersion", format!("unsupported apiVersion \"{api}\" (expected {GATEWAY_API}/v1 or v1beta1)")));
            }
            _ => {
                warnings.push(doc.warning("", format!("apiVersion \"{api}\" is not {ISTIO} or {GATEWAY_API}; document ignored")));
                return Ok(None);
            }
        };
        if kind.is_empty() {
            return Err(doc.err("kind", "required key is missing"));
        }
        let read = if group == ISTIO {
            istio::read(kind, value, doc, warnings)?.map(|r| r.map(Spec::Istio))
        } else {
            gateway_api::read(kind, value, doc, warnings)?.map(|r| r.map(Spec::GatewayApi))
        };
        if read.is_none() {
            warnings.push(doc.warning("", format!("kind {kind} is not implemented by this gateway; document ignored")));
        }
        Ok(read)
    }
}

/// Lowers every Kubernetes object, by front-end: Istio's first, then the Gateway API's (whose
/// routes are ordered by precedence, after every other route).
/// Objects in `excluded` (rejected) are left out.
pub(crate) fn lower(objects: &Objects<Spec>, excluded: &BTreeSet<ObjectId>, translation: &mut Translation) -> Result<()> {
    istio::build(
        translation,
        &objects.of(excluded, |s| match s {
            Spec::Istio(k) => Some(k),
            Spec::GatewayApi(_) => None,
        }),
    )?;
    gateway_api::build(
        translation,
        &objects.of(excluded, |s| match s {
            Spec::GatewayApi(k) => Some(k),
            Spec::Istio(_) => None,
        }),
    )
}
