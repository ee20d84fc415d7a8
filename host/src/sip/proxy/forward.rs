//! The forwarded request (RFC 3261 §16.6): the decision's edits (Request-URI,
//! headers added and removed) and the router's own as a hop (its Via on top,
//! `received`/`rport` on the caller's, Max-Forwards decremented, its Route
//! popped, its Record-Route added). The proxy core and `simulate` both build
//! forwarded requests here.

use std::net::SocketAddr;

use crate::model::Transport;
use crate::model::wire::Message;
use crate::policy::contract::Forward;

/// Max-Forwards of a request that had none (RFC 3261 §16.6 step 3: 70).
const DEFAULT_MAX_FORWARDS: u8 = 70;

/// The decision's edits of the forwarded request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardSpec {
    /// The new Request-URI.
    pub request_uri: Option<String>,
    /// Header fields to add.
    pub add: Vec<(String, String)>,
    /// Header names to remove.
    pub remove: Vec<String>,
}

impl ForwardSpec {
    /// The edits of a `forward` decision.
    pub fn of(f: &Forward) -> ForwardSpec {
        ForwardSpec {
            request_uri: f.request_uri.clone(),
            add: f.add_headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect(),
            remove: f.remove_headers.clone(),
        }
    }
}

/// The router as one hop of the request.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The transport towards the next hop.
    pub transport: Transport,
    /// The router's address on that transport (its Via sent-by, its Record-Route).
    pub local: &'a str,
    /// The branch of the client transaction.
    pub branch: &'a str,
    /// Where the request came from (the caller's Via gets `received`/`rport`).
    pub source: SocketAddr,
    /// With the tenant's `record_route`, the Record-Route to add carries this
    /// dialog tag (see [`crate::sip::secret::Secret::dialog_tag`]).
    pub record_route: Option<&'a str>,
    /// How many of the first Routes name the router and are removed.
    pub pop_routes: usize,
    /// The transport and the router's address the request came in on: when
    /// they differ from the outgoing ones, the router record-routes twice
    /// (RFC 5658), so each side of the dialog reaches it as it can.
    pub inbound: Option<(Transport, &'a str)>,
    /// The next hop is a UM server (an INVITE to one of the tenant's UM
    /// servers, or to where one redirected it): [MS-EUMR] 3.1.5's edits.
    pub um: Option<&'a UmServerHop>,
    /// The W3C trace context to pass on: the SIP header's name (`[otel]
    /// sip_header`) and the client span's `traceparent`, replacing the one
    /// the request came with.
    pub trace: Option<(&'a str, &'a str)>,
}

/// What an INVITE to a UM server carries besides the decision's edits
/// ([MS-EUMR] 3.1.5): the `ms-fe` option tag in `Supported` (step 5), and
/// `Ms-Mras-Address` with the A/V Edge's GRUU when the tenant has one (step
/// 4; without one, the caller's `Ms-Mras-Address`, if any, is kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UmServerHop {
    /// The tenant's `av_edge_gruu`.
    pub mras: Option<String>,
}

impl UmServerHop {
    /// For a request of `tenant` to `target`: `Some` when `invite` and the
    /// target is one of the tenant's UM servers (by URI, as its directory
    /// lists it, case-insensitively).
    pub fn of(tenant: &crate::control::Tenant, invite: bool, target: &str) -> Option<UmServerHop> {
        let um = invite && tenant.directory.um_servers().any(|s| s.uri.eq_ignore_ascii_case(target));
        um.then(|| UmServerHop { mras: tenant.config.av_edge_gruu.clone() })
    }
}

/// The option tag a UM server is told the proxy supports ([MS-EUMR] 3.1.5 step 5).
pub const MS_FE: &str = "ms-fe";

/// `SIP/2.0/<transport>`.
pub fn via_protocol(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "SIP/2.0/UDP",
        Transport::Tcp => "SIP/2.0/TCP",
        Transport::Tls => "SIP/2.0/TLS",
    }
}

/// `req` as forwarded to the next hop: `request_uri` (a 3xx Contact) or the
/// decision's Request-URI, the decision's header edits, then the hop's.
pub fn forwarded(req: &Message, spec: &ForwardSpec, request_uri: Option<&str>, hop: &Hop<'_>) -> Vec<u8> {
    let mut edit = req.edit().received(hop.source).prepend_via(format!(
        "{} {};branch={};rport",
        via_protocol(hop.transport),
        hop.local,
        hop.branch
    ));
    if let Some(uri) = request_uri.or(spec.request_uri.as_deref()) {
        edit = edit.request_uri(uri);
    }
    for name in &spec.remove {
        edit = edit.remove(name);
    }
    let is_supported = |n: &str| n.eq_ignore_ascii_case("supported") || n.eq_ignore_ascii_case("k");
    let replaced = |n: &str| match hop.um {
        Some(um) => is_supported(n) || (um.mras.is_some() && n.eq_ignore_ascii_case("ms-mras-address")),
        None => false,
    };
    for (name, value) in &spec.add {
        if !replaced(name) {
            edit = edit.add(name, value);
        }
    }
    if let Some(um) = hop.um {
        // One Supported: the request's option tags (unless the decision
        // removed them) and the decision's, each once, with ms-fe.
        let kept = !spec.remove.iter().any(|n| is_supported(n));
        let mut tags: Vec<&str> = Vec::new();
        let original = req.values_named(&["Supported", "k"]).filter(|_| kept);
        let added = spec.add.iter().filter(|(n, _)| is_supported(n)).map(|(_, v)| v.as_str());
        for tag in original.chain(added).flat_map(|v| v.split(',')).map(str::trim).filter(|t| !t.is_empty()) {
            if !tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
                tags.push(tag);
            }
        }
        if !tags.iter().any(|t| t.eq_ignore_ascii_case(MS_FE)) {
            tags.push(MS_FE);
        }
        edit = edit.remove("Supported").remove("k").add("Supported", &tags.join(", "));
        if let Some(gruu) = &um.mras {
            edit = edit.remove("Ms-Mras-Address").add("Ms-Mras-Address", &format!("<{gruu}>"));
        }
    }
    if let Some((name, value)) = hop.trace {
        edit = edit.remove(name).add(name, value);
    }
    edit = edit.pop_routes(hop.pop_routes);
    if let Some(tag) = hop.record_route {
        let rr = |transport: Transport, local: &str| {
            let param = match transport {
                Transport::Udp => "",
                Transport::Tcp => ";transport=tcp",
                Transport::Tls => ";transport=tls",
            };
            format!("<sip:{local};lr{param};{}={tag}>", crate::sip::secret::ROUTE_PARAM)
        };
        // The callee's side on top; the caller's below it when it differs.
        edit = edit.prepend("Record-Route", &rr(hop.transport, hop.local));
        if let Some((transport, local)) = hop.inbound
            && (transport, local) != (hop.transport, hop.local)
        {
            edit = edit.prepend("Record-Route", &rr(transport, local));
        }
    }
    let hops = req.max_forwards().ok().flatten().map_or(DEFAULT_MAX_FORWARDS, |h| h.saturating_sub(1));
    edit.max_forwards(hops.min(DEFAULT_MAX_FORWARDS)).finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::wire::Name;

    #[test]
    fn the_router_adds_itself_as_a_hop_and_applies_the_decision() {
        let req = Message::parse(
            b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport\r\n\
              Route: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 10\r\nDiversion: <sip:x@example.com>\r\n\
              From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
              Content-Length: 0\r\n\r\n"
                .to_vec(),
            false,
            usize::MAX,
        )
        .expect("parses");
        let spec = ForwardSpec {
            request_uri: Some("sip:bob@um.example.com".into()),
            add: vec![("X-Tenant".into(), "t1".into())],
            remove: vec!["Diversion".into()],
        };
        let hop = Hop {
            transport: Transport::Tcp,
            local: "127.0.0.1:5060",
            branch: "z9hG4bK-abc",
            source: "10.0.0.2:5062".parse().expect("addr"),
            record_route: Some("0123456789abcdef"),
            pop_routes: 1,
            inbound: None,
            um: None,
            trace: Some(("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")),
        };
        let out = Message::parse(forwarded(&req, &spec, None, &hop), false, usize::MAX).expect("parses");
        assert_eq!(out.request_uri(), Some("sip:bob@um.example.com"));
        assert_eq!(out.header("traceparent"), Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        let vias: Vec<&str> = out.values(Name::Via).collect();
        assert_eq!(vias[0], "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK-abc;rport");
        assert!(vias[1].contains("received=10.0.0.2") && vias[1].contains("rport=5062"), "{}", vias[1]);
        assert_eq!(out.first(Name::MaxForwards), Some("9"));
        assert_eq!(out.first(Name::Route), None, "our Route popped");
        assert_eq!(out.first(Name::RecordRoute), Some("<sip:127.0.0.1:5060;lr;transport=tcp;exum=0123456789abcdef>"));
        assert_eq!(out.header("X-Tenant"), Some("t1"));
        assert_eq!(out.header("Diversion"), None);
        let contact = forwarded(&req, &spec, Some("sip:bob@um2.example.com"), &hop);
        let contact = Message::parse(contact, false, usize::MAX).expect("parses");
        assert_eq!(contact.request_uri(), Some("sip:bob@um2.example.com"), "a 3xx Contact wins");
    }

    /// An INVITE to a UM server as forwarded with `headers` and the tenant's
    /// A/V Edge GRUU `mras`, under the decision `spec`.
    fn to_um(headers: &str, spec: &ForwardSpec, mras: Option<&str>) -> Message {
        let req = Message::parse(
            format!(
                "INVITE sip:bob@example.com;opaque=app:voicemail SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
                 From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
                 {headers}Content-Length: 0\r\n\r\n"
            )
            .into_bytes(),
            false,
            usize::MAX,
        )
        .expect("parses");
        let um = UmServerHop { mras: mras.map(str::to_owned) };
        let hop = Hop {
            transport: Transport::Tls,
            local: "127.0.0.1:5061",
            branch: "z9hG4bK-um",
            source: "10.0.0.2:5062".parse().expect("addr"),
            record_route: None,
            pop_routes: 0,
            inbound: None,
            um: Some(&um),
            trace: None,
        };
        Message::parse(forwarded(&req, spec, None, &hop), false, usize::MAX).expect("parses")
    }

    fn all(m: &Message, name: &str) -> Vec<String> {
        m.values_named(&[name]).map(str::to_owned).collect()
    }

    #[test]
    fn an_invite_to_a_um_server_supports_ms_fe_once_and_names_the_a_v_edge() {
        let none = ForwardSpec::default();
        // No Supported: one with ms-fe.
        assert_eq!(all(&to_um("", &none, None), "Supported"), ["ms-fe"]);
        // Merged into what the caller supports, its tags kept, once each;
        // compact `k` and a second field folded into one.
        let m = to_um("Supported: timer, replaces\r\nk: 100rel, timer\r\n", &none, None);
        assert_eq!(all(&m, "Supported"), ["timer, replaces, 100rel, ms-fe"]);
        assert!(all(&m, "k").is_empty());
        // Already there (any case): not repeated.
        assert_eq!(all(&to_um("Supported: MS-FE, timer\r\n", &none, None), "Supported"), ["MS-FE, timer"]);
        // The decision's Supported is merged too; its removal of the caller's is honoured.
        let spec = ForwardSpec {
            add: vec![("Supported".into(), "gruu".into())],
            remove: vec!["Supported".into()],
            ..Default::default()
        };
        assert_eq!(all(&to_um("Supported: timer\r\n", &spec, None), "Supported"), ["gruu, ms-fe"]);
        // Ms-Mras-Address: the tenant's GRUU replaces the caller's ...
        let gruu = "sip:avedge@contoso.com;gruu;opaque=srvr:MRAS:abc";
        let m = to_um("Ms-Mras-Address: <sip:old@contoso.com>\r\n", &none, Some(gruu));
        assert_eq!(all(&m, "Ms-Mras-Address"), [format!("<{gruu}>").as_str()]);
        // ... without one, the caller's is kept; with neither, none is added.
        let m = to_um("Ms-Mras-Address: <sip:old@contoso.com>\r\n", &none, None);
        assert_eq!(all(&m, "Ms-Mras-Address"), ["<sip:old@contoso.com>"]);
        assert!(all(&to_um("", &none, None), "Ms-Mras-Address").is_empty());
    }
}
