//! What the router knows of its next hops' health: the targets OPTIONS probes
//! have marked down (policies read it through the `target-healthy` import),
//! and, for operators, each probed target's state, since when, and its last
//! probe's round-trip time.

use std::collections::{BTreeMap, HashSet};
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

/// The set of targets currently marked down (targets never probed are
/// healthy), and what the probes saw of each.
#[derive(Debug, Default)]
pub struct HealthTable {
    down: RwLock<HashSet<String>>,
    probed: RwLock<BTreeMap<String, TargetStatus>>,
}

/// What a probed target is to the tenants that name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetKind {
    /// A UM server of a dial plan.
    UmServer,
    /// A hosted next hop: a hosting provider's proxy, or a tenant's edge.
    Edge,
    /// A PSTN gateway, or a tenant's default next hop.
    Gateway,
}

impl TargetKind {
    /// Its name on the status page and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::UmServer => "UM server",
            TargetKind::Edge => "edge",
            TargetKind::Gateway => "gateway",
        }
    }
}

/// One probed target, as the probes last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// What it is.
    pub kind: TargetKind,
    /// Up (not marked down).
    pub up: bool,
    /// When it last changed between up and down (its first probe, at first).
    pub since: SystemTime,
    /// When it was last probed.
    pub probed_at: SystemTime,
    /// The last probe's round-trip time, when it was answered.
    pub round_trip: Option<Duration>,
}

impl HealthTable {
    /// Whether `uri` is believed reachable.
    pub fn is_healthy(&self, uri: &str) -> bool {
        let down = self.down.read().unwrap_or_else(|e| e.into_inner());
        down.is_empty() || !down.contains(&key(uri))
    }

    /// Marks `uri` down or up again; returns whether its state changed.
    pub fn set(&self, uri: &str, healthy: bool) -> bool {
        let mut down = self.down.write().unwrap_or_else(|e| e.into_inner());
        if healthy { down.remove(&key(uri)) } else { down.insert(key(uri)) }
    }

    /// Records a probe of `uri` (answered after `round_trip`, or not: `None`)
    /// and its state after it.
    pub fn probed(&self, uri: &str, kind: TargetKind, round_trip: Option<Duration>) {
        let up = self.is_healthy(uri);
        let now = SystemTime::now();
        let mut probed = self.probed.write().unwrap_or_else(|e| e.into_inner());
        let entry = probed.entry(uri.to_owned()).or_insert(TargetStatus {
            kind,
            up,
            since: now,
            probed_at: now,
            round_trip: None,
        });
        if entry.up != up {
            entry.since = now;
        }
        entry.kind = entry.kind.min(kind);
        entry.up = up;
        entry.probed_at = now;
        entry.round_trip = round_trip;
    }

    /// Forgets `uri` (no tenant names it any more): healthy again, not listed.
    pub fn forget(&self, uri: &str) {
        self.set(uri, true);
        self.probed.write().unwrap_or_else(|e| e.into_inner()).remove(uri);
    }

    /// Every probed target, by URI.
    pub fn targets(&self) -> Vec<(String, TargetStatus)> {
        let probed = self.probed.read().unwrap_or_else(|e| e.into_inner());
        probed.iter().map(|(u, s)| (u.clone(), s.clone())).collect()
    }
}

fn key(uri: &str) -> String {
    uri.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_targets_down_and_up() {
        let h = HealthTable::default();
        assert!(h.is_healthy("sip:um1.contoso.com"));
        assert!(h.set("sip:UM1.contoso.com", false));
        assert!(!h.is_healthy("sip:um1.contoso.com"));
        assert!(!h.set("sip:um1.contoso.com", false), "no change");
        assert!(h.set("sip:um1.contoso.com", true));
        assert!(h.is_healthy("sip:um1.contoso.com"));
    }

    #[test]
    fn a_probed_target_keeps_since_when_it_is_up_or_down() {
        let h = HealthTable::default();
        let uri = "sip:um1.contoso.com";
        h.probed(uri, TargetKind::UmServer, Some(Duration::from_millis(3)));
        let (_, first) = h.targets().pop().expect("listed");
        assert!(first.up && first.round_trip == Some(Duration::from_millis(3)));
        h.probed(uri, TargetKind::UmServer, None);
        let (_, again) = h.targets().pop().expect("listed");
        assert_eq!((again.since, again.round_trip, again.up), (first.since, None, true), "up until marked down");
        h.set(uri, false);
        h.probed(uri, TargetKind::Gateway, None);
        let (_, down) = h.targets().pop().expect("listed");
        assert!(!down.up && down.since >= first.since && down.kind == TargetKind::UmServer);
        h.forget(uri);
        assert!(h.targets().is_empty() && h.is_healthy(uri));
    }
}
