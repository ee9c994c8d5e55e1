//! The tutorial's `target` service. Its behaviour lives in `mesh-service`; this crate only fixes the
//! name and the version, which the Cargo feature `v2` selects at build time. The version is a
//! value, so tests and local demos can run v1 and v2 side by side in one process.

use mesh_service::ServiceIdentity;

/// The service name on spans and logs (`service.name`).
pub const NAME: &str = "target";

/// The version this binary was built as: `v1`, or `v2` with `--features v2`.
pub const VERSION: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };

/// The identity of a target service of the given version.
pub fn identity(version: &str) -> ServiceIdentity {
    ServiceIdentity { name: NAME.to_owned(), version: version.to_owned() }
}
