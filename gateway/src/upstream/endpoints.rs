//! A destination's endpoints as requests choose them: round-robin, passing over ejected ones
//! and, for a retry, the ones already tried; each endpoint's health ([`Ejection`]) beside it.
//!
//! When every endpoint not yet tried is ejected, one of them is chosen all the same (Envoy's
//! panic threshold): ejection steers traffic away from a failing endpoint, it never turns a
//! destination off. When all were tried (one endpoint, or more retries than endpoints), the
//! round-robin goes on among them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::uri::Authority;

use super::outlier::Ejection;
use crate::settings::OutlierSettings;

pub struct Endpoints {
    members: Vec<Member>,
    next: AtomicUsize,
}

struct Member {
    authority: Authority,
    health: Ejection,
}

impl Endpoints {
    pub fn new(list: Vec<Authority>) -> Self {
        Self {
            members: list.into_iter().map(|authority| Member { authority, health: Ejection::default() }).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next endpoint neither ejected nor in `tried` (see the module's rules); `None` when the
    /// destination has none.
    pub fn pick(&self, tried: &[Authority]) -> Option<&Authority> {
        self.pick_at(Instant::now(), tried)
    }

    fn pick_at(&self, now: Instant, tried: &[Authority]) -> Option<&Authority> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        // A retry does not take a turn of the round-robin: the next request goes where it would have.
        let start = if tried.is_empty() { self.next.fetch_add(1, Ordering::Relaxed) } else { self.next.load(Ordering::Relaxed) };
        if n == 1 {
            return Some(&self.members[0].authority);
        }
        let mut ejected = None;
        for i in 0..n {
            let member = &self.members[(start + i) % n];
            if tried.contains(&member.authority) {
                continue;
            }
            if !member.health.ejected_at(now) {
                return Some(&member.authority);
            }
            ejected.get_or_insert(&member.authority);
        }
        Some(ejected.unwrap_or(&self.members[start % n].authority))
    }

    /// An attempt to `endpoint` failed as a gateway failure. Returns how long it is now ejected
    /// for, when this failure ejected it.
    pub fn failed(&self, endpoint: &Authority, settings: &OutlierSettings) -> Option<Duration> {
        self.failed_at(Instant::now(), endpoint, settings)
    }

    fn failed_at(&self, now: Instant, endpoint: &Authority, settings: &OutlierSettings) -> Option<Duration> {
        let member = self.members.iter().find(|m| m.authority == *endpoint)?;
        // Envoy's rule: eject while the share already ejected is under the cap, so one endpoint
        // can always be ejected.
        let capped = || {
            let ejected = self.members.iter().filter(|m| m.health.ejected_at(now)).count();
            ejected > 0 && ejected * 100 >= settings.max_ejection_percent as usize * self.members.len()
        };
        member.health.failed_at_unless(now, &settings.ejection(), capped)
    }

    /// An attempt to `endpoint` was answered other than by a gateway failure.
    pub fn answered(&self, endpoint: &Authority) {
        if let Some(member) = self.members.iter().find(|m| m.authority == *endpoint) {
            member.health.answered();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: OutlierSettings = OutlierSettings {
        consecutive_failures: 2,
        base_time: Duration::from_secs(30),
        max_time: Duration::from_secs(300),
        max_ejection_percent: 10,
    };

    fn endpoints(list: &[&str]) -> Endpoints {
        Endpoints::new(list.iter().map(|a| a.parse().unwrap()).collect())
    }

    #[test]
    fn a_retry_goes_to_an_endpoint_not_tried_and_when_all_were_tried_round_robin_goes_on() {
        let set = endpoints(&["a:1", "b:1", "c:1"]);
        let now = Instant::now();
        let a: Authority = "a:1".parse().unwrap();
        let b: Authority = "b:1".parse().unwrap();
        for _ in 0..6 {
            let other = set.pick_at(now, std::slice::from_ref(&a)).unwrap();
            assert_ne!(other, &a);
        }
        assert_eq!(set.pick_at(now, &[a.clone(), b.clone()]).unwrap().as_str(), "c:1");
        let all: Vec<Authority> = ["a:1", "b:1", "c:1"].iter().map(|s| s.parse().unwrap()).collect();
        assert!(set.pick_at(now, &all).is_some(), "all tried: one of them again");
        assert_eq!(endpoints(&["only:1"]).pick_at(now, &["only:1".parse().unwrap()]).unwrap().as_str(), "only:1");
    }

    #[test]
    fn an_ejected_endpoint_is_passed_over_until_its_time_is_up() {
        let set = endpoints(&["a:1", "b:1"]);
        let now = Instant::now();
        let a: Authority = "a:1".parse().unwrap();
        assert_eq!(set.failed_at(now, &a, &SETTINGS), None);
        assert_eq!(set.failed_at(now, &a, &SETTINGS), Some(Duration::from_secs(30)));
        for _ in 0..4 {
            assert_eq!(set.pick_at(now, &[]).unwrap().as_str(), "b:1");
        }
        let later = now + Duration::from_secs(30);
        let picks: Vec<&str> = (0..2).map(|_| set.pick_at(later, &[]).unwrap().as_str()).collect();
        assert!(picks.contains(&"a:1"), "back after its time: {picks:?}");
    }

    #[test]
    fn no_more_than_the_cap_is_ejected_and_a_destination_all_ejected_is_still_tried() {
        let set = endpoints(&["a:1", "b:1"]);
        let now = Instant::now();
        let (a, b): (Authority, Authority) = ("a:1".parse().unwrap(), "b:1".parse().unwrap());
        set.failed_at(now, &a, &SETTINGS);
        assert!(set.failed_at(now, &a, &SETTINGS).is_some(), "the first one may always be ejected");
        for _ in 0..5 {
            assert_eq!(set.failed_at(now, &b, &SETTINGS), None, "half ejected is over the 10% cap");
        }
        let every = OutlierSettings { max_ejection_percent: 100, ..SETTINGS };
        assert!(set.failed_at(now, &b, &every).is_some(), "the run of failures was kept: the next one ejects under a higher cap");
        assert!(set.pick_at(now, &[]).is_some(), "all ejected: still tried (panic)");
        assert!(set.pick_at(now, std::slice::from_ref(&a)).is_some_and(|e| *e == b), "and a retry still goes elsewhere");
    }

    #[test]
    fn an_answer_ends_an_endpoint_s_run_of_failures() {
        let set = endpoints(&["a:1", "b:1"]);
        let now = Instant::now();
        let a: Authority = "a:1".parse().unwrap();
        set.failed_at(now, &a, &SETTINGS);
        set.answered(&a);
        assert_eq!(set.failed_at(now, &a, &SETTINGS), None);
    }
}
