//! Attacks of the second security review, each over real sockets on loopback
//! against a router started in-process: what broke then is refused now. Floods
//! are bounded in count and stay on 127.0.0.0/8.

use exum_router::metrics::Dropped;
use exum_router::model::wire::{Message, Name};
use exum_router_tests::peer::{UdpPeer, response};
use exum_router_tests::until;

use crate::proxy::{BOB, Lab, NO_PROBES, invite, lab_with};

/// An in-dialog INVITE (a To tag) for a domain no tenant owns, aimed at `target`.
fn forged_dialog(lab: &Lab, target: &str, call_id: &str, route: Option<String>) -> String {
    let route = route.map(|r| format!("Route: {r}\r\n")).unwrap_or_default();
    format!(
        "INVITE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-{call_id};rport\r\nMax-Forwards: 70\r\n{route}\
         From: <sip:a@northwind.example>;tag=1\r\nTo: <sip:v@northwind.example>;tag=forged\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:a@{}>\r\nContent-Length: 0\r\n\r\n",
        lab.caller.addr, lab.caller.addr
    )
}

/// Whether a datagram is waiting on `peer` (checked after the router answered,
/// so anything it forwarded would have been sent before).
fn has_datagram(peer: &UdpPeer) -> bool {
    let mut buf = [0u8; 2048];
    peer.socket.try_recv_from(&mut buf).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_dialog_is_not_relayed_to_its_request_uri_or_route() {
    let lab = lab_with(NO_PROBES, "").await;
    let victim = UdpPeer::bind_on("127.0.0.2:0".parse().expect("addr")).await;
    let victim_tcp = std::net::TcpListener::bind("127.0.0.2:0").expect("bind");
    victim_tcp.set_nonblocking(true).expect("nonblocking");
    let tcp_port = victim_tcp.local_addr().expect("addr").port();
    let attempts = [
        forged_dialog(&lab, &format!("sip:v@{}", victim.addr), "relay1", None),
        forged_dialog(&lab, &format!("sip:v@127.0.0.2:{tcp_port};transport=tcp"), "relay2", None),
        // Naming the router in a Route is not enough: it carries no tag of the router's.
        forged_dialog(
            &lab,
            "sip:v@northwind.example",
            "relay3",
            Some(format!("<sip:{};lr>, <sip:{};lr>", lab.router, victim.addr)),
        ),
        forged_dialog(
            &lab,
            &format!("sip:v@{}", victim.addr),
            "relay4",
            Some(format!("<sip:{};lr;exum=0123456789abcdef>", lab.router)),
        ),
    ];
    for attempt in &attempts {
        lab.caller.send(lab.router, attempt).await;
        let refused = lab.caller.final_response().await;
        assert_eq!(refused.status(), Some(404), "{refused:?}");
        assert!(refused.header("Warning").is_some_and(|w| w.contains("no dialog")), "{refused:?}");
    }
    assert!(!has_datagram(&victim), "nothing reached the UDP target");
    assert!(victim_tcp.accept().is_err(), "no connection to the TCP target");
    assert_eq!(lab.server.metrics.access_refused_of("dialog"), attempts.len() as u64);
    // A stray ACK for such a dialog is dropped, not relayed.
    let ack = attempts[0].replace("INVITE", "ACK").replace("branch=z9hG4bK-relay1", "branch=z9hG4bK-relay1ack");
    lab.caller.send(lab.router, &ack).await;
    until("the forged ACK to be dropped", || lab.server.metrics.dropped_of(Dropped::StrayAck) == 1).await;
    assert!(!has_datagram(&victim));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_dialogs_are_not_exempt_from_overload_control_and_do_not_starve_callers() {
    let lab = lab_with(NO_PROBES, "[overload]\nmax_transactions = 20\n").await;
    let victim = UdpPeer::bind_on("127.0.0.2:0".parse().expect("addr")).await;
    let attacker = UdpPeer::bind_on("127.0.0.3:0".parse().expect("addr")).await;
    // In bursts of 100 (what any socket buffer holds), each awaited: 2,000 in all,
    // 100 times the transaction cap.
    const FLOOD: u64 = 2000;
    for i in 0..FLOOD {
        let forged = forged_dialog(&lab, &format!("sip:v@{}", victim.addr), &format!("flood{i}"), None)
            .replace(&lab.caller.addr.to_string(), &attacker.addr.to_string());
        attacker.send(lab.router, &forged).await;
        if (i + 1) % 100 == 0 {
            until("the burst refused", || lab.server.metrics.access_refused_of("dialog") == i + 1).await;
        }
    }
    assert_eq!(lab.server.proxy.in_flight(), 0, "none took a transaction");
    assert!(!has_datagram(&victim));
    // A real call is routed as usual.
    lab.caller.send(lab.router, &invite(&lab, BOB, "after-flood")).await;
    let (inv, _) = lab.um1.expect_request("INVITE").await;
    assert_eq!(inv.first(Name::CallId), Some("after-flood"));
    assert_eq!(lab.server.metrics.overload_of("transactions"), 0);
}

/// A 200 for `inv` (as the UM server received it) with its Vias replaced by `vias`.
fn ok_with_vias(inv: &Message, vias: &[String]) -> String {
    let text = response(inv, 200, "um", "");
    let mut out = String::new();
    let mut replaced = false;
    for line in text.split_inclusive("\r\n") {
        if line.starts_with("Via: ") {
            if !replaced {
                for v in vias {
                    out.push_str(&format!("Via: {v}\r\n"));
                }
                replaced = true;
            }
        } else {
            out.push_str(line);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_2xx_is_not_reflected_and_the_router_never_loops_on_its_own_vias() {
    let lab = lab_with(NO_PROBES, "").await;
    let victim = UdpPeer::bind_on("127.0.0.2:0".parse().expect("addr")).await;
    let attacker = UdpPeer::bind_on("127.0.0.3:0".parse().expect("addr")).await;
    // A real call, answered and over: its branch is the router's, its
    // transaction gone.
    lab.caller.send(lab.router, &invite(&lab, BOB, "reflect")).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    lab.um1.send(from, &response(&inv, 200, "um", &format!("Contact: <sip:{}>\r\n", lab.um1.addr))).await;
    lab.caller.expect_response(200).await;
    until("the transaction to end", || lab.server.proxy.active_transactions() == 0).await;
    let ours = inv.values(Name::Via).next().expect("the router's Via").to_owned();
    let caller = inv.values(Name::Via).nth(1).expect("the caller's Via").to_owned();
    // Forged: a branch with the router's prefix but not its tag, to a third party.
    let forged_via = format!("SIP/2.0/UDP {};branch=z9hG4bK-0000000000000001-1-0123456789abcdef", lab.router);
    let to_victim = format!("SIP/2.0/UDP {};branch=z9hG4bK-x", victim.addr);
    let body = "x".repeat(30_000);
    let big = ok_with_vias(&inv, &[forged_via.clone(), to_victim.clone()])
        .replace("Content-Length: 0\r\n\r\n", &format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    attacker.send(lab.router, &big).await;
    // 240 Vias naming the router.
    let mut looping = vec![forged_via; 240];
    looping.push(to_victim);
    attacker.send(lab.router, &ok_with_vias(&inv, &looping)).await;
    // The router's own branch, then the router again: no loop through itself.
    let self_via = format!("SIP/2.0/UDP {};branch=z9hG4bK-y", lab.router);
    attacker.send(lab.router, &ok_with_vias(&inv, &[ours.clone(), self_via, caller.clone()])).await;
    until("three stray responses dropped", || lab.server.metrics.dropped_of(Dropped::StrayResponse) == 3).await;
    assert!(!has_datagram(&victim), "nothing reflected");
    // A genuine retransmission of the 2xx still reaches the caller (RFC 6026).
    lab.um1.send(from, &ok_with_vias(&inv, &[ours, caller])).await;
    assert_eq!(lab.caller.expect_response(200).await.first(Name::CallId), Some("reflect"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_2xx_beyond_their_rate_are_dropped() {
    let lab = lab_with(NO_PROBES, "[overload]\nstray_2xx_per_second = 0\n").await;
    lab.caller.send(lab.router, &invite(&lab, BOB, "rate")).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    lab.um1.send(from, &response(&inv, 200, "um", &format!("Contact: <sip:{}>\r\n", lab.um1.addr))).await;
    lab.caller.expect_response(200).await;
    until("the transaction to end", || lab.server.proxy.active_transactions() == 0).await;
    lab.um1.send(from, &response(&inv, 200, "um", "")).await;
    until("the 2xx to be dropped", || lab.server.metrics.dropped_of(Dropped::RateLimited) == 1).await;
    assert!(!has_datagram(&lab.caller));
}
