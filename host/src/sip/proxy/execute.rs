//! One proxied request, in one task that owns its server transaction and the
//! client transactions it opens: validate, decide, and carry the decision out
//! (targets one after another with a per-target timer, each target's addresses
//! in RFC 3263 order, 3xx Contacts tried next, `on-failure` asked once when all
//! failed, the best response relayed); then the transaction lingers in a task
//! of its own to absorb retransmissions.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tracing::Instrument as _;

use super::classify::{ALLOW, Classified, classify};
use super::decide::{self, Decided};
use super::forward::{ForwardSpec, Hop, UmServerHop, forwarded};
use super::validate::loop_hash;
use super::{Held, Proxy, originate};
use crate::control::Tenant;
use crate::model::uri::route_uri;
use crate::model::wire::{Message, Name};
use crate::model::{Source, Transport};
use crate::policy::contract::{Attempt, Decision, Failure, Outcome, Target};
use crate::policy::{DecidedBy, Role, TenantPolicy, Verdict};
use crate::sip::error::{Answer, RequestError};
use crate::sip::resolve::Destination;
use crate::sip::transaction::{
    ClientEnd, ClientTransaction, Event, EventSender, ServerStep, ServerTransaction, on_linger_grid,
};

/// Starts the task of a new request's transaction. [`Proxy::handle`] counted it
/// in `in_flight` before, so overload control sees it at once.
pub(super) fn spawn(
    proxy: Arc<Proxy>,
    req: Message,
    source: Source,
    key: String,
    (tx, rx): (EventSender, mpsc::UnboundedReceiver<Event>),
    held: Held,
) {
    let span = tracing::info_span!(
        "request",
        method = req.method().unwrap_or(""),
        call_id = req.first(Name::CallId).unwrap_or(""),
        branch = req.top_via().and_then(|v| v.branch).unwrap_or(""),
        peer = %source.addr,
        tenant = tracing::field::Empty,
    );
    // The caller's W3C trace context, when `[otel] sip_header` names its header.
    if let Some(header) = crate::telemetry::sip_header()
        && let Some(traceparent) = req.header(header)
    {
        crate::telemetry::join(&span, traceparent, req.header("tracestate"));
    }
    let invite = req.method() == Some("INVITE");
    let reply_to = proxy.response_address(&req, &source);
    let server = ServerTransaction::new(invite, source.transport != Transport::Udp, proxy.timers());
    let task = RequestTask {
        proxy,
        req,
        source,
        reply_to,
        key,
        rx,
        tx,
        invite,
        server,
        last_response: None,
        last_tag: None,
        cancelled: false,
        record_route: false,
        pop_routes: 0,
        branches: Vec::new(),
        sent: HashMap::new(),
        failed: Vec::new(),
        held,
        final_code: 0,
        decided: None,
        attempts: Vec::new(),
        um: None,
    };
    tokio::spawn(task.run().instrument(span));
}

/// Most targets one request is forwarded to, 3xx Contacts and `on-failure`'s
/// targets included: a chain of redirects ends there.
const MAX_ATTEMPTS: usize = 32;

/// Most redirects to voice mail one request is decided again for: a chain of
/// them (a UM server redirecting to the voice-mail URI that routes to it) ends
/// there, the rest of its Contacts counted as failed.
const MAX_REDECISIONS: usize = 2;

/// Whether a Contact is a voice-mail URI (`opaque=app:voicemail`, as in a
/// user's voice-mail GRUU).
fn is_voicemail_uri(contact: &str) -> bool {
    crate::model::uri::UriRef::parse(contact)
        .is_ok_and(|u| u.param("opaque").flatten().is_some_and(|o| o.eq_ignore_ascii_case("app:voicemail")))
}

/// A request as the router sent it on one branch, with where it went: what a
/// CANCEL and the ACK of a failure response are built from.
struct Sent {
    msg: Message,
    transport: Transport,
    /// The listener it left from.
    local: Option<SocketAddr>,
    dest: SocketAddr,
}

/// How one target ended.
enum TargetEnd {
    /// A final response went upstream (2xx, 401/407, or after CANCEL): done.
    Answered,
    /// The target failed; try the next.
    Failed(Outcome, Option<Message>),
    /// A 3xx: try these contacts next.
    Redirected(u16, Vec<String>),
}

/// One proxied request: its server transaction and the client transactions it
/// opens, in one task.
struct RequestTask {
    proxy: Arc<Proxy>,
    req: Message,
    source: Source,
    /// Where responses upstream go (see [`Proxy::response_address`]).
    reply_to: SocketAddr,
    key: String,
    rx: mpsc::UnboundedReceiver<Event>,
    tx: EventSender,
    invite: bool,
    server: ServerTransaction,
    /// The last response sent upstream, for retransmissions of the request,
    /// and its To tag (an ACK carrying it shows its source receives at its
    /// address: `Limiter::exchanged`).
    last_response: Option<Vec<u8>>,
    last_tag: Option<Box<str>>,
    cancelled: bool,
    record_route: bool,
    pop_routes: usize,
    /// Client branches opened (removed from the table at the end) and the
    /// INVITEs sent on them: a retransmitted failure response on an earlier
    /// branch is ACKed again (Timer D).
    branches: Vec<String>,
    sent: HashMap<String, Sent>,
    /// Branches that ended in a failure response or were cancelled (their
    /// INVITE is kept while the transaction lingers, to ACK a retransmitted
    /// failure, or the late 487, again).
    failed: Vec<String>,
    /// The bytes it is charged for, until its lingering ends.
    held: Held,
    /// The final status sent upstream (0 before one is).
    final_code: u16,
    /// The policy and version that decided, told how the call ended.
    decided: Option<(Arc<TenantPolicy>, Role)>,
    /// Each target tried and how it ended (`sip:um1 488 Not Acceptable Here`),
    /// for the call's log line and the Warning of a failure.
    attempts: Vec<String>,
    /// The target being tried is a UM server (or where one redirected the
    /// call): its INVITE gets [MS-EUMR]'s edits, and any failure response of
    /// its moves on to the next target.
    um: Option<UmServerHop>,
}

impl RequestTask {
    async fn run(mut self) {
        self.process().await;
        // Each call's outcome, with the targets tried.
        if self.invite && self.req.to_tag().is_none() {
            tracing::info!(code = self.final_code, targets = %self.attempts.join("; "), "call routed");
        }
        self.proxy.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some((policy, role)) = self.decided.take()
            && self.final_code >= 200
        {
            policy.call_ended(role, self.final_code);
            if self.invite {
                let failed = crate::policy::candidate::call_failed(self.final_code);
                self.proxy.metrics.count_call(&policy.tenant_id, failed);
            }
        }
        // What lingers is small: the request, the answered branch's INVITE and
        // the rest of the state are dropped here.
        let RequestTask {
            proxy,
            source,
            reply_to,
            key,
            rx,
            server,
            last_response,
            last_tag,
            branches,
            mut sent,
            failed,
            held,
            invite,
            final_code,
            ..
        } = self;
        // Nothing left to absorb (a non-INVITE, or an INVITE answered 2xx,
        // over TCP or TLS): the transaction ends without lingering.
        if server.is_terminated() {
            drop(held);
            proxy.table.remove(&key, &branches);
            return;
        }
        // A non-INVITE over UDP answered finally (by the router or by a
        // target): its answer is kept for retransmissions in a cache of its
        // own, and the transaction ends.
        if !invite
            && final_code >= 200
            && source.transport == Transport::Udp
            && let Some(bytes) = &last_response
        {
            let answer = crate::sip::transaction::answered::Answer {
                bytes: bytes.as_slice().into(),
                to: reply_to,
                local: source.local,
            };
            proxy.answered.insert(key.clone(), answer, proxy.settings.t1 * 64);
            drop(held);
            proxy.table.remove(&key, &branches);
            return;
        }
        sent.retain(|branch, _| failed.contains(branch));
        let tag = if source.transport == Transport::Udp { last_tag } else { None };
        let lingering = Lingering {
            proxy,
            source,
            reply_to,
            rx,
            server,
            tag,
            last: last_response,
            sent,
            key,
            branches,
            held: Some(held),
        };
        // A task of its own: this one's state (sized for routing) is freed now.
        tokio::spawn(lingering.run().in_current_span());
    }

    /// Sends `answer` upstream; a failure after targets failed says which
    /// target answered what.
    fn respond(&mut self, answer: &Answer) {
        let tag = self.proxy.response_tag();
        let bytes = if self.tells_tried(answer.code) {
            let answer = answer.clone().with_tried(&self.attempts);
            self.proxy.send_answer_tagged(&self.req, &self.source, &answer, &tag)
        } else {
            self.proxy.send_answer_tagged(&self.req, &self.source, answer, &tag)
        };
        self.sent_upstream(answer.code, bytes, Some(self.answer_tag(tag)));
    }

    /// Answers upstream with the response for `error` (with which target
    /// answered what, after targets failed).
    fn fail(&mut self, error: &RequestError) {
        if matches!(error, RequestError::NotAPeer) {
            self.proxy.metrics.count_access_refused("tenant");
        }
        let answer = error.answer();
        let answer = if self.tells_tried(answer.code) { answer.with_tried(&self.attempts) } else { answer };
        let tag = self.proxy.response_tag();
        let bytes = self.proxy.reject_with(&self.req, &self.source, error, &answer, &tag);
        self.sent_upstream(error.code(), bytes, Some(self.answer_tag(tag)));
    }

    /// Whether a failure answer `code` of the router's carries the targets
    /// tried: after a target failed, not for a cancelled call.
    fn tells_tried(&self, code: u16) -> bool {
        code >= 400 && code != 487 && !self.attempts.is_empty()
    }

    /// Relays a response of a target upstream, less our Via.
    fn relay(&mut self, resp: &Message) {
        let bytes = resp.edit().pop_via().finish();
        self.proxy.transports.reply_kept(&self.source, self.reply_to, &bytes);
        self.sent_upstream(resp.status().unwrap_or(500), bytes, resp.to_tag().map(Into::into));
    }

    /// The To tag of the router's answer: the request's own when it has one
    /// (the router adds `tag` only when it has none).
    fn answer_tag(&self, tag: String) -> Box<str> {
        self.req.to_tag().map_or_else(|| tag.into(), Into::into)
    }

    fn sent_upstream(&mut self, code: u16, bytes: Vec<u8>, tag: Option<Box<str>>) {
        if code >= 200 {
            self.server.on_final(code, Instant::now());
            if self.final_code == 0 {
                self.final_code = code;
            }
        }
        self.last_response = Some(bytes);
        self.last_tag = tag;
    }

    fn resend_last(&self) {
        if let Some(last) = &self.last_response {
            self.proxy.transports.reply_kept(&self.source, self.reply_to, last);
        }
    }

    /// Validation, routing and forwarding, until a final response went upstream.
    async fn process(&mut self) {
        let routable = match classify(&self.req, |u| self.proxy.is_us(u)) {
            Classified::Refused(e) => {
                self.fail(&e);
                return;
            }
            Classified::OptionsToUs => {
                self.respond(&Answer::new(200).with("Allow", ALLOW.to_owned()));
                return;
            }
            Classified::InDialog(r) | Classified::New(r) => r,
        };
        if let Some(req) = routable.rewritten {
            self.req = req;
        }
        self.pop_routes = routable.pop_routes;
        if self.invite {
            self.respond(&Answer::new(100));
        }
        if self.req.to_tag().is_some() {
            self.forward_in_dialog().await;
            return;
        }
        let tenants = self.proxy.tenants();
        let decided = decide::tenant_for(&tenants, &self.req, &self.source).and_then(|tenant| {
            tracing::Span::current().record("tenant", tenant.config.id.as_str());
            self.record_route = tenant.config.record_route;
            self.proxy.metrics.count_request(self.req.method().unwrap_or(""), &tenant.config.id);
            decide::decide(&self.proxy.policy, tenant, &self.req, &self.source)
        });
        match decided {
            Ok(decided) => self.execute(decided).await,
            Err(e) => self.fail(&e),
        }
    }

    /// A decision as a HEP log event beside the call's messages, when the call
    /// is captured: the tenant, the policy version and role, who decided, the
    /// decision and the time it took.
    fn capture_decision(&self, event: &str, tenant: &Tenant, policy: &TenantPolicy, verdict: &Verdict) {
        let Some(hep) = self.proxy.transports.capture() else { return };
        let call_id = self.req.first(Name::CallId).unwrap_or("");
        if !hep.captures(call_id) {
            return;
        }
        let (name, version) = policy.own.as_ref().map_or(("standard", 0), |v| (v.name.as_str(), v.version));
        let text = serde_json::json!({
            "event": event,
            "tenant": tenant.config.id,
            "policy": name,
            "version": version,
            "role": if verdict.role == Role::Canary { "canary" } else { "serving" },
            "decided_by": verdict.decided_by,
            "decision": verdict.decision,
            "micros": verdict.elapsed.as_micros() as u64,
        });
        hep.decision(call_id, self.source.addr, self.source.local, text.to_string());
    }

    /// Carries out a decision, asking `on-failure` once when every target failed.
    async fn execute(&mut self, decided: Decided) {
        let Decided { mut tenant, mut policy, mut view, verdict } = decided;
        tracing::debug!(decided_by = ?verdict.decided_by, "decision");
        self.capture_decision("decision", &tenant, &policy, &verdict);
        let mut role = verdict.role;
        self.decided = Some((policy.clone(), role));
        if self.standard_failed(&verdict) {
            return;
        }
        let mut decision = verdict.decision;
        let mut asked_on_failure = false;
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut best: Option<Message> = None;
        let mut redecisions = 0;
        loop {
            let mut redirected: Option<Verdict> = None;
            let f = match decision {
                Decision::Forward(f) => f,
                // On failure, a rejection without headers whose code is that of
                // the best response the targets gave relays that response
                // (RFC 3261 §16.7): the caller gets the 486 itself.
                Decision::Reject(r)
                    if asked_on_failure
                        && r.headers.is_empty()
                        && best.as_ref().and_then(Message::status) == Some(r.code) =>
                {
                    if let Some(best) = best.take() {
                        self.relay(&best);
                    }
                    return;
                }
                other => {
                    self.answer_decision(&tenant, &other);
                    return;
                }
            };
            let spec = ForwardSpec::of(&f);
            let mut queue: VecDeque<(Target, Option<String>, Option<UmServerHop>)> = f
                .targets
                .into_iter()
                .map(|t| {
                    let um = UmServerHop::of(&tenant, self.invite, &t.uri);
                    (t, None, um)
                })
                .collect();
            while let Some((target, contact_uri, um)) = queue.pop_front() {
                if self.cancelled || attempts.len() >= MAX_ATTEMPTS {
                    break;
                }
                self.um = um;
                match self.try_target(&target, &spec, contact_uri.as_deref()).await {
                    TargetEnd::Answered => {
                        self.attempts.push(format!("{} {}", target.uri, self.final_code));
                        return;
                    }
                    // A 6xx ends the search (RFC 3261 §16.7): no other target,
                    // no on-failure; the caller gets it.
                    TargetEnd::Failed(Outcome::Response(code), Some(r)) if code >= 600 => {
                        self.attempts.push(format!("{} {}", target.uri, status_line(&r)));
                        tracing::info!(target = %target.uri, code, "global failure; the search ends");
                        self.relay(&r);
                        return;
                    }
                    TargetEnd::Failed(outcome, resp) => {
                        self.note_failure(&target.uri, &outcome, resp.as_ref(), queue.is_empty());
                        if let Some(r) = resp
                            && better(&r, best.as_ref())
                        {
                            best = Some(r);
                        }
                        attempts.push(Attempt { target: target.uri.clone(), outcome });
                    }
                    TargetEnd::Redirected(code, contacts) => {
                        self.attempts.push(format!("{} {code} (redirected)", target.uri));
                        attempts.push(Attempt { target: target.uri.clone(), outcome: Outcome::Response(code) });
                        // A redirect to somewhere already tried is not followed again.
                        let fresh = |c: &String| !attempts.iter().any(|a| &a.target == c);
                        let contacts: Vec<String> = contacts.into_iter().filter(fresh).collect();
                        if let Some(d) = self.voicemail_redirect(&contacts, code, &mut redecisions, &mut attempts) {
                            (tenant, policy, view) = (d.tenant, d.policy, d.view);
                            role = d.verdict.role;
                            self.decided = Some((policy.clone(), role));
                            redirected = Some(d.verdict);
                            break;
                        }
                        for c in contacts.into_iter().filter(|c| !is_voicemail_uri(c)).rev() {
                            let t = Target { uri: c.clone(), transport: None, timeout_ms: target.timeout_ms };
                            // Where a UM server sends the call is UM too.
                            queue.push_front((t, Some(c), self.um.clone()));
                        }
                    }
                }
            }
            if let Some(verdict) = redirected
                && !self.cancelled
            {
                if self.standard_failed(&verdict) {
                    return;
                }
                decision = verdict.decision;
                continue;
            }
            if self.cancelled {
                if !self.server.is_final() {
                    self.fail(&RequestError::Cancelled);
                }
                return;
            }
            if asked_on_failure {
                break;
            }
            asked_on_failure = true;
            let failure = Failure { attempts: attempts.clone() };
            let verdict = decide::on_failure(&policy, &tenant, &view, &failure, role);
            self.capture_decision("on_failure", &tenant, &policy, &verdict);
            if self.standard_failed(&verdict) {
                return;
            }
            decision = verdict.decision;
        }
        // on-failure's forward failed too: the best response, or 480.
        match best {
            Some(r) => self.relay(&r),
            None => self.fail(&RequestError::AllTargetsFailed),
        }
    }

    /// A redirect to voice mail (the user's voice-mail URI) comes back through
    /// ExUM: the redirected request is a new voice-mail call, decided by its
    /// tenant's policy, in this server transaction. A chain of them stops at
    /// `MAX_REDECISIONS`. The new decision, if a contact is voice mail and it
    /// was decided.
    fn voicemail_redirect(
        &mut self,
        contacts: &[String],
        code: u16,
        redecisions: &mut usize,
        attempts: &mut Vec<Attempt>,
    ) -> Option<Decided> {
        let vm = contacts.iter().find(|c| is_voicemail_uri(c))?;
        if *redecisions >= MAX_REDECISIONS {
            return None;
        }
        *redecisions += 1;
        match self.redecide(vm) {
            Ok(d) => {
                attempts.push(Attempt { target: vm.clone(), outcome: Outcome::Response(code) });
                tracing::info!(contact = %vm, "redirected to voice mail; decided again");
                Some(d)
            }
            Err(e) => {
                tracing::warn!(contact = %vm, error = %e, "redirect to voice mail not decided");
                None
            }
        }
    }

    /// Whether the router's own standard policy failed to decide (then the
    /// request is answered with 500, and nothing more is done).
    fn standard_failed(&mut self, verdict: &Verdict) -> bool {
        let failed = verdict.decided_by == DecidedBy::Internal;
        if failed {
            self.fail(&RequestError::Internal("the standard policy failed".into()));
        }
        failed
    }

    /// Answers a decision that is not a forward: its reject or redirect (a
    /// tenant with uniform user answers hides which users exist), or 500.
    fn answer_decision(&mut self, tenant: &crate::control::Tenant, decision: &Decision) {
        match Answer::of_decision(decision) {
            Some(answer) if tenant.config.uniform_user_answers && names_a_user(&answer) => {
                self.respond(&RequestError::AllTargetsFailed.answer());
            }
            Some(answer) => self.respond(&answer),
            None => self.fail(&RequestError::NoDecision),
        }
    }

    /// Logs and notes a target that failed: its response, timeout, down or unreachable.
    fn note_failure(&mut self, target: &str, outcome: &Outcome, resp: Option<&Message>, last: bool) {
        let what = match (outcome, resp) {
            (_, Some(r)) => status_line(r),
            (Outcome::Timeout, None) => "timeout".to_owned(),
            (Outcome::SkippedDown, None) => "down".to_owned(),
            _ => "unreachable".to_owned(),
        };
        if last {
            tracing::warn!(target = %target, outcome = %what, "target failed");
        } else {
            tracing::warn!(target = %target, outcome = %what, "target failed; trying the next");
        }
        self.attempts.push(format!("{target} {what}"));
    }

    /// The request redirected to voice-mail URI `contact`, decided as a new
    /// request: its tenant (by the Contact's domain), its policy. The request
    /// becomes the redirected one (its Request-URI the Contact).
    fn redecide(&mut self, contact: &str) -> Result<Decided, RequestError> {
        let bytes = self.req.edit().request_uri(contact).finish();
        let req = Message::parse(bytes, false, usize::MAX).map_err(|e| RequestError::bad(e.to_string()))?;
        let tenants = self.proxy.tenants();
        let tenant = decide::tenant_for(&tenants, &req, &self.source)?;
        let decided = decide::decide(&self.proxy.policy, tenant, &req, &self.source)?;
        self.req = req;
        Ok(decided)
    }

    /// An in-dialog request: along its Route set, no policy.
    async fn forward_in_dialog(&mut self) {
        let Some((uri, _)) = self.proxy.next_hop_of(&self.req) else {
            self.fail(&RequestError::NoNextHop);
            return;
        };
        let target = Target { uri, transport: None, timeout_ms: None };
        match self.try_target(&target, &ForwardSpec::default(), None).await {
            TargetEnd::Answered => {}
            TargetEnd::Failed(_, Some(resp)) => self.relay(&resp),
            TargetEnd::Failed(Outcome::Timeout, None) => self.fail(&RequestError::NextHopTimeout),
            TargetEnd::Failed(_, None) => self.fail(&RequestError::NextHopUnreachable),
            TargetEnd::Redirected(..) => self.fail(&RequestError::NextHopRedirected),
        }
    }

    /// One target: its addresses in RFC 3263 order, the next one only when an
    /// address did not answer at all (§4.3).
    async fn try_target(&mut self, target: &Target, spec: &ForwardSpec, contact_uri: Option<&str>) -> TargetEnd {
        let transport = target.transport.map(Transport::from);
        let destinations = match self.proxy.resolver.resolve(&target.uri, transport).await {
            Ok(d) if !d.is_empty() => d,
            Ok(_) => {
                tracing::warn!(target = %target.uri, "cannot resolve: no address");
                return TargetEnd::Failed(Outcome::Unreachable, None);
            }
            Err(e) => {
                tracing::warn!(target = %target.uri, error = %e, "cannot resolve");
                return TargetEnd::Failed(Outcome::Unreachable, None);
            }
        };
        let count = destinations.len();
        for (i, d) in destinations.into_iter().enumerate() {
            let branch = self.proxy.branch(loop_hash(&self.req));
            let span = tracing::debug_span!("client", target = %target.uri, addr = %d.addr, %branch);
            let (end, responded) = self.try_destination(target, spec, contact_uri, &d, branch).instrument(span).await;
            let silent = matches!(end, TargetEnd::Failed(Outcome::Timeout | Outcome::Unreachable, None))
                && !responded
                && !self.cancelled
                && !self.server.is_final();
            if !(silent && i + 1 < count) {
                return end;
            }
            tracing::info!(target = %target.uri, addr = %d.addr, "no answer; trying the target's next address");
        }
        TargetEnd::Failed(Outcome::Unreachable, None)
    }

    /// The request as forwarded to `dest` over `transport` on `branch`, and
    /// the listener it leaves from: the one it came in on when that one fits
    /// the target; Via and Record-Route name it.
    fn forwarded_request(
        &self,
        spec: &ForwardSpec,
        contact_uri: Option<&str>,
        transport: Transport,
        dest: SocketAddr,
        branch: &str,
    ) -> (Vec<u8>, Option<SocketAddr>) {
        let egress = self.proxy.transports.egress(transport, dest, self.source.local);
        let local = egress.map_or_else(|| "0.0.0.0:5060".into(), |a| a.to_string());
        let dialog_tag = self.record_route.then(|| self.proxy.dialog_tag(self.req.first(Name::CallId).unwrap_or("")));
        let inbound_local = self
            .record_route
            .then(|| {
                self.source
                    .local
                    .or_else(|| self.proxy.transports.local_addr(self.source.transport, Some(self.source.addr)))
            })
            .flatten()
            .map(|a| a.to_string());
        // Within the client span: its trace context goes to the next hop.
        let trace = crate::telemetry::sip_header()
            .and_then(|h| crate::telemetry::traceparent(&tracing::Span::current()).map(|v| (h, v)));
        let hop = Hop {
            trace: trace.as_ref().map(|(h, v)| (*h, v.as_str())),
            transport,
            local: &local,
            branch,
            source: self.source.addr,
            record_route: dialog_tag.as_deref(),
            pop_routes: self.pop_routes,
            inbound: inbound_local.as_deref().map(|l| (self.source.transport, l)),
            um: self.um.as_ref(),
        };
        (forwarded(&self.req, spec, contact_uri, &hop), egress)
    }

    /// One client transaction to one address of a target; also whether the
    /// address answered anything.
    async fn try_destination(
        &mut self,
        target: &Target,
        spec: &ForwardSpec,
        contact_uri: Option<&str>,
        d: &Destination,
        branch: String,
    ) -> (TargetEnd, bool) {
        let (dest, transport) = (d.addr, d.transport);
        let proxy = self.proxy.clone();
        let (bytes, egress) = self.forwarded_request(spec, contact_uri, transport, dest, &branch);
        // What a CANCEL and the ACK of a failure are built from: an INVITE's
        // only (a non-INVITE is neither cancelled nor ACKed).
        let sent = if self.invite {
            let Ok(msg) = Message::parse(bytes.clone(), false, usize::MAX) else {
                return (TargetEnd::Failed(Outcome::Unreachable, None), false);
            };
            Some(Sent { msg, transport, local: egress, dest })
        } else {
            // The forwarding edits keep a request parseable (tested: debug
            // builds check every forwarded request).
            debug_assert!(Message::parse(bytes.clone(), false, usize::MAX).is_ok(), "forwarded request does not parse");
            None
        };
        proxy.table.insert_client(branch.clone(), self.tx.clone());
        self.branches.push(branch.clone());
        // A new TLS connection checks the server's certificate against the
        // target's host name (or its SRV target's).
        if let Err(e) = proxy.transports.send_named(transport, egress, dest, Some(&d.name), bytes.clone()).await {
            tracing::warn!(target = %target.uri, %dest, error = %e, "cannot send");
            return (TargetEnd::Failed(Outcome::Unreachable, None), false);
        }
        let settings = proxy.settings;
        let per_target = target.timeout_ms.map_or(settings.target_timeout, |ms| Duration::from_millis(u64::from(ms)));
        if per_target > settings.t1 * 64 {
            tracing::debug!(target = %target.uri, timeout_ms = per_target.as_millis() as u64, timer_b_ms = (settings.t1 * 64).as_millis() as u64, "the time to a first response is bounded by Timer B");
        }
        let mut client = ClientTransaction::new(
            self.invite,
            transport != Transport::Udp,
            proxy.timers(),
            per_target,
            settings.timer_c,
            Instant::now(),
        );
        let end = loop {
            let event = next_event(&mut self.rx, client.wake()).await;
            let now = Instant::now();
            let (step, resp) = match event {
                None => (client.on_timer(now), None),
                Some(Event::Retransmission) => {
                    if self.server.on_retransmission() == ServerStep::Resend {
                        self.resend_last();
                    }
                    continue;
                }
                Some(Event::Ack(_)) => continue,
                Some(Event::Cancel) => {
                    self.cancelled = true;
                    (client.cancel(now), None)
                }
                Some(Event::Response(resp)) => {
                    // Only responses for this branch matter now; an earlier
                    // branch's retransmitted failure is ACKed again.
                    if resp.top_via().and_then(|v| v.branch) != Some(branch.as_str()) {
                        reack(&proxy, &self.sent, &resp);
                        continue;
                    }
                    let to_cancel = resp.cseq().is_some_and(|(_, m)| m == "CANCEL");
                    (client.on_response(resp.status().unwrap_or(500), to_cancel, now), Some(resp))
                }
            };
            if step.retransmit {
                let _ = proxy.transports.send(transport, egress, dest, bytes.clone()).await;
            }
            if step.cancel
                && let Some(sent) = &sent
            {
                let _ = proxy.transports.send(transport, egress, dest, originate::cancel(&sent.msg)).await;
                self.failed.push(branch.clone());
            }
            if step.ack
                && let (Some(resp), Some(sent)) = (&resp, &sent)
            {
                let _ = proxy.transports.send(transport, egress, dest, originate::ack(&sent.msg, resp)).await;
                self.failed.push(branch.clone());
            }
            if step.pass_up
                && let Some(resp) = resp
            {
                let code = resp.status().unwrap_or(500);
                if code < 200 {
                    self.relay(&resp);
                } else {
                    break self.final_response(*resp, code);
                }
            }
            match step.end {
                Some(ClientEnd::TimedOut) => break TargetEnd::Failed(Outcome::Timeout, None),
                Some(ClientEnd::CancelledBeforeAnswer) => {
                    self.fail(&RequestError::Cancelled);
                    break TargetEnd::Answered;
                }
                Some(ClientEnd::Final(_)) | None => {}
            }
        };
        if let Some(sent) = sent {
            self.sent.insert(branch, sent);
        }
        (end, client.responded())
    }

    /// What a target's final response means for the request (RFC 3261 §16.7).
    /// A challenge (401, 407) goes upstream, as the caller must answer it;
    /// but not one from a UM server: [MS-EUMR] moves on to the next UM
    /// server after any failure response.
    fn final_response(&mut self, resp: Message, code: u16) -> TargetEnd {
        let challenge = (code == 401 || code == 407) && self.um.is_none();
        if (200..300).contains(&code) || challenge || self.cancelled {
            self.relay(&resp);
            return TargetEnd::Answered;
        }
        if (300..400).contains(&code) {
            let contacts: Vec<String> = resp.values(Name::Contact).map(route_uri).collect();
            // A call that may not be diverted ([MS-SIPRE] Ms-Sensitivity) is
            // not sent to voice mail by the router: a redirect there goes to
            // the caller as it came, and the search ends.
            if self.invite && contacts.iter().any(|c| is_voicemail_uri(c)) && super::validate::no_diversion(&self.req) {
                tracing::info!(code, "a redirect to voice mail for a call that may not be diverted; relayed");
                self.relay(&resp);
                return TargetEnd::Answered;
            }
            if !contacts.is_empty() {
                return TargetEnd::Redirected(code, contacts);
            }
        }
        if !self.invite && self.req.to_tag().is_some() {
            self.relay(&resp);
            return TargetEnd::Answered;
        }
        TargetEnd::Failed(Outcome::Response(code), Some(resp))
    }
}

/// A transaction after its final response (see [`ServerTransaction`]): absorbs
/// retransmissions of the request and the ACK, retransmits a non-2xx final
/// over UDP until the ACK, and ACKs again a retransmitted failure of a branch.
/// It keeps only what that needs.
struct Lingering {
    proxy: Arc<Proxy>,
    source: Source,
    reply_to: SocketAddr,
    rx: mpsc::UnboundedReceiver<Event>,
    server: ServerTransaction,
    /// The final response sent upstream.
    last: Option<Vec<u8>>,
    /// Its To tag, until an ACK carrying it came (the source receives at
    /// its address: `Limiter::exchanged`).
    tag: Option<Box<str>>,
    /// The INVITEs of branches that failed, by branch.
    sent: HashMap<String, Sent>,
    /// The transaction's key and client branches, removed from the table at the end.
    key: String,
    branches: Vec<String>,
    /// Released when the lingering ends, before the transaction leaves the table.
    held: Option<Held>,
}

impl Lingering {
    async fn run(mut self) {
        while !self.server.is_terminated() {
            let Some(wake) = self.server.wake() else { break };
            // Only Timer G needs its instant; the end is rounded up to the
            // linger grid, so transactions end together.
            let wake = if self.server.is_resending() { wake } else { on_linger_grid(wake) };
            let event = next_event(&mut self.rx, wake).await;
            let now = Instant::now();
            let step = match event {
                None => self.server.on_timer(now),
                Some(Event::Ack(tag)) => {
                    if tag.is_some() && tag == self.tag {
                        self.tag = None;
                        self.proxy.limiter.exchanged(self.source.addr.ip());
                    }
                    self.server.on_ack(now)
                }
                Some(Event::Retransmission) => self.server.on_retransmission(),
                // A 2xx again (its ACK was lost): forwarded upstream, as in
                // the accepted state of RFC 6026; a failure again: ACKed.
                Some(Event::Response(resp))
                    if resp.status().is_some_and(|c| (200..300).contains(&c))
                        && resp.cseq().is_some_and(|(_, m)| m == "INVITE") =>
                {
                    let bytes = resp.edit().pop_via().finish();
                    self.proxy.transports.reply_kept(&self.source, self.reply_to, &bytes);
                    ServerStep::Wait
                }
                Some(Event::Response(resp)) => {
                    reack(&self.proxy, &self.sent, &resp);
                    ServerStep::Wait
                }
                Some(Event::Cancel) => ServerStep::Wait,
            };
            match step {
                ServerStep::Resend => {
                    if let Some(last) = &self.last {
                        self.proxy.transports.reply_kept(&self.source, self.reply_to, last);
                    }
                }
                ServerStep::End => break,
                ServerStep::Wait => {}
            }
        }
        // Released first: a transaction gone from the table holds nothing.
        drop(self.held.take());
        self.proxy.table.remove(&self.key, &self.branches);
    }
}

/// The transaction's next event, or `None` when `wake` comes first (a timer).
async fn next_event(rx: &mut mpsc::UnboundedReceiver<Event>, wake: Instant) -> Option<Event> {
    tokio::select! {
        e = rx.recv() => e,
        _ = sleep_until(wake.into()) => None,
    }
}

/// ACKs again a retransmitted non-2xx final response of an earlier branch.
fn reack(proxy: &Proxy, sent: &HashMap<String, Sent>, resp: &Message) {
    let Some(branch) = resp.top_via().and_then(|v| v.branch) else { return };
    if let (true, Some(s)) = (resp.status().is_some_and(|c| c >= 300), sent.get(branch)) {
        proxy.transports.send_now(s.transport, s.local, s.dest, originate::ack(&s.msg, resp));
    }
}

/// Whether `answer` tells an unknown user (`15004`) or one not enabled for UM
/// (`15000`) by its `ms-diagnostics`: what `uniform_user_answers` hides.
fn names_a_user(answer: &Answer) -> bool {
    answer.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("ms-diagnostics") && (value.starts_with("15004") || value.starts_with("15000"))
    })
}

/// A response's code and reason phrase (`488 Not Acceptable Here`).
fn status_line(r: &Message) -> String {
    match (r.status(), r.reason().map(str::trim).filter(|s| !s.is_empty())) {
        (Some(code), Some(reason)) => format!("{code} {reason}"),
        (code, _) => code.unwrap_or(500).to_string(),
    }
}

/// Whether response `r` is a better final answer than `best` (RFC 3261 §16.7:
/// 6xx first, then the lowest class, 4xx before 5xx).
fn better(r: &Message, best: Option<&Message>) -> bool {
    let rank = |code: u16| match code / 100 {
        6 => 0,
        4 => 1,
        5 => 2,
        _ => 3,
    };
    match (r.status(), best.and_then(Message::status)) {
        (Some(_), None) => true,
        (Some(a), Some(b)) => rank(a) < rank(b),
        _ => false,
    }
}
