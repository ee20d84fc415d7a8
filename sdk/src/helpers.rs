//! Helpers for the chores every policy has: building decisions, `ms-diagnostics`,
//! hosted voice-mail policy resolution. (Numbers: `normalize_number`, from
//! `exum-address`.)

use crate::{Decision, Forward, Header, HostedVoicemailPolicy, PolicyScope, Redirect, Reject, Target, Transport, host};

/// The `appName` of the `ms-diagnostics` the Exchange UM routing writes, as
/// Lync's ExUM routing application names itself.
pub const APP_NAME: &str = "ExumRouting";

/// An `ms-diagnostics` header, as Lync's Exchange UM routing writes them:
/// `ms-diagnostics: 15030;reason="...";appName="ExumRouting"` (the router adds
/// `source`).
pub fn ms_diagnostics(code: u32, reason: &str) -> Header {
    Header { name: "ms-diagnostics".to_owned(), value: format!("{code};reason=\"{reason}\";appName=\"{APP_NAME}\"") }
}

/// Resolves the hosted voice-mail policy that applies to a user or contact: the
/// granted one, else the site's, else the tenant's global policy.
pub fn resolve_hosted_policy(granted: Option<&str>, site: Option<&str>) -> Option<HostedVoicemailPolicy> {
    granted
        .and_then(|name| host::lookup_hosted_voicemail_policy(&PolicyScope::Named(name.to_owned())))
        .or_else(|| site.and_then(|s| host::lookup_hosted_voicemail_policy(&PolicyScope::Site(s.to_owned()))))
        .or_else(|| host::lookup_hosted_voicemail_policy(&PolicyScope::Global))
}

impl Target {
    /// A target with the router's default transport and timeout.
    pub fn new(uri: &str) -> Self {
        Target { uri: uri.to_owned(), transport: None, timeout_ms: None }
    }

    /// Sets how long to wait for this target before trying the next, in ms.
    pub fn with_timeout_ms(mut self, timeout_ms: u32) -> Self {
        self.timeout_ms = Some(timeout_ms);
        self
    }

    /// Sets the transport.
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }
}

impl Forward {
    /// Tries `target` before the other targets.
    pub fn first(mut self, target: Target) -> Self {
        self.targets.insert(0, target);
        self
    }

    /// Tries `target` after the other targets.
    pub fn then(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    /// Forward to `targets`, in order, with no other change.
    pub fn to(targets: Vec<Target>) -> Self {
        Forward { targets, request_uri: None, add_headers: Vec::new(), remove_headers: Vec::new() }
    }

    /// Rewrites the Request-URI of the forwarded request.
    pub fn with_request_uri(mut self, uri: impl ToString) -> Self {
        self.request_uri = Some(uri.to_string());
        self
    }

    /// Adds a header field to the forwarded request.
    pub fn add_header(mut self, name: &str, value: &str) -> Self {
        self.add_headers.push(Header { name: name.to_owned(), value: value.to_owned() });
        self
    }

    /// Removes every field of header `name` from the forwarded request.
    pub fn remove_header(mut self, name: &str) -> Self {
        self.remove_headers.push(name.to_owned());
        self
    }
}

impl Reject {
    /// A rejection with `code` and `reason` (empty for the standard phrase).
    pub fn new(code: u16, reason: &str) -> Self {
        Reject { code, reason: reason.to_owned(), headers: Vec::new() }
    }

    /// Adds a header field to the response.
    pub fn with_header(mut self, header: Header) -> Self {
        self.headers.push(header);
        self
    }
}

impl Redirect {
    /// A redirection with `code` (3xx) to `contacts`.
    pub fn new(code: u16, contacts: Vec<String>) -> Self {
        Redirect { code, contacts, headers: Vec::new() }
    }
}

impl Decision {
    /// A forward changed by `f` (a target added, a header more); any other
    /// decision as it is.
    pub fn map_forward(self, f: impl FnOnce(Forward) -> Forward) -> Decision {
        match self {
            Decision::Forward(forward) => Decision::Forward(f(forward)),
            other => other,
        }
    }

    /// Reject with `code` and `reason`.
    pub fn reject(code: u16, reason: &str) -> Self {
        Decision::Reject(Reject::new(code, reason))
    }

    /// Reject with `code`, `reason` and an `ms-diagnostics` header.
    pub fn reject_with_diagnostics(code: u16, reason: &str, diag_code: u32, diag_reason: &str) -> Self {
        Decision::Reject(Reject::new(code, reason).with_header(ms_diagnostics(diag_code, diag_reason)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_decisions() {
        let d = Decision::reject_with_diagnostics(480, "Temporarily Unavailable", 15030, "Failed");
        let Decision::Reject(r) = d else { panic!("reject") };
        assert_eq!(r.headers[0].value, "15030;reason=\"Failed\";appName=\"ExumRouting\"");
        let f = Forward::to(vec![Target::new("sip:a@b").with_timeout_ms(100)])
            .remove_header("Diversion")
            .add_header("X", "y");
        assert_eq!((f.targets[0].timeout_ms, f.remove_headers.len(), f.add_headers.len()), (Some(100), 1, 1));
    }
}
