//! Decision records: what one policy call was given (the request and its
//! source, every import it made with the answer, the clock) and what it
//! answered, written as JSON lines into a bounded ring of files per tenant;
//! and replay, which runs a policy with its imports answered from a record.
//!
//! The format (one JSON object per line, `format: 1`) is documented in
//! `docs/policy-plane.md`. A record names the component by its SHA-256; the
//! recorder keeps each recorded component once in `<dir>/policies/<hash>.wasm`.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};

use super::bindings::exum::policy::clock::Datetime;
use super::bindings::exum::policy::directory as dir;
use super::contract::{Decision, Failure, Request};

/// The version of the record format written.
pub const FORMAT: u32 = 1;

/// One import a policy called, with its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "import", content = "args", rename_all = "kebab-case")]
pub enum Ask {
    /// `directory.lookup-user`.
    LookupUser(String),
    /// `directory.lookup-contact`.
    LookupContact(String),
    /// `directory.lookup-hosted-voicemail-policy`.
    LookupHostedVoicemailPolicy(dir::PolicyScope),
    /// `directory.lookup-dial-plan`.
    LookupDialPlan(String),
    /// `directory.lookup-contact-dial-plan`.
    LookupContactDialPlan(String),
    /// `directory.lookup-rerouting`.
    LookupRerouting(Option<String>),
    /// `directory.settings`.
    Settings,
    /// `directory.resolve-hosted-route`.
    ResolveHostedRoute {
        /// The granted per-user policy.
        granted: Option<String>,
        /// The site.
        site: Option<String>,
    },
    /// `directory.healthy-um-servers`.
    HealthyUmServers(dir::DialPlanOf),
    /// `health.target-healthy`.
    TargetHealthy(String),
    /// `clock.now`.
    Now,
    /// `standard.route`.
    StandardRoute(Box<Request>),
    /// `standard.on-failure`.
    StandardOnFailure(Box<Request>, Box<Failure>),
}

impl fmt::Display for Ask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ask::LookupUser(a) => write!(f, "lookup-user({a:?})"),
            Ask::LookupContact(a) => write!(f, "lookup-contact({a:?})"),
            Ask::LookupHostedVoicemailPolicy(s) => write!(f, "lookup-hosted-voicemail-policy({s:?})"),
            Ask::LookupDialPlan(k) => write!(f, "lookup-dial-plan({k:?})"),
            Ask::LookupContactDialPlan(a) => write!(f, "lookup-contact-dial-plan({a:?})"),
            Ask::LookupRerouting(s) => write!(f, "lookup-rerouting({s:?})"),
            Ask::Settings => f.write_str("settings()"),
            Ask::ResolveHostedRoute { granted, site } => write!(f, "resolve-hosted-route({granted:?}, {site:?})"),
            Ask::HealthyUmServers(of) => write!(f, "healthy-um-servers({of:?})"),
            Ask::TargetHealthy(u) => write!(f, "target-healthy({u:?})"),
            Ask::Now => f.write_str("now()"),
            Ask::StandardRoute(r) => write!(f, "standard.route({})", super::view::text(r, r.call_id)),
            Ask::StandardOnFailure(r, _) => write!(f, "standard.on-failure({})", super::view::text(r, r.call_id)),
        }
    }
}

/// What an import answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    /// A user, or none.
    User(Option<dir::User>),
    /// A contact, or none.
    Contact(Option<dir::UmContact>),
    /// A hosted voice-mail policy, or none.
    HostedVoicemailPolicy(Option<dir::HostedVoicemailPolicy>),
    /// A dial plan, or none.
    DialPlan(Option<dir::DialPlan>),
    /// Rerouting settings.
    Rerouting(dir::Rerouting),
    /// The tenant's settings.
    Settings(dir::TenantSettings),
    /// Where hosted voice mail goes, or none.
    HostedRoute(Option<dir::HostedRoute>),
    /// A dial plan's UM servers not marked down, or none.
    UmServers(Option<Vec<dir::UmServer>>),
    /// Whether the target is healthy.
    Healthy(bool),
    /// The time.
    Now(Datetime),
    /// The standard algorithm's decision.
    Decision(Decision),
}

/// One import call and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportCall {
    /// What was asked.
    pub ask: Ask,
    /// What the router answered.
    pub answer: Answer,
}

/// Which export was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Export {
    /// `route`.
    Route,
    /// `on-failure`.
    OnFailure,
}

/// The policy version a record was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedPolicy {
    /// Its name (the manifest's, else the file's; `standard`).
    pub name: String,
    /// The router's version number of it for the tenant (0: standard).
    pub version: u64,
    /// SHA-256 of the component, hex.
    pub hash: String,
    /// The string its `init` was given.
    pub init_config: String,
}

/// What a policy call gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Output {
    /// A decision (not validated yet: as the policy returned it).
    Decision(Decision),
    /// A fault, described.
    Fault(String),
}

/// One policy call, recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// [`FORMAT`].
    pub format: u32,
    /// The tenant.
    pub tenant: String,
    /// When it was decided, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The Call-ID, to find a call's records.
    pub call_id: String,
    /// The policy version that was called.
    pub policy: RecordedPolicy,
    /// Which export.
    pub export: Export,
    /// The request as the policy saw it (head, spans, source).
    pub request: Request,
    /// For `on-failure`: the attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The clock at the call, the answer to every `now` on replay.
    pub clock: Datetime,
    /// Every import the call made, in order, with its answer.
    pub imports: Vec<ImportCall>,
    /// What it gave.
    pub output: Output,
}

impl DecisionRecord {
    /// The record of one call.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tenant: &str,
        policy: RecordedPolicy,
        export: Export,
        request: &Request,
        failure: Option<&Failure>,
        clock: Datetime,
        imports: Vec<ImportCall>,
        output: Output,
    ) -> DecisionRecord {
        let call_id = super::view::text(request, request.call_id).to_owned();
        // The clock the policy saw, when it asked.
        let clock = imports
            .iter()
            .find_map(|c| match (&c.ask, &c.answer) {
                (Ask::Now, Answer::Now(d)) => Some(*d),
                _ => None,
            })
            .unwrap_or(clock);
        DecisionRecord {
            format: FORMAT,
            tenant: tenant.to_owned(),
            at_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            call_id,
            policy,
            export,
            request: request.clone(),
            failure: failure.cloned(),
            clock,
            imports,
            output,
        }
    }
}

pub use crate::control::policy_settings::RecordSettings;

/// Records waiting for the writer; beyond, records are dropped and counted.
const QUEUE: usize = 4096;

/// Writes decision records off the request path: calls hand records to a
/// bounded queue; one thread appends them to each tenant's ring.
#[derive(Debug)]
pub struct Recorder {
    settings: RecordSettings,
    queue: std::sync::mpsc::SyncSender<DecisionRecord>,
    /// Records written (`exum_policy_records_total{outcome="written"}`).
    pub written: Counter,
    /// Records dropped: queue full or a write failed.
    pub dropped: Counter,
    pending: Arc<AtomicU64>,
    flushed: Arc<(std::sync::Mutex<u64>, std::sync::Condvar)>,
}

impl Recorder {
    /// Starts the writer thread for `settings` (the folder is created).
    pub fn start(settings: RecordSettings, written: Counter, dropped: Counter) -> std::io::Result<Arc<Recorder>> {
        std::fs::create_dir_all(settings.dir.join("policies"))?;
        let (queue, rx) = std::sync::mpsc::sync_channel::<DecisionRecord>(QUEUE);
        let pending = Arc::new(AtomicU64::new(0));
        let flushed = Arc::new((std::sync::Mutex::new(0u64), std::sync::Condvar::new()));
        let writer = Writer {
            settings: settings.clone(),
            written: written.clone(),
            dropped: dropped.clone(),
            pending: pending.clone(),
            flushed: flushed.clone(),
        };
        std::thread::Builder::new().name("policy-records".into()).spawn(move || writer.run(rx))?;
        Ok(Arc::new(Recorder { settings, queue, written, dropped, pending, flushed }))
    }

    /// Hands a record to the writer; dropped (and counted) when the queue is full.
    pub fn submit(&self, record: DecisionRecord) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.queue.try_send(record).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            self.dropped.inc();
        }
    }

    /// Waits until every record submitted so far is written (or dropped).
    pub fn flush(&self) {
        let (lock, cond) = &*self.flushed;
        let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.pending.load(Ordering::SeqCst) != 0 {
            guard = cond.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Keeps a component recorded calls name, once per hash.
    pub fn keep_component(&self, hash: &str, bytes: &[u8]) {
        let path = self.settings.dir.join("policies").join(format!("{hash}.wasm"));
        if path.is_file() {
            return;
        }
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path)) {
            tracing::warn!(path = %path.display(), error = %e, "could not keep a recorded policy component");
        }
    }
}

/// Whether a call with `call_id` is recorded at `share` (0 to 1): by a hash of
/// the Call-ID, so every call of one Call-ID (route, on-failure) is recorded
/// or none.
pub fn sampled(call_id: &str, share: f64) -> bool {
    if share <= 0.0 {
        return false;
    }
    if share >= 1.0 {
        return true;
    }
    super::call_id_fraction("record", call_id) < share
}

struct Writer {
    settings: RecordSettings,
    written: Counter,
    dropped: Counter,
    pending: Arc<AtomicU64>,
    flushed: Arc<(std::sync::Mutex<u64>, std::sync::Condvar)>,
}

impl Writer {
    fn run(self, rx: std::sync::mpsc::Receiver<DecisionRecord>) {
        let mut files: std::collections::HashMap<String, (std::fs::File, u64)> = std::collections::HashMap::new();
        while let Ok(record) = rx.recv() {
            match self.write(&mut files, &record) {
                Ok(()) => {
                    self.written.inc();
                }
                Err(e) => {
                    self.dropped.inc();
                    tracing::warn!(tenant = %record.tenant, error = %e, "could not write a decision record");
                    files.remove(&record.tenant);
                }
            }
            if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                let (lock, cond) = &*self.flushed;
                let mut n = lock.lock().unwrap_or_else(|e| e.into_inner());
                *n += 1;
                cond.notify_all();
            }
        }
    }

    fn write(
        &self,
        files: &mut std::collections::HashMap<String, (std::fs::File, u64)>,
        record: &DecisionRecord,
    ) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let dir = self.settings.dir.join(&record.tenant);
        let path = dir.join("decisions.jsonl");
        if !files.contains_key(&record.tenant) {
            std::fs::create_dir_all(&dir)?;
            let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            let len = file.metadata()?.len();
            files.insert(record.tenant.clone(), (file, len));
        }
        let half = self.settings.max_bytes_per_tenant / 2;
        let Some((file, len)) = files.get_mut(&record.tenant) else { return Ok(()) };
        if *len > 0 && *len + line.len() as u64 > half {
            // The ring turns: the current half becomes the older one.
            std::fs::rename(&path, dir.join("decisions.1.jsonl"))?;
            *file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            *len = 0;
        }
        file.write_all(&line)?;
        *len += line.len() as u64;
        Ok(())
    }
}

/// Why records could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a record.
    #[error("{}:{line}: not a decision record: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// Why.
        reason: String,
    },
}

/// Reads the records of `path`: JSON lines of records, one record, or a shadow
/// sample (its two records, serving first).
pub fn read(path: &Path) -> Result<Vec<DecisionRecord>, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io { path: path.to_path_buf(), source })?;
    let parse_error = |line: usize, reason: String| ReadError::Parse { path: path.to_path_buf(), line, reason };
    // A whole-file JSON value: a record or a sample.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
        if value.get("serving").is_some() && value.get("candidate").is_some() {
            let sample: SampleRecords = serde_json::from_value(value).map_err(|e| parse_error(1, e.to_string()))?;
            return Ok(vec![sample.serving, sample.candidate]);
        }
        if value.get("format").is_some() {
            return serde_json::from_value(value).map(|r| vec![r]).map_err(|e| parse_error(1, e.to_string()));
        }
    }
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: DecisionRecord = serde_json::from_str(line).map_err(|e| parse_error(i + 1, e.to_string()))?;
        if record.format != FORMAT {
            return Err(parse_error(i + 1, format!("format {} (this router reads {FORMAT})", record.format)));
        }
        records.push(record);
    }
    Ok(records)
}

/// The two records of a shadow sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleRecords {
    /// The serving version's call.
    pub serving: DecisionRecord,
    /// The candidate's call.
    pub candidate: DecisionRecord,
}

#[cfg(test)]
mod tests {
    use super::sampled;

    /// Call-IDs of [`a_call_is_sampled_by_its_call_id_at_about_the_share`] a
    /// share of 25% records.
    const GOLDEN_SAMPLED: usize = 2495;

    #[test]
    fn a_call_is_sampled_by_its_call_id_at_about_the_share() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("{i}-a84b4c76e66710@pc33.contoso.com")).collect();
        for share in [0.01, 0.25, 0.5] {
            let taken = ids.iter().filter(|id| sampled(id, share)).count() as f64 / ids.len() as f64;
            assert!((taken - share).abs() < 0.02, "share {share}: sampled {taken}");
            assert!(ids.iter().all(|id| sampled(id, share) == sampled(id, share)), "the same answer every time");
        }
        assert!(!ids.iter().any(|id| sampled(id, 0.0)));
        assert!(ids.iter().all(|id| sampled(id, 1.0)));
        // Every router of a fleet, of any version, samples the same calls.
        let taken = ids.iter().filter(|id| sampled(id, 0.25)).count();
        assert_eq!(taken, GOLDEN_SAMPLED, "the sampling changed");
    }
}
