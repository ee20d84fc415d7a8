//! What the proxy forwards without a transaction of its own (RFC 3261 §16.11,
//! RFC 6026): an ACK for a 2xx (a transaction of its own, end to end) along its
//! Route set, and a retransmitted 2xx whose transaction is gone, along its Vias;
//! never to one of the router's own addresses.
//! Also the next hop of an in-dialog request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::Proxy;
use super::forward::via_protocol;
use crate::metrics::Dropped;
use crate::model::uri::{UriRef, route_uri};
use crate::model::wire::{Message, Name, Via};
use crate::model::{Source, Transport};

impl Proxy {
    /// Forwards a 2xx for an INVITE whose transaction is gone (a retransmitted
    /// 2xx) along its Vias: only when the top Via's branch carries the router's
    /// tag, never to the router itself, and at most `stray_2xx_per_second`.
    /// Otherwise says why it was dropped.
    pub(super) fn forward_stray_2xx(&self, msg: &Message) -> Result<(), Dropped> {
        let mut vias = msg.values(Name::Via);
        let ours = vias.next().and_then(Via::parse);
        if !ours.is_some_and(|v| v.branch.is_some_and(|b| self.secret.is_ours(b))) {
            return Err(Dropped::StrayResponse);
        }
        let Some(next) = vias.next().and_then(Via::parse) else { return Err(Dropped::StrayResponse) };
        let Some(addr) = via_destination(&next) else { return Err(Dropped::StrayResponse) };
        let transport = if next.transport.eq_ignore_ascii_case("TCP") { Transport::Tcp } else { Transport::Udp };
        if self.transports.is_listener(addr.ip(), addr.port()) {
            return Err(Dropped::StrayResponse);
        }
        if !self.stray_2xx.take() {
            return Err(Dropped::RateLimited);
        }
        // From the listener our Via names, as the request left.
        let from = ours.and_then(|v| via_destination(&v));
        if self.transports.send_now(transport, from, addr, msg.edit().pop_via().finish()) {
            Ok(())
        } else {
            Err(Dropped::StrayResponse)
        }
    }

    /// Forwards an ACK for a 2xx statelessly along its Route set or Request-URI:
    /// at once when the next hop needs no lookup and takes it without waiting
    /// (UDP, or an open connection), else in a task of its own.
    pub(super) fn forward_stateless(self: &Arc<Self>, msg: Message, source: Source) {
        let Some((target_uri, pop)) = self.next_hop_of(&msg) else { return };
        if let Some(d) = self.resolver.resolve_now(&target_uri, None).and_then(|d| d.into_iter().next()) {
            let Some((bytes, egress)) = self.stateless_copy(&msg, &source, &d, pop) else { return };
            if !self.transports.send_now_kept(d.transport, egress, d.addr, &bytes) {
                // A connection to open, or a full socket buffer: waited for.
                let me = self.clone();
                tokio::spawn(async move {
                    let _ = me.transports.send(d.transport, egress, d.addr, bytes).await;
                });
            }
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let Some(d) = me.resolver.resolve(&target_uri, None).await.ok().and_then(|d| d.into_iter().next()) else {
                return;
            };
            let Some((bytes, egress)) = me.stateless_copy(&msg, &source, &d, pop) else { return };
            let _ = me.transports.send(d.transport, egress, d.addr, bytes).await;
        });
    }

    /// The copy of `msg` forwarded statelessly to `d` (our Via on top, `pop`
    /// Routes removed, Max-Forwards less one) and the listener it leaves
    /// from; `None` when it must not go (to the router itself, or no hops left).
    fn stateless_copy(
        &self,
        msg: &Message,
        source: &Source,
        d: &crate::sip::resolve::Destination,
        pop: usize,
    ) -> Option<(Vec<u8>, Option<SocketAddr>)> {
        // Never to the router itself: a forged ACK naming the router
        // would otherwise go round until Max-Forwards runs out.
        if self.transports.is_listener(d.addr.ip(), d.addr.port()) {
            self.drop_message(Dropped::Loop, source, &"the next hop is the router itself");
            return None;
        }
        let hops = msg.max_forwards().ok().flatten().unwrap_or(70);
        if hops == 0 {
            return None;
        }
        let egress = self.transports.egress(d.transport, d.addr, source.local);
        let local = egress.map_or_else(|| "0.0.0.0".into(), |a| a.to_string());
        let edit = msg
            .edit()
            .received(source.addr)
            .prepend_via(format!("{} {local};branch={};rport", via_protocol(d.transport), self.branch(0)))
            .pop_routes(pop);
        Some((edit.max_forwards(hops - 1).finish(), egress))
    }

    /// The next hop of an in-dialog request (see [`next_hop`]).
    pub(super) fn next_hop_of(&self, msg: &Message) -> Option<(String, usize)> {
        next_hop(msg, |u| self.is_us(u))
    }
}

/// The next hop of an in-dialog request: the first Route that is not the
/// router's (and how many of the first Routes, the router's, are to be
/// popped), else the Request-URI. `is_us` tells whether a URI names the router.
pub fn next_hop(msg: &Message, is_us: impl Fn(&UriRef<'_>) -> bool) -> Option<(String, usize)> {
    let pop = super::classify::own_routes(msg, is_us);
    let next = msg.values(Name::Route).map(route_uri).nth(pop);
    match next {
        Some(uri) => Some((uri, pop)),
        None => msg.request_uri().map(|u| (u.to_owned(), pop)),
    }
}

/// The address a Via says to answer: `received`/`rport` when present, else sent-by.
fn via_destination(via: &Via<'_>) -> Option<SocketAddr> {
    let host = via.received.unwrap_or(via.host).trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, via.port.unwrap_or(5060)))
}
