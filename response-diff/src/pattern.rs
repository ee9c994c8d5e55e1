//! Request paths reduced to the shape of the endpoint they address, so that what is learned on
//! `/shop/customers/1254.json` also holds for `/shop/customers/375.json`.

/// A request path with its query and fragment dropped and every identifier-like segment (or
/// identifier-like name before an extension) replaced by `{id}`:
///
/// | path | pattern |
/// |---|---|
/// | `/users/42/orders?x=1` | `/users/{id}/orders` |
/// | `/shop/customers/1254.json` | `/shop/customers/{id}.json` |
/// | `/files/3f2b9c1e-aa00-4f6e-9c3e-0b1d2e3f4a5b` | `/files/{id}` |
/// | `/blobs/sha256:9f86d081884c7d65` | `/blobs/{id}` |
/// | `/reports/2026-12-01/summary` | `/reports/{id}/summary` |
/// | `/v2/items/7,3` | `/v2/items/{id}` |
///
/// What counts as an identifier: a number (`42`, `-3`, `1.5`), a list of them (`7,3`), a date or
/// time (`2026-12-01`, `20261201T101500Z`), a UUID, a hash (8 or more hex digits, or
/// `algorithm:hex`), and a token that mixes letters with at least two digits (`ab12cd`, `u_9x8k`)
/// once it is 6 characters long. Names with a version or a count in them that are part of the
/// API's shape stay as they are: `v2`, `api`, `h2c`, `index`, `page2` (too short) ...
pub fn path_pattern(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let (stem, extension) = split_extension(segment);
        if is_identifier(stem) {
            out.push_str("{id}");
            out.push_str(extension);
        } else {
            out.push_str(segment);
        }
    }
    if out.is_empty() { "/".to_owned() } else { out }
}

/// `1254.json` is (`1254`, `.json`): an extension is a final `.` and 1 to 5 letters (an
/// alphanumeric one such as `.mp4` too, when it starts with a letter).
fn split_extension(segment: &str) -> (&str, &str) {
    match segment.rfind('.') {
        Some(dot) if dot > 0 => {
            let extension = &segment[dot + 1..];
            let plausible = (1..=5).contains(&extension.len())
                && extension.starts_with(|c: char| c.is_ascii_alphabetic())
                && extension.bytes().all(|b| b.is_ascii_alphanumeric());
            if plausible { (&segment[..dot], &segment[dot..]) } else { (segment, "") }
        }
        _ => (segment, ""),
    }
}

fn is_identifier(segment: &str) -> bool {
    if segment.is_empty() {
        return false;
    }
    let bytes = segment.as_bytes();
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    // Numbers, lists of numbers, dates and times: digits with separators only.
    let numeric = bytes.iter().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.' | b',' | b':' | b'_' | b'+'));
    if numeric {
        return true;
    }
    // A compact timestamp such as 20261201T101500Z.
    if digits >= 8 && bytes.iter().all(|b| b.is_ascii_digit() || matches!(b, b'T' | b'Z' | b'-' | b':' | b'.')) {
        return true;
    }
    // `sha256:…`, `md5-…`: an algorithm name then a hash.
    if let Some((name, hash)) = segment.split_once([':', '-'])
        && name.len() <= 10
        && name.bytes().all(|b| b.is_ascii_alphanumeric())
        && hash.len() >= 8
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return true;
    }
    let hex_like = bytes.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-');
    if hex_like && segment.len() >= 8 {
        return true;
    }
    digits >= 2 && segment.len() >= 6 && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::path_pattern;

    #[test]
    fn identifiers_anywhere_in_the_path_become_one_pattern() {
        let cases = [
            ("/users/42/orders?x=1", "/users/{id}/orders"),
            ("/users/42/items/3f2b9c1e-aa00-4f6e-9c3e-0b1d2e3f4a5b", "/users/{id}/items/{id}"),
            ("/shop/customers/1254.json", "/shop/customers/{id}.json"),
            ("/shop/customers/375.json?_shape=array", "/shop/customers/{id}.json"),
            ("/shop/customers/1254", "/shop/customers/{id}"),
            ("/shop/order_items/7,3.json", "/shop/order_items/{id}.json"),
            ("/reports/2026-12-01/summary", "/reports/{id}/summary"),
            ("/events/2026-12-01T10:15:00Z", "/events/{id}"),
            ("/events/20261201T101500Z.csv", "/events/{id}.csv"),
            ("/blobs/sha256:9f86d081884c7d659a2feaa0c55ad015", "/blobs/{id}"),
            ("/commits/9f86d08188", "/commits/{id}"),
            ("/files/deadbee5.tar", "/files/{id}.tar"),
            ("/prices/-3/1.5", "/prices/{id}/{id}"),
            ("/u/ab12cd/profile", "/u/{id}/profile"),
            ("/12/34/56", "/{id}/{id}/{id}"),
        ];
        for (path, pattern) in cases {
            assert_eq!(path_pattern(path), pattern, "{path}");
        }
    }

    #[test]
    fn the_api_shape_stays() {
        let cases = [
            ("/index", "/index"),
            ("", "/"),
            ("/", "/"),
            ("/v2/items", "/v2/items"),
            ("/api/h2c/page2", "/api/h2c/page2"),
            ("/shop.json", "/shop.json"),
            ("/shop/orders.json", "/shop/orders.json"),
            ("/static/app.css", "/static/app.css"),
            ("/-/versions.json", "/-/versions.json"),
            ("/decade", "/decade"),
            ("/report.v2", "/report.v2"),
        ];
        for (path, pattern) in cases {
            assert_eq!(path_pattern(path), pattern, "{path}");
        }
    }
}
