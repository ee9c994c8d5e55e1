//! [`MirrorKey`]: which mirror of which route. What is kept across reloads per mirror
//! (statistics, comparisons and their learned noise) is kept under it; the admin API, the
//! `gateway verdict` CLI and the tests name a mirror by it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A mirror of a route. Shown (and sent in `/mirrors` map keys) as `route/mirror`. Route and
/// mirror names may themselves hold a `/` (an Istio route `namespace/name`, a mirror named after
/// its destination `shop/v2`), so a key is never split back from that text: a name a user gives
/// is looked up among the keys that exist ([`MirrorKey::lookup`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MirrorKey {
    pub route: String,
    pub mirror: String,
}

/// Why a name given for a mirror names none, or more than one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// No mirror has that name (`known`: every mirror there is). An HTTP API answers 404.
    Unknown { known: Vec<MirrorKey> },
    /// The name is a mirror's on several routes (`candidates`): say which with `route/mirror`.
    /// An HTTP API answers 409.
    Ambiguous { candidates: Vec<MirrorKey> },
}

impl MirrorKey {
    pub fn new(route: &str, mirror: &str) -> Self {
        Self { route: route.to_owned(), mirror: mirror.to_owned() }
    }

    /// Whether `name` names this mirror: its name alone, or `route/mirror`.
    pub fn is_named(&self, name: &str) -> bool {
        self.mirror == name || name.strip_prefix(self.route.as_str()).and_then(|rest| rest.strip_prefix('/')) == Some(self.mirror.as_str())
    }

    /// The one item of `items` (each with its key, by `key`) that `name` names.
    pub fn lookup<'a, T>(name: &str, items: impl IntoIterator<Item = &'a T>, key: impl Fn(&T) -> MirrorKey) -> Result<&'a T, Unresolved> {
        let keyed: Vec<(MirrorKey, &T)> = items.into_iter().map(|item| (key(item), item)).collect();
        let found: Vec<&(MirrorKey, &T)> = keyed.iter().filter(|(key, _)| key.is_named(name)).collect();
        match found.as_slice() {
            [(_, one)] => Ok(one),
            [] => Err(Unresolved::Unknown { known: keyed.into_iter().map(|(key, _)| key).collect() }),
            several => Err(Unresolved::Ambiguous { candidates: several.iter().map(|(key, _)| key.clone()).collect() }),
        }
    }
}

impl fmt::Display for MirrorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.route, self.mirror)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_the_mirror_alone_or_route_slash_mirror_even_with_slashes_in_either() {
        let keys = [MirrorKey::new("shop", "v2"), MirrorKey::new("cart", "v2"), MirrorKey::new("ns/vs", "app/v3")];
        let lookup = |name: &str| MirrorKey::lookup(name, &keys, MirrorKey::clone).map(ToString::to_string);
        assert_eq!(lookup("shop/v2"), Ok("shop/v2".to_owned()));
        assert_eq!(lookup("app/v3"), Ok("ns/vs/app/v3".to_owned()));
        assert_eq!(lookup("ns/vs/app/v3"), Ok("ns/vs/app/v3".to_owned()));
        assert_eq!(lookup("v2"), Err(Unresolved::Ambiguous { candidates: keys[..2].to_vec() }));
        assert_eq!(lookup("ns/app/v3"), Err(Unresolved::Unknown { known: keys.to_vec() }));
        assert_eq!(lookup("shop/"), Err(Unresolved::Unknown { known: keys.to_vec() }));
        assert_eq!(MirrorKey::new("ns/vs", "app/v3").to_string(), "ns/vs/app/v3");
    }
}
