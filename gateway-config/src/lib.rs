//! The gateway's routing configuration: one internal model and the front-ends that make it.
//!
//! ```text
//! files -> documents -> formats/{native, istio, gateway_api} -> sources -> validate -> model
//!                       (spec: serde types; lowering)     (names)            (parsed values)
//! ```
//!
//! - [`model`]: the ordered [`RouteTable`] of matchers, rewrites, weighted destinations, mirror
//!   policies and destinations resolved to endpoints, every value parsed (authorities, header
//!   values, JSON paths, regexes, statuses). It is all the gateway sees.
//! - `formats`: one folder per format, each a data-only `spec` (serde types) and the modules
//!   that lower it: `native` (the gateway's own YAML, `docs/CONTRACT.md`), `istio`
//!   (`networking.istio.io`), `gateway_api` (`gateway.networking.k8s.io`). Fields the gateway
//!   does not implement become [`Warning`]s, never silence.
//! - `k8s`: what the Kubernetes formats share: object identity and replacement, reading
//!   documents into objects, namespace qualification and names, the `mirror.gateway/*`
//!   annotations. `context`: the translation context lowering carries, per object.
//! - `sources`: what the front-ends hand over (destinations still names); `validate` runs once
//!   on it, whichever format: resolves names to endpoints, parses what is left and checks the
//!   table (unknown names, weights, duplicates, ...). Whatever passes it is served.
//! - `matching`: pure route matching ([`RouteTable::find`]) and URI rewriting
//!   ([`RouteHit::rewrite_path`]); `normalize`: request path normalisation.
//!
//! Several files are merged in order ([`load_files`]); each file is either native or Kubernetes
//! documents (Istio, Gateway API), and the kinds can be mixed across files (e.g. the tutorial's
//! `istio.yaml` plus a file of ServiceEntries saying where the workloads are). Every error is
//! one line naming the file, a path inside it and the problem.

mod context;
mod de;
mod error;
mod formats;
mod k8s;
mod load;
mod matching;
pub mod model;
pub mod normalize;
mod options;
mod report;
mod retry;
mod sources;
mod status;
mod validate;

pub use de::parse_size;
pub use error::{ConfigError, Warning};
pub use k8s::annotations::{
    ANNOTATION_COMPARE, ANNOTATION_IGNORE_HEADERS, ANNOTATION_IGNORE_PATHS, ANNOTATION_NOISE_PERCENT, ANNOTATION_VERDICT,
};
pub use load::{Loaded, load_files, load_files_with, load_str, load_texts, load_texts_with};
pub use matching::{Lookup, RouteHit, https_redirect};
pub use model::{
    Answer, CaptureSpec, CompareSpec, Destination, DestinationId, Endpoint, HeaderMatch, HeaderOps, IgnorePath, MethodSet, MirrorPolicy,
    OutlierPolicy, PathRedirect, PlainHttp, PromoteSpec, Protocol, QueryMatch, Redirect, RetryOn, RetryPolicy, Route, RouteMatch,
    RouteTable, StringMatch, UriRewrite, VerdictSpec, VirtualHost, WeightedDestination,
};
pub use normalize::{EscapedSlashes, PathNormalization, PathRejected};
pub use options::LoadOptions;
pub use report::FileReport;
pub use status::{Condition, ConditionType, ObjectState, ObjectStatus, Reason};
