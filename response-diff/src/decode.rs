//! Undoing `content-encoding` before bodies are compared, with a cap against decompression bombs.

use std::io::Read;

use http::HeaderMap;
use http::header::CONTENT_ENCODING;

use crate::SkipReason;

/// Decoded bodies never grow past this, whatever the captured size.
pub(crate) const MAX_DECODED: usize = 16 * 1024 * 1024;
/// A decoded body may be this many times its captured size ...
const MAX_RATIO: usize = 16;
/// ... but small bodies may always grow to this (tiny, highly compressible JSON is common).
const MIN_DECODED_ALLOWANCE: usize = 1024 * 1024;

/// The content codings of a response, in the order they were applied (identity dropped).
pub(crate) fn codings(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t).trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "identity")
        .collect()
}

/// The body with every content coding undone, last applied first.
pub(crate) fn decode(body: &[u8], codings: &[String]) -> Result<Vec<u8>, SkipReason> {
    let limit = body.len().saturating_mul(MAX_RATIO).clamp(MIN_DECODED_ALLOWANCE, MAX_DECODED);
    let mut current = body.to_vec();
    for coding in codings.iter().rev() {
        current = match coding.as_str() {
            "gzip" | "x-gzip" => read_capped(flate2::read::MultiGzDecoder::new(&current[..]), limit, coding)?,
            // RFC 9110 says zlib-wrapped, but some servers send raw deflate: accept both.
            "deflate" => read_capped(flate2::read::ZlibDecoder::new(&current[..]), limit, coding).or_else(|err| match err {
                SkipReason::BodyOverCap => Err(err),
                _ => read_capped(flate2::read::DeflateDecoder::new(&current[..]), limit, coding),
            })?,
            "br" => read_capped(brotli::Decompressor::new(&current[..], 4096), limit, coding)?,
            other => return Err(SkipReason::UndecodableEncoding(other.to_owned())),
        };
    }
    Ok(current)
}

fn read_capped(reader: impl Read, limit: usize, coding: &str) -> Result<Vec<u8>, SkipReason> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut out).map_err(|err| SkipReason::UndecodableEncoding(format!("{coding}: {err}")))?;
    if out.len() > limit {
        return Err(SkipReason::BodyOverCap);
    }
    Ok(out)
}
