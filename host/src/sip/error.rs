//! Why the router answers a request itself with a final response: one error type
//! for the whole request path, recording which side failed (the peer that sent
//! the request, the tenant's policy, the targets, the router itself), and the
//! one place that maps each to its status, reason phrase and headers.
//!
//! A policy's own `reject` and `redirect` decisions are not errors (they are
//! answers the tenant chose, see [`Answer::reject`]); policy faults are handled
//! in the policy plane by the tenant's fallback and never reach here.

use std::borrow::Cow;

use crate::model::status::reason_phrase;
use crate::policy::contract::{Decision, Header};

/// The side that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The peer that sent the request: malformed, not allowed, nothing to route to.
    Peer,
    /// The tenant's policy gave no usable decision.
    Policy,
    /// The targets the request was forwarded to did not answer usefully.
    Target,
    /// The router: overloaded, shutting down, or an internal failure.
    Router,
}

impl Side {
    /// The label value in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Peer => "peer",
            Side::Policy => "policy",
            Side::Target => "target",
            Side::Router => "router",
        }
    }
}

/// Why a request gets a final response from the router itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request is not valid SIP (RFC 3261 §16.3 step 1): 400, with a Warning
    /// naming the problem.
    #[error("{0}")]
    BadRequest(Cow<'static, str>),
    /// Another SIP version than 2.0: 505.
    #[error("unsupported SIP version")]
    Version,
    /// A Request-URI scheme the router cannot route (§16.3 step 2): 416.
    #[error("unsupported URI scheme {0}")]
    UnsupportedScheme(String),
    /// Max-Forwards is 0 (§16.3 step 3): 483.
    #[error("Max-Forwards reached 0")]
    TooManyHops,
    /// The request has passed this router before unchanged (§16.3 step 4): 482.
    #[error("the request has been here before")]
    Loop,
    /// Proxy-Require names extensions the router does not support (§16.3 step
    /// 5): 420 with an Unsupported header listing them.
    #[error("unsupported extensions: {0}")]
    BadExtension(String),
    /// A CANCEL for no transaction (§16.10): 481.
    #[error("no transaction to cancel")]
    NoTransaction,
    /// The caller cancelled the request: 487.
    #[error("request cancelled")]
    Cancelled,
    /// No tenant owns the Request-URI's domain: 404.
    #[error("no tenant owns this domain")]
    UnknownDomain,
    /// A request in a dialog that neither the router's Record-Route nor a
    /// tenant's domain vouches for: 404.
    #[error("no dialog of this router or its tenants")]
    NotInDialog,
    /// The listener's `allow` list refuses the peer: 403.
    #[error("not allowed on this listener")]
    ListenerRefused,
    /// The peer is not in the tenant's `peers`: 403.
    #[error("not a peer of this tenant")]
    NotAPeer,
    /// An in-dialog request whose Route set and Request-URI name no next hop: 400.
    #[error("no next hop in the Route set or Request-URI")]
    NoNextHop,
    /// The policy (or its fallback) left a decision to the standard algorithm
    /// where none applies: 500.
    #[error("the policy gave no decision the router can carry out")]
    NoDecision,
    /// Every target of the decision failed and no response is worth relaying:
    /// 480 with ms-diagnostics 15030.
    #[error("every target failed")]
    AllTargetsFailed,
    /// The next hop of an in-dialog request did not answer in time: 408.
    #[error("the next hop did not answer")]
    NextHopTimeout,
    /// The next hop of an in-dialog request cannot be reached: 503.
    #[error("the next hop cannot be reached")]
    NextHopUnreachable,
    /// The next hop of an in-dialog request redirected it: 480.
    #[error("the next hop redirected an in-dialog request")]
    NextHopRedirected,
    /// Overload control refused a new request: 503 with Retry-After.
    #[error("overloaded ({reason}); retry after {retry_after} s")]
    Overloaded {
        /// Which limit (`transactions`, `source_rate`).
        reason: &'static str,
        /// Seconds for Retry-After.
        retry_after: u32,
    },
    /// The router is shutting down: 503 with Retry-After.
    #[error("shutting down")]
    Draining,
    /// The router failed: 500.
    #[error("internal error: {0}")]
    Internal(Cow<'static, str>),
}

impl RequestError {
    /// A 400 naming the problem.
    pub fn bad(problem: impl Into<Cow<'static, str>>) -> RequestError {
        RequestError::BadRequest(problem.into())
    }

    /// The side that failed.
    pub fn side(&self) -> Side {
        use RequestError::*;
        match self {
            BadRequest(_) | Version | UnsupportedScheme(_) | TooManyHops | Loop | BadExtension(_) | NoTransaction
            | Cancelled | UnknownDomain | NotInDialog | ListenerRefused | NotAPeer | NoNextHop => Side::Peer,
            NoDecision => Side::Policy,
            AllTargetsFailed | NextHopTimeout | NextHopUnreachable | NextHopRedirected => Side::Target,
            Overloaded { .. } | Draining | Internal(_) => Side::Router,
        }
    }

    /// The status code.
    pub fn code(&self) -> u16 {
        use RequestError::*;
        match self {
            BadRequest(_) | NoNextHop => 400,
            Version => 505,
            UnsupportedScheme(_) => 416,
            TooManyHops => 483,
            Loop => 482,
            BadExtension(_) => 420,
            NoTransaction => 481,
            Cancelled => 487,
            UnknownDomain | NotInDialog => 404,
            ListenerRefused | NotAPeer => 403,
            NoDecision | Internal(_) => 500,
            AllTargetsFailed | NextHopRedirected => 480,
            NextHopTimeout => 408,
            NextHopUnreachable | Overloaded { .. } | Draining => 503,
        }
    }

    /// The response the router answers with.
    pub fn answer(&self) -> Answer {
        use RequestError::*;
        let code = self.code();
        let answer = Answer::new(code);
        match self {
            BadRequest(_) | Version | UnsupportedScheme(_) | TooManyHops | Loop | UnknownDomain | NotInDialog
            | NotAPeer | NoNextHop => answer.with("Warning", warning(&self.to_string())),
            BadExtension(options) => {
                answer.with("Unsupported", options.clone()).with("Warning", warning(&self.to_string()))
            }
            AllTargetsFailed => answer.with(
                "ms-diagnostics",
                "15030;reason=\"Failed to route to Exchange Server\";appName=\"ExumRouting\"".to_owned(),
            ),
            Overloaded { retry_after, .. } => answer.with("Retry-After", retry_after.to_string()),
            Draining => answer.with("Retry-After", "5".to_owned()),
            NoTransaction | Cancelled | ListenerRefused | NoDecision | NextHopTimeout | NextHopUnreachable
            | NextHopRedirected | Internal(_) => answer,
        }
    }
}

/// A `Warning` value of the router's (code 399, RFC 3261 §20.43), the text
/// with its quotes and backslashes escaped.
pub(crate) fn warning(text: &str) -> String {
    format!("399 exum-router {}", quoted(text))
}

/// `text` as a quoted string (RFC 3261 §25.1): quotes and backslashes
/// escaped, control characters left out.
pub(crate) fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        if !c.is_control() {
            out.push(c);
        }
    }
    out.push('"');
    out
}

impl Answer {
    /// The failure answer with which target answered what (`tried`, e.g.
    /// `sip:um1.contoso.com 488 Not Acceptable Here`): a `Warning` naming each,
    /// and the same as `AppendedInfo` on every `ms-diagnostics` value.
    pub fn with_tried(mut self, tried: &[String]) -> Answer {
        if tried.is_empty() {
            return self;
        }
        let text = format!("tried {}", tried.join("; "));
        for (header, value) in &mut self.headers {
            if header.eq_ignore_ascii_case("ms-diagnostics") && !value.to_ascii_lowercase().contains("appendedinfo=") {
                value.push_str(";AppendedInfo=");
                value.push_str(&quoted(&text));
            }
        }
        self.with("Warning", warning(&text))
    }
}

/// A final or provisional response the router sends itself: status, reason
/// phrase and extra header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub code: u16,
    /// The reason phrase.
    pub reason: Cow<'static, str>,
    /// Extra header fields.
    pub headers: Vec<(Cow<'static, str>, String)>,
}

impl Answer {
    /// `code` with its standard reason phrase and no extra header.
    pub fn new(code: u16) -> Answer {
        Answer { code, reason: Cow::Borrowed(reason_phrase(code)), headers: Vec::new() }
    }

    /// Adds a header field.
    pub fn with(mut self, name: &'static str, value: String) -> Answer {
        self.headers.push((Cow::Borrowed(name), value));
        self
    }

    /// The answer with `source="<name>"` on every `ms-diagnostics` value that
    /// names no source, as Lync's servers write them.
    pub fn sourced(mut self, name: &str) -> Answer {
        for (header, value) in &mut self.headers {
            let lower = value.to_ascii_lowercase();
            if header.eq_ignore_ascii_case("ms-diagnostics") && !lower.contains("source=") {
                // Right after the reason, before any AppendedInfo.
                let source = format!(";source=\"{name}\"");
                match lower.find(";appendedinfo=") {
                    Some(at) => value.insert_str(at, &source),
                    None => value.push_str(&source),
                }
            }
        }
        self
    }

    /// The response of a `reject` or `redirect` decision (the policy's own
    /// answer, not an error); `None` for the other decisions.
    pub fn of_decision(decision: &Decision) -> Option<Answer> {
        let owned = |h: &Header| (Cow::Owned(h.name.clone()), h.value.clone());
        match decision {
            Decision::Reject(r) => Some(Answer {
                code: r.code,
                reason: if r.reason.is_empty() {
                    Cow::Borrowed(reason_phrase(r.code))
                } else {
                    r.reason.clone().into()
                },
                headers: r.headers.iter().map(owned).collect(),
            }),
            Decision::Redirect(r) => {
                let mut answer = Answer::new(r.code);
                answer.headers.extend(r.contacts.iter().map(|c| (Cow::Borrowed("Contact"), format!("<{c}>"))));
                answer.headers.extend(r.headers.iter().map(owned));
                Some(answer)
            }
            Decision::Forward(_) | Decision::Standard => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant has its row in the table of `docs/architecture.md`
    /// ("Errors of the request path"), read from this file's enum.
    #[test]
    fn every_variant_is_in_the_documentation_table() {
        let source = include_str!("error.rs");
        let body =
            source.split("pub enum RequestError {").nth(1).and_then(|b| b.split("\n}\n").next()).expect("the enum");
        let variants: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("    "))
            .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
            .map(|l| l.split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or_default())
            .collect();
        assert!(variants.len() >= 20, "{variants:?}");
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/architecture.md")).expect("docs");
        let table = doc.split("## Errors of the request path").nth(1).expect("the section");
        let table = table.split("\n\n`RequestError::code`").next().unwrap_or(table);
        let missing: Vec<&&str> = variants.iter().filter(|v| !table.contains(&format!("`{v}`"))).collect();
        assert!(missing.is_empty(), "not in the table of docs/architecture.md: {missing:?}");
    }

    #[test]
    fn every_error_maps_to_its_status_side_and_headers() {
        let bad = RequestError::bad("missing Call-ID").answer();
        assert_eq!((bad.code, bad.reason.as_ref()), (400, "Bad Request"));
        assert_eq!(bad.headers, [("Warning".into(), "399 exum-router \"missing Call-ID\"".to_owned())]);
        let ext = RequestError::BadExtension("foo, bar".into()).answer();
        assert_eq!(ext.code, 420);
        assert_eq!(ext.headers[0], ("Unsupported".into(), "foo, bar".to_owned()));
        let failed = RequestError::AllTargetsFailed;
        assert_eq!((failed.code(), failed.side()), (480, Side::Target));
        assert!(failed.answer().headers[0].1.starts_with("15030;"));
        let over = RequestError::Overloaded { reason: "transactions", retry_after: 7 };
        assert_eq!((over.code(), over.side()), (503, Side::Router));
        assert_eq!(over.answer().headers, [("Retry-After".into(), "7".to_owned())]);
        assert_eq!(RequestError::NoDecision.side(), Side::Policy);
        assert_eq!(RequestError::Version.code(), 505);
    }

    #[test]
    fn ms_diagnostics_name_their_source_once() {
        let a =
            RequestError::AllTargetsFailed.answer().with("Warning", "399 x".into()).sourced("um-router.contoso.com");
        assert_eq!(
            a.headers[0].1,
            "15030;reason=\"Failed to route to Exchange Server\";appName=\"ExumRouting\";source=\"um-router.contoso.com\""
        );
        assert_eq!(a.headers[1].1, "399 x", "other headers untouched");
        let again = a.sourced("other");
        assert!(again.headers[0].1.ends_with(";source=\"um-router.contoso.com\""), "a source is kept");
    }

    #[test]
    fn a_failure_after_targets_failed_names_what_each_answered() {
        let tried =
            ["sip:um1.contoso.com 488 Not Acceptable Here".to_owned(), "sip:um2.contoso.com timeout".to_owned()];
        let a = RequestError::AllTargetsFailed.answer().with_tried(&tried).sourced("router.contoso.com");
        let text = "tried sip:um1.contoso.com 488 Not Acceptable Here; sip:um2.contoso.com timeout";
        assert_eq!(
            a.headers[0].1,
            format!(
                "15030;reason=\"Failed to route to Exchange Server\";appName=\"ExumRouting\";source=\"router.contoso.com\";AppendedInfo=\"{text}\""
            )
        );
        assert_eq!(a.headers[1], (Cow::Borrowed("Warning"), format!("399 exum-router \"{text}\"")));
        assert_eq!(Answer::new(480).with_tried(&[]), Answer::new(480), "nothing tried, nothing said");
    }

    #[test]
    fn warning_text_is_escaped() {
        let a = RequestError::bad("bad From: \"x\\").answer();
        assert_eq!(a.headers[0].1, "399 exum-router \"bad From: \\\"x\\\\\"");
    }
}
