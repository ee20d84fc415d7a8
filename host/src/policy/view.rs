//! The request view a policy sees, built from a parsed SIP request: the bridge
//! between the SIP plane and the contract's `request` record.

use super::bindings::exum::policy::types::{Header, Param, Request, Source, Transport, Uri};
use crate::sip::message::{ParseError, Request as SipRequest};
use crate::sip::{self, uri};

/// Header fields the router owns, or that are already in the view's own fields.
const NOT_IN_HEADERS: [&str; 9] = [
    "Via",
    "Route",
    "Record-Route",
    "Max-Forwards",
    "Content-Length",
    "From",
    "To",
    "Call-ID",
    "CSeq",
];

/// Builds the view of `req`, owned by tenant `tenant`, received from `source`.
pub fn request_view(
    tenant: &str,
    req: &SipRequest,
    source: &sip::Source,
) -> Result<Request, ParseError> {
    let from = req.from()?;
    let to = req.to()?;
    let (cseq, _) = req.cseq()?;
    let call_id = req
        .header("Call-ID")
        .ok_or(ParseError::Missing("Call-ID"))?;
    Ok(Request {
        tenant: tenant.to_owned(),
        method: req.method.clone(),
        request_uri: convert(&req.uri),
        request_uri_text: req.uri_text.clone(),
        from_display_name: from.display_name.clone(),
        from_tag: from.tag().map(str::to_owned),
        from: convert(&from.uri),
        to_tag: to.tag().map(str::to_owned),
        to: convert(&to.uri),
        call_id: call_id.to_owned(),
        cseq,
        headers: req
            .headers
            .iter()
            .filter(|(n, _)| !NOT_IN_HEADERS.iter().any(|x| x.eq_ignore_ascii_case(n)))
            .map(|(name, value)| Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        source: Source {
            address: source.addr.ip().to_string(),
            port: source.addr.port(),
            transport: match source.transport {
                sip::Transport::Udp => Transport::Udp,
                sip::Transport::Tcp => Transport::Tcp,
                sip::Transport::Tls => Transport::Tls,
            },
            tls_peer_name: source.tls_peer_name.clone(),
        },
    })
}

/// The contract's form of a parsed URI.
pub fn convert(u: &uri::Uri) -> Uri {
    Uri {
        scheme: u.scheme.clone(),
        user: u.user.clone(),
        host: u.host.clone(),
        port: u.port,
        params: u
            .params
            .iter()
            .map(|(name, value)| Param {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    }
}
