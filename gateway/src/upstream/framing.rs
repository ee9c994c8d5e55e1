//! The upstream's response head made safe to relay (RFC 9112 section 6.3, RFC 9110 sections
//! 8.6 and 15.3.5): one framing, stated once, whatever the client speaks.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, StatusCode};

/// The head cannot be relayed: two different `Content-Length`s (which length is the body?).
#[derive(Debug, PartialEq, Eq)]
pub struct ConflictingLengths;

/// Applied to the head as the upstream sent it, before the hop-by-hop rules remove its
/// `Transfer-Encoding`:
/// - `Transfer-Encoding` with `Content-Length`: the length goes. RFC 9112 section 6.3 says the
///   coding wins, and hyper has already read the body as chunked; removing the stale length,
///   rather than answering 502, relays what the upstream really sent, as Envoy and NGINX do.
///   Kept, it would cut the body for an HTTP/1.1 client and be a protocol error over HTTP/2.
/// - `Content-Length: 5, 5` (or two equal fields): folded to `5`; different values: refused.
/// - 204 and 304 carry no `Content-Length` (and hyper gives them no body).
pub fn frame(status: StatusCode, headers: &mut HeaderMap) -> Result<(), ConflictingLengths> {
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED || headers.contains_key(TRANSFER_ENCODING) {
        headers.remove(CONTENT_LENGTH);
        return Ok(());
    }
    let mut fields = headers.get_all(CONTENT_LENGTH).iter();
    let (Some(first), second) = (fields.next(), fields.next()) else {
        return Ok(());
    };
    if second.is_none() && !first.as_bytes().contains(&b',') {
        return Ok(());
    }
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter().flat_map(|v| v.as_bytes().split(|b| *b == b',')).map(<[u8]>::trim_ascii);
    let first = lengths.next().unwrap_or_default();
    if first.is_empty() || !first.iter().all(u8::is_ascii_digit) || lengths.any(|l| l != first) {
        return Err(ConflictingLengths);
    }
    let folded = HeaderValue::from_bytes(first).map_err(|_| ConflictingLengths)?;
    headers.insert(CONTENT_LENGTH, folded);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(fields: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn transfer_encoding_wins_over_content_length() {
        let mut h = head(&[("content-length", "3"), ("transfer-encoding", "chunked")]);
        assert_eq!(frame(StatusCode::OK, &mut h), Ok(()));
        assert!(!h.contains_key("content-length") && h.contains_key("transfer-encoding"));
    }

    #[test]
    fn equal_lengths_are_folded_and_different_ones_refused() {
        let mut listed = head(&[("content-length", "5, 5")]);
        assert_eq!(frame(StatusCode::OK, &mut listed), Ok(()));
        assert_eq!(listed.get_all("content-length").iter().collect::<Vec<_>>(), ["5"]);
        let mut two = head(&[("content-length", "5"), ("content-length", "5")]);
        assert_eq!(frame(StatusCode::OK, &mut two), Ok(()));
        assert_eq!(two.get_all("content-length").iter().collect::<Vec<_>>(), ["5"]);
        assert_eq!(frame(StatusCode::OK, &mut head(&[("content-length", "5, 6")])), Err(ConflictingLengths));
        assert_eq!(frame(StatusCode::OK, &mut head(&[("content-length", "5"), ("content-length", "6")])), Err(ConflictingLengths));
        let mut one = head(&[("content-length", "5")]);
        assert_eq!(frame(StatusCode::OK, &mut one), Ok(()));
        assert_eq!(one["content-length"], "5");
    }

    #[test]
    fn no_content_and_not_modified_carry_no_length() {
        for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
            let mut h = head(&[("content-length", "5")]);
            assert_eq!(frame(status, &mut h), Ok(()));
            assert!(!h.contains_key("content-length"), "{status}");
        }
    }
}
