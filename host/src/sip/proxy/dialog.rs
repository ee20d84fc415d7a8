//! Which in-dialog requests the router forwards. A request with a To tag goes
//! along its Route set or Request-URI without a policy, so it must show that it
//! belongs to a dialog the router serves, or the router relays anything
//! anywhere. It passes when:
//!
//! - the URI that names the router (its first Route, or a strict router's
//!   Request-URI) carries the router's tag for its Call-ID: a Record-Route the
//!   router inserted (see [`Secret::dialog_tag`]); or
//! - a tenant owns the domain of its Request-URI, To or From, and names the
//!   source among its `peers` (a dialog the router did not record-route). An
//!   empty `peers` admits no one here: anyone may send a tenant new calls,
//!   but only its peers may use the router to reach an arbitrary address.
//!
//! Otherwise it gets 404 (no dialog of the router's tenants) or 403 (not a
//! peer of the tenant), as with Kamailio's `loose_route` default. Only requests
//! that pass are exempt from overload control.

use crate::control::{Tenants, acl};
use crate::model::Source;
use crate::model::uri::route_uri;
use crate::model::uri::{NameAddrRef, UriRef};
use crate::model::wire::{Message, Name};
use crate::sip::error::RequestError;
use crate::sip::secret::{ROUTE_PARAM, Secret};

/// How an in-dialog request showed it may be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    /// It follows a Record-Route the router tagged for its Call-ID.
    Tagged,
    /// It comes from a configured peer of a tenant it names.
    Peer,
}

/// Whether the in-dialog request `req` from `source` may be forwarded.
pub fn check(
    req: &Message,
    source: &Source,
    tenants: &Tenants,
    secret: &Secret,
    is_us: impl Fn(&UriRef<'_>) -> bool,
) -> Result<Passed, RequestError> {
    if routed_by_us(req, secret, &is_us) {
        return Ok(Passed::Tagged);
    }
    match peer_of_a_tenant(req, source, tenants) {
        Some(true) => Ok(Passed::Peer),
        Some(false) => Err(RequestError::NotAPeer),
        None => Err(RequestError::NotInDialog),
    }
}

/// Whether `source` is a configured peer (`peers`, not empty) of a tenant
/// owning the domain of `req`'s Request-URI, To or From: `None` when no tenant
/// owns any of them.
pub fn peer_of_a_tenant(req: &Message, source: &Source, tenants: &Tenants) -> Option<bool> {
    let ruri = req.request_uri().and_then(|u| UriRef::parse(u).ok()).map(|u| u.host);
    let to = req.first(Name::To).and_then(|v| NameAddrRef::parse(v).ok()).map(|a| a.uri.host);
    let from = req.first(Name::From).and_then(|v| NameAddrRef::parse(v).ok()).map(|a| a.uri.host);
    let mut owned = None;
    for host in [ruri, to, from].into_iter().flatten() {
        let Some(tenant) = tenants.by_domain(&host.to_ascii_lowercase()) else { continue };
        let peers = &tenant.config.peers;
        if !peers.is_empty() && acl::allows(peers, source.addr.ip()) {
            return Some(true);
        }
        owned = Some(false);
    }
    owned
}

/// Whether the URI naming the router carries its dialog tag for the Call-ID.
fn routed_by_us(req: &Message, secret: &Secret, is_us: &impl Fn(&UriRef<'_>) -> bool) -> bool {
    let Some(call_id) = req.first(Name::CallId) else { return false };
    let tagged = |uri: &str| {
        UriRef::parse(uri).is_ok_and(|u| {
            is_us(&u) && u.param(ROUTE_PARAM).flatten().is_some_and(|tag| secret.is_dialog_tag(call_id, tag))
        })
    };
    // Loose routing: the first Route; from a strict router: the Request-URI.
    req.values(Name::Route).next().map(route_uri).is_some_and(|r| tagged(&r)) || req.request_uri().is_some_and(tagged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::config::{RouterConfig, TenantConfig};
    use crate::model::Transport;

    const US: &str = "127.0.0.1:5060";

    fn is_us(u: &UriRef<'_>) -> bool {
        format!("{}:{}", u.host, u.port.unwrap_or(5060)) == US
    }

    fn tenants(peers: &[&str]) -> Tenants {
        let mut t = TenantConfig::empty("contoso");
        t.domains = vec!["contoso.com".into()];
        t.peers = crate::control::acl::parse_list("peers", &peers.iter().map(|p| p.to_string()).collect::<Vec<_>>())
            .expect("cidr");
        let config = RouterConfig::with_tenants(vec![t]);
        Tenants::new(&config, Default::default())
    }

    fn bye(ruri: &str, to: &str, from: &str, route: Option<&str>) -> Message {
        let route = route.map(|r| format!("Route: {r}\r\n")).unwrap_or_default();
        let text = format!(
            "BYE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n{route}\
             From: <{from}>;tag=1\r\nTo: <{to}>;tag=2\r\nCall-ID: call-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(text.into_bytes(), false, usize::MAX).expect("parses")
    }

    fn source(ip: [u8; 4]) -> Source {
        Source { addr: (ip, 5060).into(), transport: Transport::Udp, tls_peer_name: None, local: None }
    }

    #[test]
    fn a_forged_dialog_for_no_tenant_is_refused_even_when_it_names_the_router() {
        let secret = Secret::new(None);
        let t = tenants(&[]);
        let forged = bye("sip:v@127.0.0.2:7777", "sip:v@evil.example", "sip:a@evil.example", None);
        assert_eq!(check(&forged, &source([10, 0, 0, 1]), &t, &secret, is_us), Err(RequestError::NotInDialog));
        let names_us =
            bye("sip:v@127.0.0.2:7777", "sip:v@evil.example", "sip:a@evil.example", Some("<sip:127.0.0.1;lr>"));
        assert_eq!(check(&names_us, &source([10, 0, 0, 1]), &t, &secret, is_us), Err(RequestError::NotInDialog));
        let wrong_tag = bye(
            "sip:v@127.0.0.2",
            "sip:v@evil.example",
            "sip:a@evil.example",
            Some("<sip:127.0.0.1;lr;exum=0123456789abcdef>"),
        );
        assert_eq!(check(&wrong_tag, &source([10, 0, 0, 1]), &t, &secret, is_us), Err(RequestError::NotInDialog));
    }

    #[test]
    fn the_routers_record_route_or_a_tenants_domain_from_a_peer_passes() {
        let secret = Secret::new(None);
        let t = tenants(&["10.0.0.0/8"]);
        let route = format!("<sip:127.0.0.1:5060;lr;exum={}>", secret.dialog_tag("call-1"));
        let routed = bye("sip:v@127.0.0.2", "sip:v@elsewhere.example", "sip:a@evil.example", Some(&route));
        assert_eq!(
            check(&routed, &source([192, 0, 2, 1]), &t, &secret, is_us),
            Ok(Passed::Tagged),
            "our tag, any source"
        );
        let strict = bye(&route[1..route.len() - 1], "sip:v@x.example", "sip:a@y.example", Some("<sip:v@127.0.0.2>"));
        assert_eq!(
            check(&strict, &source([192, 0, 2, 1]), &t, &secret, is_us),
            Ok(Passed::Tagged),
            "a strict router's request"
        );
        let from_tenant = bye("sip:caller@192.0.2.7", "sip:caller@pstn.example", "sip:bob@Contoso.com", None);
        assert_eq!(check(&from_tenant, &source([10, 1, 2, 3]), &t, &secret, is_us), Ok(Passed::Peer));
        let to_tenant = bye("sip:um@192.0.2.8", "sip:bob@contoso.com", "sip:caller@pstn.example", None);
        assert_eq!(check(&to_tenant, &source([10, 1, 2, 3]), &t, &secret, is_us), Ok(Passed::Peer));
        assert_eq!(
            check(&to_tenant, &source([192, 0, 2, 1]), &t, &secret, is_us),
            Err(RequestError::NotAPeer),
            "the tenant's domain, not its peer"
        );
    }

    #[test]
    fn a_tenant_without_peers_relays_no_dialog_it_did_not_record_route() {
        let secret = Secret::new(None);
        let open = tenants(&[]);
        let relay = bye("sip:+15551234567@127.0.0.2:7777", "sip:x@pstn.example", "sip:anyone@contoso.com", None);
        assert_eq!(check(&relay, &source([10, 1, 2, 3]), &open, &secret, is_us), Err(RequestError::NotAPeer));
        let route = format!("<sip:127.0.0.1:5060;lr;exum={}>", secret.dialog_tag("call-1"));
        let ours = bye("sip:v@127.0.0.2", "sip:v@x.example", "sip:anyone@contoso.com", Some(&route));
        assert_eq!(check(&ours, &source([10, 1, 2, 3]), &open, &secret, is_us), Ok(Passed::Tagged));
    }
}
