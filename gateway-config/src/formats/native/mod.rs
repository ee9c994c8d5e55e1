//! The native front-end: the gateway's own YAML, as specified in `docs/CONTRACT.md` ("Native
//! gateway configuration"). [`spec`] is what a document may say, [`lower`] what it adds to the
//! sources validation resolves.

mod lower;
mod spec;

pub(crate) use lower::load;
