//! A candidate policy version beside the serving one: in **shadow** it decides
//! a copy of every new request off the request path, and its decisions are
//! compared with the serving version's; as a **canary** it serves a share of
//! the tenant's new calls (by Call-ID), and is rolled back automatically when
//! its fault rate or its share of failed calls exceeds the serving version's
//! by more than a margin.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};

use super::contract::Decision;
use super::record::{Output, SampleRecords};
use super::version::PolicyVersion;

/// How a candidate takes part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Decides copies of requests; never a call.
    Shadow,
    /// Serves this share (0 to 1) of the tenant's new calls.
    Canary {
        /// The share.
        share: f64,
    },
}

impl Mode {
    /// `shadow` or `canary`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Shadow => "shadow",
            Mode::Canary { .. } => "canary",
        }
    }
}

pub use crate::control::policy_settings::CanaryRule;

/// How a divergence between two decisions shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// Another kind of decision, or another status code.
    Action,
    /// Other targets (URI, transport, timeout, order) or redirect contacts.
    Targets,
    /// Another Request-URI rewrite.
    Rewrite,
    /// Other headers added or removed.
    Headers,
}

impl Divergence {
    /// Every kind, in counter order.
    pub const ALL: [Divergence; 4] =
        [Divergence::Action, Divergence::Targets, Divergence::Rewrite, Divergence::Headers];

    /// The name used in the API and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Divergence::Action => "action",
            Divergence::Targets => "targets",
            Divergence::Rewrite => "rewrite",
            Divergence::Headers => "headers",
        }
    }
}

/// How `candidate` differs from `serving` (none: the same decision).
pub fn divergences(serving: &Decision, candidate: &Decision) -> Vec<Divergence> {
    use Decision::*;
    match (serving, candidate) {
        (Forward(a), Forward(b)) => {
            let mut out = Vec::new();
            if a.targets != b.targets {
                out.push(Divergence::Targets);
            }
            if a.request_uri != b.request_uri {
                out.push(Divergence::Rewrite);
            }
            if a.add_headers != b.add_headers || a.remove_headers != b.remove_headers {
                out.push(Divergence::Headers);
            }
            out
        }
        (Reject(a), Reject(b)) => {
            let mut out = Vec::new();
            if a.code != b.code || a.reason != b.reason {
                out.push(Divergence::Action);
            }
            if a.headers != b.headers {
                out.push(Divergence::Headers);
            }
            out
        }
        (Redirect(a), Redirect(b)) => {
            let mut out = Vec::new();
            if a.code != b.code {
                out.push(Divergence::Action);
            }
            if a.contacts != b.contacts {
                out.push(Divergence::Targets);
            }
            if a.headers != b.headers {
                out.push(Divergence::Headers);
            }
            out
        }
        (Standard, Standard) => Vec::new(),
        _ => vec![Divergence::Action],
    }
}

pub use crate::metrics::Lane;

impl Lane {
    fn fault_rate(&self) -> f64 {
        ratio(self.faults.get(), self.decisions.get())
    }

    fn failure_rate(&self) -> f64 {
        ratio(self.failed.get(), self.calls.get() + self.failed.get())
    }

    /// Counts a call that ended with `code` upstream.
    pub fn call_ended(&self, code: u16) {
        if call_failed(code) {
            self.failed.inc()
        } else {
            self.calls.inc()
        };
    }
}

fn ratio(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

/// Whether a canary with `share` (0 to 1) takes the call with this Call-ID:
/// by a hash of it, so a call's retransmissions and its `on-failure` stay on
/// one version.
fn canary_takes(call_id: &str, share: f64) -> bool {
    if share <= 0.0 {
        return false;
    }
    super::call_id_fraction("canary", call_id) < share
}

/// Why a canary counting into `c` is rolled back against the serving
/// version's `serving` under rule `r`, if it is.
fn rollback_reason(c: &Lane, serving: &Lane, r: &CanaryRule) -> Option<String> {
    if c.decisions.get() >= r.min_calls {
        let (cf, sf) = (c.fault_rate(), serving.fault_rate());
        if cf > sf + r.fault_margin {
            return Some(format!(
                "fault rate {:.1}% against {:.1}% for the serving version (margin {:.1}%)",
                cf * 100.0,
                sf * 100.0,
                r.fault_margin * 100.0
            ));
        }
    }
    if c.calls.get() + c.failed.get() >= r.min_calls {
        let (cf, sf) = (c.failure_rate(), serving.failure_rate());
        if cf > sf + r.failure_margin {
            return Some(format!(
                "failed calls {:.1}% against {:.1}% for the serving version (margin {:.1}%)",
                cf * 100.0,
                sf * 100.0,
                r.failure_margin * 100.0
            ));
        }
    }
    None
}

/// Whether a call that ended with `code` upstream failed, for a canary's
/// judgement: a 5xx, 408 or 480 (a routing failure: nothing answered, or the
/// policy sent it nowhere useful), or 404 / 403 (it found nobody, or refused);
/// not a busy, declined, cancelled or challenged call, which is the callee's.
pub fn call_failed(code: u16) -> bool {
    matches!(code, 403 | 404 | 408 | 480) || (500..600).contains(&code)
}

/// A shadow sample: a request whose candidate decision diverged.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// How it diverged.
    pub kinds: Vec<Divergence>,
    /// The two calls as decision records (replayable).
    pub records: SampleRecords,
}

/// A candidate version and how its run goes.
#[derive(Debug)]
pub struct Candidate {
    /// The version.
    pub version: Arc<PolicyVersion>,
    /// Shadow or canary.
    pub mode: Mode,
    /// When a canary is rolled back.
    pub rule: CanaryRule,
    /// When it started.
    pub started_at: SystemTime,
    /// Its version id in the directory database, when it is the fleet's candidate.
    pub origin: Option<i64>,
    /// The candidate's counters.
    pub lane: Lane,
    /// Shadow: requests compared.
    pub compared: AtomicU64,
    /// Shadow: divergences by kind, in [`Divergence::ALL`] order.
    pub divergences: [Counter; 4],
    /// Shadow: requests not compared because the shadow queue was full.
    pub dropped: AtomicU64,
    samples: Mutex<VecDeque<Sample>>,
    sample_capacity: usize,
    rolled_back: AtomicBool,
    rollback_reason: Mutex<Option<String>>,
}

impl Candidate {
    /// A candidate starting now, counting into `lane` and `divergences`.
    pub fn new(
        version: Arc<PolicyVersion>,
        mode: Mode,
        rule: CanaryRule,
        sample_capacity: usize,
        lane: Lane,
        divergences: [Counter; 4],
    ) -> Candidate {
        Candidate {
            version,
            mode,
            rule,
            started_at: SystemTime::now(),
            origin: None,
            lane,
            compared: AtomicU64::new(0),
            divergences,
            dropped: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::new()),
            sample_capacity,
            rolled_back: AtomicBool::new(false),
            rollback_reason: Mutex::new(None),
        }
    }

    /// Whether a canary takes the call with this Call-ID: by a hash of it, so
    /// a call's retransmissions and its `on-failure` stay on one version.
    pub fn takes(&self, call_id: &str) -> bool {
        let Mode::Canary { share } = self.mode else { return false };
        !self.is_rolled_back() && canary_takes(call_id, share)
    }

    /// Whether a shadow is running (it gets copies of requests).
    pub fn shadows(&self) -> bool {
        self.mode == Mode::Shadow && !self.is_rolled_back()
    }

    /// Whether it was rolled back or abandoned (it takes no new call).
    pub fn is_rolled_back(&self) -> bool {
        self.rolled_back.load(Ordering::Relaxed)
    }

    /// Why it was rolled back.
    pub fn rollback_reason(&self) -> Option<String> {
        self.rollback_reason.lock().map_or(None, |r| r.clone())
    }

    /// `running` or `rolled_back`.
    pub fn state(&self) -> &'static str {
        if self.is_rolled_back() { "rolled_back" } else { "running" }
    }

    /// Rolls it back (once): it takes no new call; calls already on it finish
    /// on it. False if it was already.
    pub fn roll_back(&self, reason: String) -> bool {
        if self.rolled_back.swap(true, Ordering::SeqCst) {
            return false;
        }
        *self.rollback_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        true
    }

    /// Judges a canary against the serving version's counters: the reason to
    /// roll it back, if any.
    pub fn judge(&self, serving: &Lane) -> Option<String> {
        if !matches!(self.mode, Mode::Canary { .. }) || self.is_rolled_back() {
            return None;
        }
        rollback_reason(&self.lane, serving, &self.rule)
    }

    /// Counts a shadow comparison of two final decisions, keeping the sample
    /// when they diverge.
    pub fn compared(&self, serving: &Output, candidate: &Output, records: impl FnOnce() -> SampleRecords) {
        let kinds = match (serving, candidate) {
            (Output::Decision(a), Output::Decision(b)) => divergences(a, b),
            // A fault of either side is counted as a fault, not a divergence.
            _ => Vec::new(),
        };
        // Counted under the samples' lock, which the API reads under too: the
        // counts it shows agree with each other.
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        self.compared.fetch_add(1, Ordering::Relaxed);
        if kinds.is_empty() {
            return;
        }
        for k in &kinds {
            self.divergences[*k as usize].inc();
        }
        let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        if samples.len() >= self.sample_capacity {
            samples.pop_front();
        }
        samples.push_back(Sample { at_ms, kinds, records: records() });
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().map_or_else(|_| Vec::new(), |s| s.iter().cloned().collect())
    }

    /// The candidate as the API shows it, beside the serving version's counters.
    pub fn json(&self, serving: &Lane) -> Value {
        let (divergences, compared, kept) = {
            let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
            let divergences: serde_json::Map<String, Value> = Divergence::ALL
                .iter()
                .map(|k| (k.as_str().to_owned(), json!(self.divergences[*k as usize].get())))
                .collect();
            (divergences, self.compared.load(Ordering::Relaxed), samples.iter().cloned().collect::<Vec<_>>())
        };
        let samples: Vec<Value> = kept
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "index": i,
                    "at_ms": s.at_ms,
                    "kinds": s.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                    "call_id": s.records.serving.call_id,
                    "request": s.records.serving.request.head,
                    "serving": s.records.serving.output,
                    "candidate": s.records.candidate.output,
                })
            })
            .collect();
        let v = &self.version;
        json!({
            "mode": self.mode.as_str(),
            "share": match self.mode { Mode::Canary { share } => json!(share), Mode::Shadow => Value::Null },
            "state": self.state(),
            "rollback_reason": self.rollback_reason(),
            "version": v.version,
            "name": v.name,
            "hash": v.hash,
            "started_at": self.started_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "rule": {
                "fault_margin": self.rule.fault_margin,
                "failure_margin": self.rule.failure_margin,
                "min_calls": self.rule.min_calls,
            },
            "candidate": self.lane.json(),
            "serving": serving.json(),
            "compared": compared,
            "divergences": divergences,
            "shadow_dropped": self.dropped.load(Ordering::Relaxed),
            "samples": samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::contract::{Forward, Header, Reject, Target};

    fn fwd(uri: &str, ruri: Option<&str>, header: Option<&str>) -> Decision {
        Decision::Forward(Forward {
            targets: vec![Target { uri: uri.into(), transport: None, timeout_ms: None }],
            request_uri: ruri.map(Into::into),
            add_headers: header.map(|v| vec![Header { name: "X".into(), value: v.into() }]).unwrap_or_default(),
            remove_headers: vec![],
        })
    }

    #[test]
    fn divergences_are_told_apart_by_kind() {
        let a = fwd("sip:a", None, None);
        assert!(divergences(&a, &a).is_empty());
        assert_eq!(divergences(&a, &fwd("sip:b", None, None)), vec![Divergence::Targets]);
        assert_eq!(divergences(&a, &fwd("sip:a", Some("sip:x"), None)), vec![Divergence::Rewrite]);
        assert_eq!(divergences(&a, &fwd("sip:a", None, Some("1"))), vec![Divergence::Headers]);
        let reject = Decision::Reject(Reject { code: 480, reason: String::new(), headers: vec![] });
        assert_eq!(divergences(&a, &reject), vec![Divergence::Action]);
        assert_eq!(divergences(&a, &Decision::Standard), vec![Divergence::Action]);
    }

    #[test]
    fn failed_calls_are_the_router_s_failures_not_the_callee_s() {
        for code in [403, 404, 408, 480, 500, 503] {
            assert!(call_failed(code), "{code}");
        }
        for code in [200, 302, 401, 407, 486, 487, 600, 603] {
            assert!(!call_failed(code), "{code}");
        }
    }

    /// Call-IDs of [`a_canary_takes_a_call_id_always_or_never_and_about_its_share`]
    /// a canary at 50% takes.
    const GOLDEN_CANARY: usize = 4972;

    #[test]
    fn a_canary_takes_a_call_id_always_or_never_and_about_its_share() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("{i:08x}-call@192.0.2.1")).collect();
        for share in [0.1, 0.5, 0.9] {
            let taken = ids.iter().filter(|id| canary_takes(id, share)).count() as f64 / ids.len() as f64;
            assert!((taken - share).abs() < 0.03, "share {share}: took {taken}");
            // The same Call-ID, the same answer, every time.
            assert!(ids.iter().all(|id| canary_takes(id, share) == canary_takes(id, share)));
        }
        assert!(!ids.iter().any(|id| canary_takes(id, 0.0)));
        assert!(ids.iter().all(|id| canary_takes(id, 1.0)));
        // A larger share takes every call a smaller one took.
        assert!(ids.iter().filter(|id| canary_takes(id, 0.2)).all(|id| canary_takes(id, 0.6)));
        // Every router of a fleet, of any version, splits the same way: the
        // hash and its seed are part of the contract.
        let taken = ids.iter().filter(|id| canary_takes(id, 0.5)).count();
        assert_eq!(taken, GOLDEN_CANARY, "the canary's split changed");
    }

    fn lane(decisions: u64, faults: u64, calls: u64, failed: u64) -> Lane {
        let l = Lane::default();
        l.decisions.inc_by(decisions);
        l.faults.inc_by(faults);
        l.calls.inc_by(calls);
        l.failed.inc_by(failed);
        l
    }

    #[test]
    fn a_canary_is_judged_against_the_serving_version_s_rates_by_its_margins() {
        let rule = CanaryRule { fault_margin: 0.02, failure_margin: 0.05, min_calls: 50 };
        // The serving version faults on 10% and fails 20% of its calls.
        let serving = lane(1000, 100, 800, 200);
        // Within the margins: kept.
        assert_eq!(rollback_reason(&lane(100, 11, 76, 24), &serving, &rule), None);
        // Faults beyond 10% + 2%: rolled back, whatever its calls.
        let r = rollback_reason(&lane(100, 13, 100, 0), &serving, &rule).expect("rolled back");
        assert_eq!(r, "fault rate 13.0% against 10.0% for the serving version (margin 2.0%)");
        // Failed calls beyond 20% + 5%.
        let r = rollback_reason(&lane(100, 0, 74, 26), &serving, &rule).expect("rolled back");
        assert_eq!(r, "failed calls 26.0% against 20.0% for the serving version (margin 5.0%)");
        // Not judged before min_calls decisions (faults) or calls (failures).
        assert_eq!(rollback_reason(&lane(49, 49, 49, 0), &serving, &rule), None);
        assert_eq!(rollback_reason(&lane(100, 0, 0, 49), &serving, &rule), None);
        // A serving version with no traffic counts as 0%.
        let r = rollback_reason(&lane(50, 2, 0, 0), &Lane::default(), &rule).expect("rolled back");
        assert!(r.starts_with("fault rate 4.0% against 0.0%"), "{r}");
    }
}
