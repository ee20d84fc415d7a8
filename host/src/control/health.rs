//! What the router knows of its next hops' health: the targets OPTIONS probes
//! have marked down. Policies read it through the `target-healthy` import.

use std::collections::HashSet;
use std::sync::RwLock;

/// The set of targets currently marked down. Targets never probed are healthy.
#[derive(Debug, Default)]
pub struct HealthTable {
    down: RwLock<HashSet<String>>,
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
}
