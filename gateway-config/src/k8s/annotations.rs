//! The gateway's own annotations on a VirtualService or an HTTPRoute: they turn on response
//! comparison for its mirrors and set their verdict, which neither API can say.

use super::object::Meta;
use crate::de::{Result, check_percent, header_name, json_path};
use crate::model::{CompareSpec, VerdictSpec};

/// `"true"` turns on response comparison for the object's mirrors.
pub const ANNOTATION_COMPARE: &str = "mirror.gateway/compare";
pub const ANNOTATION_IGNORE_PATHS: &str = "mirror.gateway/compare-ignore-paths";
pub const ANNOTATION_IGNORE_HEADERS: &str = "mirror.gateway/compare-ignore-headers";
pub const ANNOTATION_NOISE_PERCENT: &str = "mirror.gateway/noise-percent";
/// `"false"` to turn the verdict off, or `key=value` pairs over the defaults
/// (`"min_compared=200,max_mismatch_rate=0.5%"`); on with the defaults when the mirror compares.
pub const ANNOTATION_VERDICT: &str = "mirror.gateway/verdict";

/// The comparison the object's mirrors make, if its annotations turn one on.
pub(crate) fn compare(o: &Meta) -> Result<Option<CompareSpec>> {
    let doc = o.at.doc();
    let path = |key: &str| format!("metadata.annotations.{key}");
    let Some(on) = o.annotation(ANNOTATION_COMPARE) else {
        return Ok(None);
    };
    match on {
        "true" => {}
        "false" => return Ok(None),
        other => return Err(doc.err(&path(ANNOTATION_COMPARE), format!("expected true or false, found \"{other}\""))),
    }
    let mut spec = CompareSpec::default();
    if let Some(p) = o.annotation(ANNOTATION_IGNORE_PATHS) {
        for text in p.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            spec.ignore_paths.push(json_path(text).map_err(|e| doc.err(&path(ANNOTATION_IGNORE_PATHS), e))?);
        }
    }
    if let Some(h) = o.annotation(ANNOTATION_IGNORE_HEADERS) {
        for name in h.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            spec.ignore_headers.push(header_name(name).map_err(|e| doc.err(&path(ANNOTATION_IGNORE_HEADERS), e))?);
        }
    }
    if let Some(n) = o.annotation(ANNOTATION_NOISE_PERCENT) {
        let p: f64 = n
            .trim()
            .trim_end_matches('%')
            .trim()
            .parse()
            .map_err(|_| doc.err(&path(ANNOTATION_NOISE_PERCENT), format!("expected a number, found \"{n}\"")))?;
        spec.noise_percent = check_percent(p).map_err(|e| doc.err(&path(ANNOTATION_NOISE_PERCENT), e))?;
    }
    Ok(Some(spec))
}

/// The verdict of the object's mirrors: the defaults when they compare, changed or turned off
/// by the annotation.
pub(crate) fn verdict(o: &Meta, compares: bool) -> Result<Option<VerdictSpec>> {
    let doc = o.at.doc();
    let path = format!("metadata.annotations.{ANNOTATION_VERDICT}");
    let Some(text) = o.annotation(ANNOTATION_VERDICT) else {
        return Ok(compares.then(VerdictSpec::default));
    };
    if matches!(text.trim(), "false" | "off") {
        return Ok(None);
    }
    let mut spec = VerdictSpec::default();
    for pair in text.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "true") {
        let (key, value) = pair.split_once('=').ok_or_else(|| doc.err(&path, format!("\"{pair}\" is not key=value")))?;
        spec.set(key.trim(), value).map_err(|e| doc.err(&path, e))?;
    }
    if !compares {
        return Err(doc.err(&path, format!("a verdict needs {ANNOTATION_COMPARE}: \"true\": the mismatch rate is its main evidence")));
    }
    Ok(Some(spec))
}
