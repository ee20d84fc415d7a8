//! What the proxy does with a new request before any policy is asked (RFC 3261
//! §16.3-16.4): validate it, answer an OPTIONS addressed to the router itself,
//! undo a strict router's Request-URI rewrite, drop the router's own Route,
//! then tell a request in a dialog (routed along its Route set) from a new one
//! (routed by its tenant's policy). `serve` and `simulate` both start here.

use super::validate::validate;
use crate::model::uri::UriRef;
use crate::model::uri::route_uri;
use crate::model::wire::{Message, Name};
use crate::sip::error::RequestError;

/// The methods the router names in `Allow` when it answers an OPTIONS itself.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS";

/// How a request is to be forwarded.
#[derive(Debug)]
pub struct Routable {
    /// The request with its Request-URI restored, when a strict router had
    /// replaced it; `None`: the request as received.
    pub rewritten: Option<Message>,
    /// Whether its first Route names the router (and goes).
    pub pop_routes: usize,
}

/// What becomes of a new request.
#[derive(Debug)]
pub enum Classified {
    /// The router answers it with an error.
    Refused(RequestError),
    /// An OPTIONS for the router itself: the router answers 200.
    OptionsToUs,
    /// In a dialog (a To tag): along its Route set, without a policy.
    InDialog(Routable),
    /// Out of any dialog: its tenant's policy decides.
    New(Routable),
}

/// Classifies `req`; `is_us` tells whether a URI names one of the router's
/// listening addresses.
pub fn classify(req: &Message, is_us: impl Fn(&UriRef<'_>) -> bool) -> Classified {
    let ruri = req.request_uri().and_then(|u| UriRef::parse(u).ok());
    let ruri_is_us = ruri.is_some_and(|u| is_us(&u));
    let has_routes = req.fields_named(Name::Route).next().is_some();
    let options_to_us = req.method() == Some("OPTIONS")
        && ruri_is_us
        && ruri.is_some_and(|u| u.user.is_none())
        && req.to_tag().is_none()
        && !has_routes;
    if let Err(e) = validate(req, options_to_us) {
        return Classified::Refused(e);
    }
    if options_to_us {
        return Classified::OptionsToUs;
    }
    // Strict-route compatibility (§16.4): a Request-URI that is us, with
    // Routes, came from a strict router: the last Route is the real Request-URI.
    let rewritten = match req.values(Name::Route).last().map(route_uri) {
        Some(last) if ruri_is_us => {
            match Message::parse(req.edit().request_uri(&last).pop_last_route().finish(), false, usize::MAX) {
                Ok(m) => Some(m),
                Err(e) => return Classified::Refused(RequestError::bad(format!("bad Route: {e}"))),
            }
        }
        _ => None,
    };
    // Loose routing: our own Route goes.
    let pop_routes = own_routes(rewritten.as_ref().unwrap_or(req), &is_us);
    let routable = Routable { rewritten, pop_routes };
    if req.to_tag().is_some() { Classified::InDialog(routable) } else { Classified::New(routable) }
}

/// How many of `req`'s first Routes name the router: 0, 1, or 2 when it
/// record-routed twice (a request crossing transports or addresses, RFC 5658).
pub fn own_routes(req: &Message, is_us: impl Fn(&UriRef<'_>) -> bool) -> usize {
    req.values(Name::Route).map(route_uri).take(2).take_while(|u| UriRef::parse(u).is_ok_and(|u| is_us(&u))).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: &str = "127.0.0.1:5060";

    fn msg(text: &str) -> Message {
        Message::parse(text.as_bytes().to_vec(), false, usize::MAX).expect("parses")
    }

    fn request(start: &str, extra: &str) -> Message {
        msg(&format!(
            "{start} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
             From: <sip:a@x.com>;tag=1\r\nTo: <sip:b@y.com>{extra}\r\nCall-ID: c\r\nCSeq: 1 {}\r\n\
             Content-Length: 0\r\n\r\n",
            start.split(' ').next().unwrap_or_default()
        ))
    }

    fn is_us(u: &UriRef<'_>) -> bool {
        format!("{}:{}", u.host, u.port.unwrap_or(5060)) == US
    }

    #[test]
    fn options_to_the_router_is_answered_by_it_unless_it_is_routed_or_in_a_dialog() {
        assert!(matches!(classify(&request(&format!("OPTIONS sip:{US}"), ""), is_us), Classified::OptionsToUs));
        let with_route = request(&format!("OPTIONS sip:{US}"), "\r\nRoute: <sip:um.y.com;lr>");
        assert!(matches!(classify(&with_route, is_us), Classified::New(_)), "a strict router's request is routed");
        let in_dialog = request(&format!("OPTIONS sip:{US}"), ";tag=2");
        assert!(matches!(classify(&in_dialog, is_us), Classified::InDialog(_)));
    }

    #[test]
    fn a_strict_routers_request_uri_is_restored_and_our_route_popped() {
        let strict = request(&format!("INVITE sip:{US}"), "\r\nRoute: <sip:b@y.com>");
        let Classified::New(r) = classify(&strict, is_us) else { panic!("routable") };
        let req = r.rewritten.expect("rewritten");
        assert_eq!(req.request_uri(), Some("sip:b@y.com"));
        assert_eq!(req.first(Name::Route), None);
        let loose = request("BYE sip:b@10.0.0.9", &format!(";tag=2\r\nRoute: <sip:{US};lr>, <sip:p.y.com;lr>"));
        let Classified::InDialog(r) = classify(&loose, is_us) else { panic!("in dialog") };
        assert!(r.pop_routes == 1 && r.rewritten.is_none());
    }

    #[test]
    fn invalid_requests_are_refused_first() {
        let zero = request("INVITE sip:b@y.com", "").edit().max_forwards(0).finish();
        let zero = Message::parse(zero, false, usize::MAX).expect("parses");
        assert!(matches!(classify(&zero, is_us), Classified::Refused(RequestError::TooManyHops)));
    }
}
