//! The SIP plane over real sockets on loopback: a router started in-process with
//! a configuration whose UM servers, edge and PSTN gateway are test peers.

use exum_router::metrics::{Dropped, TransportLabel};
use std::net::SocketAddr;
use std::time::Duration;

use exum_router::model::Transport;
use exum_router::model::wire::Name;
use exum_router::server::Server;
use exum_router_tests::peer::{TcpPeer, UdpPeer, request, response};

pub(crate) struct Lab {
    _dir: tempfile::TempDir,
    pub(crate) server: Server,
    pub(crate) router: SocketAddr,
    pub(crate) router_tcp: SocketAddr,
    pub(crate) caller: UdpPeer,
    pub(crate) um1: UdpPeer,
    pub(crate) um2: UdpPeer,
    pub(crate) edge: UdpPeer,
    pub(crate) gw: UdpPeer,
}

async fn lab(probes: &str) -> Lab {
    lab_with(probes, "").await
}

/// A lab whose configuration has `extra` sections (before the tenants).
pub(crate) async fn lab_with(probes: &str, extra: &str) -> Lab {
    let (caller, um1, um2, edge, gw) = (
        UdpPeer::bind().await,
        UdpPeer::bind().await,
        UdpPeer::bind().await,
        UdpPeer::bind().await,
        UdpPeer::bind().await,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"directory = "directory.toml"
[[listen]]
address = "127.0.0.1:0"
transports = ["udp", "tcp"]
[sip]
t1_ms = 50
target_timeout_ms = 2000
tcp_idle_timeout_ms = 300
[probes]
{probes}
{extra}
[[tenant]]
id = "contoso"
domains = ["contoso.com"]
edge = "sip:{edge}"
pstn_gateway = "sip:{gw}"
record_route = true
[tenant.rerouting]
enabled = true
auto_attendant = "+14255550150"
subscriber_access = "+14255550151"
[[tenant]]
id = "litware"
domains = ["litware.com"]
"#,
        edge = edge.addr,
        gw = gw.addr
    );
    let directory = format!(
        r#"[[tenants.contoso.users]]
sip = "sip:alice@contoso.com"
hosted_voicemail = true
[[tenants.contoso.users]]
sip = "sip:bob@contoso.com"
eum = "eum:bob@contoso.com;phone-context=DP1"
[[tenants.contoso.hosted_voicemail_policies]]
scope = "global"
destination = "exap.um.outlook.com"
organizations = ["contoso.onmicrosoft.com"]
[[tenants.contoso.dial_plans]]
name = "DP1"
phone_context = "DP1"
servers = [{{ uri = "sip:{um1}", timeout_ms = 400 }}, {{ uri = "sip:{um2}", timeout_ms = 400 }}]
[[tenants.litware.users]]
sip = "sip:ivan@litware.com"
eum = "eum:ivan@litware.com;phone-context=DPL"
[[tenants.litware.dial_plans]]
name = "DPL"
phone_context = "DPL"
servers = [{{ uri = "sip:{um1}" }}, {{ uri = "sip:{um2}" }}]
"#,
        um1 = um1.addr,
        um2 = um2.addr
    );
    std::fs::write(dir.path().join("router.toml"), config).expect("write");
    std::fs::write(dir.path().join("directory.toml"), directory).expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("the router starts");
    let router = server.local_addr(Transport::Udp).expect("udp");
    let router_tcp = server.local_addr(Transport::Tcp).expect("tcp");
    Lab { _dir: dir, server, router, router_tcp, caller, um1, um2, edge, gw }
}

pub(crate) const NO_PROBES: &str = "enabled = false";
pub(crate) const BOB: &str = "sip:bob@contoso.com;opaque=app:voicemail";

pub(crate) fn invite(lab: &Lab, ruri: &str, call_id: &str) -> String {
    request("INVITE", ruri, lab.caller.addr, "UDP", call_id, &format!("z9hG4bK-{call_id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_call_to_an_on_premises_user() {
    let lab = lab(NO_PROBES).await;
    lab.caller.send(lab.router, &invite(&lab, BOB, "call1")).await;
    lab.caller.expect_response(100).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    assert_eq!(from.ip(), lab.router.ip());
    assert_eq!(inv.values(Name::Via).count(), 2, "the router's Via on top of the caller's");
    assert!(inv.top_via().and_then(|v| v.branch).is_some_and(|b| b.starts_with("z9hG4bK")));
    assert_eq!(inv.header("Diversion"), Some("<sip:bob@contoso.com>;reason=no-answer"));
    assert_eq!(inv.max_forwards(), Ok(Some(69)));
    let caller_via =
        exum_router::model::wire::Via::parse(inv.values(Name::Via).nth(1).expect("caller's via")).expect("parses");
    assert_eq!(caller_via.received, Some("127.0.0.1"), "rport asks for received (RFC 3581)");
    assert!(caller_via.value.ends_with(&format!(";rport={}", lab.caller.addr.port())), "{}", caller_via.value);
    let rr = inv.first(Name::RecordRoute).expect("record-routed").to_owned();
    lab.um1.send(from, &response(&inv, 180, "um", "")).await;
    lab.caller.expect_response(180).await;
    lab.um1
        .send(from, &response(&inv, 200, "um", &format!("Contact: <sip:{}>\r\nRecord-Route: {rr}\r\n", lab.um1.addr)))
        .await;
    let ok = lab.caller.expect_response(200).await;
    assert_eq!(ok.values(Name::Via).count(), 1, "the router's Via is gone");
    // The UM server sends its 200 again (as it does until the ACK comes): the
    // retransmission reaches the caller too (RFC 6026).
    lab.um1
        .send(from, &response(&inv, 200, "um", &format!("Contact: <sip:{}>\r\nRecord-Route: {rr}\r\n", lab.um1.addr)))
        .await;
    assert_eq!(lab.caller.expect_response(200).await.first(Name::CallId), Some("call1"));
    let route = ok.first(Name::RecordRoute).expect("Record-Route comes back").to_owned();
    let to = ok.first(Name::To).expect("to").to_owned();
    let in_dialog = |method: &str, branch: &str| {
        format!(
            "{method} sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={branch}\r\nMax-Forwards: 70\r\nRoute: {route}\r\n\
             From: <sip:caller@fabrikam.com>;tag=caller-call1\r\nTo: {to}\r\nCall-ID: call1\r\nCSeq: {} {method}\r\nContent-Length: 0\r\n\r\n",
            lab.um1.addr,
            lab.caller.addr,
            if method == "BYE" { 2 } else { 1 }
        )
    };
    lab.caller.send(lab.router, &in_dialog("ACK", "z9hG4bK-ack1")).await;
    let (ack, _) = lab.um1.expect_request("ACK").await;
    assert_eq!(ack.first(Name::Route), None, "the router's Route was popped");
    lab.caller.send(lab.router, &in_dialog("BYE", "z9hG4bK-bye1")).await;
    let (bye, from) = lab.um1.expect_request("BYE").await;
    lab.um1.send(from, &response(&bye, 200, "um-bye", "")).await;
    let done = lab.caller.expect_response(200).await;
    assert_eq!(done.cseq(), Some((2, "BYE")));
    // The BYE's transaction ends at once (its answer kept for retransmissions,
    // no transaction lingers for it); the INVITE's lingers (RFC 6026).
    assert_eq!(lab.server.proxy.active_transactions(), 1, "the INVITE's transaction lingers, the BYE's does not");
    // The BYE again (the 200 was lost): the same 200, from the router, the UM
    // server not asked again.
    let retransmissions = lab.server.metrics.retransmissions.get();
    lab.caller.send(lab.router, &in_dialog("BYE", "z9hG4bK-bye1")).await;
    let again = lab.caller.expect_response(200).await;
    assert_eq!(again.bytes(), done.bytes(), "the very response relayed");
    assert_eq!(lab.server.metrics.retransmissions.get(), retransmissions + 1, "answered as a retransmission");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_user_goes_to_the_edge_with_the_rewritten_request_uri() {
    let lab = lab(NO_PROBES).await;
    lab.caller.send(lab.router, &invite(&lab, "sip:alice@contoso.com;gruu;opaque=app:voicemail", "h1")).await;
    let (inv, from) = lab.edge.expect_request("INVITE").await;
    assert_eq!(
        inv.request_uri(),
        Some(
            "sip:alice@contoso.com;opaque=app:voicemail;ms-destination=exap.um.outlook.com;ms-organization=contoso.onmicrosoft.com"
        )
    );
    lab.edge.send(from, &response(&inv, 200, "edge", "")).await;
    lab.caller.expect_response(200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_on_503_and_the_failure_is_acked_hop_by_hop() {
    let lab = lab(NO_PROBES).await;
    lab.caller.send(lab.router, &invite(&lab, BOB, "f1")).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    lab.um1.send(from, &response(&inv, 503, "um1", "")).await;
    let (ack, _) = lab.um1.expect_request("ACK").await;
    assert_eq!(
        ack.top_via().and_then(|v| v.branch),
        inv.top_via().and_then(|v| v.branch),
        "ACK in the INVITE's transaction"
    );
    // um1 did not see the ACK (as if lost): its retransmitted 503 is ACKed again.
    lab.um1.send(from, &response(&inv, 503, "um1", "")).await;
    let (again, _) = lab.um1.expect_request("ACK").await;
    assert_eq!(again.cseq(), Some((1, "ACK")));
    let (inv2, from2) = lab.um2.expect_request("INVITE").await;
    lab.um2.send(from2, &response(&inv2, 200, "um2", "")).await;
    lab.caller.expect_response(200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_on_timeout_to_the_next_server() {
    let lab = lab(NO_PROBES).await;
    lab.caller.send(lab.router, &invite(&lab, BOB, "t1")).await;
    lab.um1.expect_request("INVITE").await; // never answered: its 400 ms timer fires
    let (inv2, from2) = lab.um2.expect_request("INVITE").await;
    lab.um2.send(from2, &response(&inv2, 200, "um2", "")).await;
    lab.caller.expect_response(200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3xx_is_recursed_into_before_the_remaining_servers() {
    let lab = lab(NO_PROBES).await;
    lab.caller.send(lab.router, &invite(&lab, BOB, "r1")).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    lab.um1.send(from, &response(&inv, 302, "um1", &format!("Contact: <sip:bob@{}>\r\n", lab.edge.addr))).await;
    let (redirected, from3) = lab.edge.expect_request("INVITE").await;
    assert_eq!(redirected.request_uri(), Some(format!("sip:bob@{}", lab.edge.addr).as_str()));
    lab.edge.send(from3, &response(&redirected, 200, "um-svc", "")).await;
    lab.caller.expect_response(200).await;
    assert!(lab.um2.recv_within(Duration::from_millis(200)).await.is_none(), "um2 was not needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_target_already_tried_is_not_followed() {
    let lab = lab(NO_PROBES).await;
    lab.caller.send(lab.router, &invite(&lab, BOB, "loop302")).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    // um1 redirects to itself: followed, this would loop.
    lab.um1.send(from, &response(&inv, 302, "um1", &format!("Contact: <sip:{}>\r\n", lab.um1.addr))).await;
    let (inv2, from2) = lab.um2.expect_request("INVITE").await;
    lab.um2.send(from2, &response(&inv2, 200, "um2", "")).await;
    lab.caller.expect_response(200).await;
    // The router tries in order: anything it sent um1 before um2's INVITE has
    // arrived by now. It is the ACK of the 302 only.
    let mut buf = [0u8; 65_535];
    let mut to_um1 = Vec::new();
    while let Ok((n, _)) = lab.um1.socket.try_recv_from(&mut buf) {
        to_um1.push(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned());
    }
    assert_eq!(to_um1.len(), 1, "{to_um1:?}");
    assert!(to_um1[0].starts_with("ACK "), "{to_um1:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_targets_failed_reroutes_or_answers_480() {
    let lab = lab(NO_PROBES).await;
    lab.caller.send(lab.router, &invite(&lab, BOB, "a1")).await;
    for um in [&lab.um1, &lab.um2] {
        let (inv, from) = um.expect_request("INVITE").await;
        um.send(from, &response(&inv, 500, "um", "")).await;
    }
    let (rerouted, from) = lab.gw.expect_request("INVITE").await;
    assert_eq!(rerouted.request_uri(), Some(format!("sip:+14255550150@{};user=phone", lab.gw.addr).as_str()));
    lab.gw.send(from, &response(&rerouted, 200, "gw", "")).await;
    lab.caller.expect_response(200).await;

    // litware has no rerouting: 480 with ms-diagnostics.
    lab.caller.send(lab.router, &invite(&lab, "sip:ivan@litware.com;opaque=app:voicemail", "a2")).await;
    for um in [&lab.um1, &lab.um2] {
        let (inv, from) = um.expect_request("INVITE").await;
        um.send(from, &response(&inv, 503, "um", "")).await;
    }
    let r = lab.caller.final_response().await;
    assert_eq!(r.status(), Some(480));
    let diagnostics = r.header("ms-diagnostics").unwrap_or_default();
    assert!(
        diagnostics
            .starts_with("15030;reason=\"Failed to route to Exchange Server\";appName=\"ExumRouting\";source=\""),
        "{diagnostics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_ringing() {
    let lab = lab(NO_PROBES).await;
    let inv_text = invite(&lab, BOB, "c1");
    lab.caller.send(lab.router, &inv_text).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    lab.um1.send(from, &response(&inv, 180, "um1", "")).await;
    lab.caller.expect_response(180).await;
    let cancel = inv_text.replacen("INVITE sip", "CANCEL sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    lab.caller.send(lab.router, &cancel).await;
    let ok = lab.caller.expect_response(200).await;
    assert_eq!(ok.cseq(), Some((1, "CANCEL")));
    let (c, from) = lab.um1.expect_request("CANCEL").await;
    lab.um1.send(from, &response(&c, 200, "um1", "")).await;
    lab.um1.send(from, &response(&inv, 487, "um1", "")).await;
    let terminated = lab.caller.expect_response(487).await;
    assert_eq!(terminated.cseq(), Some((1, "INVITE")));
    assert!(lab.um2.recv_within(Duration::from_millis(200)).await.is_none(), "a cancelled call tries no more targets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_ack_for_a_non_2xx_is_absorbed() {
    let lab = lab(NO_PROBES).await;
    let inv_text = invite(&lab, "sip:nobody@contoso.com;opaque=app:voicemail", "n1");
    lab.caller.send(lab.router, &inv_text).await;
    let r = lab.caller.final_response().await;
    assert_eq!(r.status(), Some(404));
    let to = r.first(Name::To).expect("to");
    let ack = inv_text
        .replacen("INVITE sip", "ACK sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("To: <sip:nobody@contoso.com>", &format!("To: {to}"));
    lab.caller.send(lab.router, &ack).await;
    // The ACK ends the transaction: no retransmission of the 404 follows.
    assert!(lab.caller.recv_within(Duration::from_millis(300)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_hops_and_loops() {
    let lab = lab(NO_PROBES).await;
    let zero = invite(&lab, BOB, "m0").replace("Max-Forwards: 70", "Max-Forwards: 0");
    lab.caller.send(lab.router, &zero).await;
    assert_eq!(lab.caller.final_response().await.status(), Some(483));

    // Send bob's call to um1, then bring the same request back through the router.
    lab.caller.send(lab.router, &invite(&lab, BOB, "loop1")).await;
    let (inv, _) = lab.um1.expect_request("INVITE").await;
    let mut looped = String::from_utf8(inv.bytes().to_vec()).expect("utf8");
    looped = looped.replacen("Via: ", &format!("Via: SIP/2.0/UDP {};branch=z9hG4bK-back\r\nVia: ", lab.um1.addr), 1);
    // Undo the router's edits so the request is the one it saw: same Request-URI,
    // From tag, Call-ID, CSeq.
    lab.um1.send(lab.router, &looped).await;
    let (r, _) = lab.um1.recv().await;
    assert_eq!(r.status(), Some(482), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_route_compatibility() {
    let lab = lab(NO_PROBES).await;
    // A strict router upstream put the router in the Request-URI and the real
    // Request-URI in the last Route.
    let text = invite(&lab, &format!("sip:{}", lab.router), "s1")
        .replace("Max-Forwards: 70", &format!("Max-Forwards: 70\r\nRoute: <{BOB}>"));
    lab.caller.send(lab.router, &text).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    assert_eq!(inv.request_uri(), Some(BOB));
    assert_eq!(inv.first(Name::Route), None);
    lab.um1.send(from, &response(&inv, 200, "um1", "")).await;
    lab.caller.expect_response(200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listeners_and_rfc_2543_transactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    let config = "directory = \"directory.toml\"\n[[listen]]\naddress = \"[::1]:0\"\n[probes]\nenabled = false\n[[tenant]]\nid = \"t\"\ndomains = [\"t.test\"]\n";
    std::fs::write(dir.path().join("router.toml"), config).expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("starts on ::1");
    let router = server.local_addr(Transport::Udp).expect("udp");
    assert!(router.is_ipv6());
    let socket = tokio::net::UdpSocket::bind("[::1]:0").await.expect("bind ::1");
    let me = socket.local_addr().expect("addr");
    let peer = UdpPeer { socket, addr: me };
    // An RFC 2543 client: no magic cookie in the branch. Its retransmission is
    // matched by the fallback key and absorbed.
    let text = request("INVITE", "sip:nobody@t.test;opaque=app:voicemail", me, "UDP", "v6", "old-style-1");
    peer.send(router, &text).await;
    assert_eq!(peer.final_response().await.status(), Some(404));
    peer.send(router, &text).await;
    assert_eq!(peer.final_response().await.status(), Some(404), "the final response is re-sent");
    assert_eq!(server.metrics.transactions.get(), 1);
    assert!(server.metrics.retransmissions.get() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_invite_reaches_the_um_server_once() {
    let lab = lab(NO_PROBES).await;
    let text = invite(&lab, BOB, "rx1");
    lab.caller.send(lab.router, &text).await;
    lab.caller.expect_response(100).await;
    lab.caller.send(lab.router, &text).await;
    lab.caller.send(lab.router, &text).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    // The router's own retransmission timer (T1 = 50 ms) may resend it; answer
    // with 100 so it stops, then look for a second transaction.
    lab.um1.send(from, &response(&inv, 100, "um1", "")).await;
    let mut branches = vec![inv.top_via().and_then(|v| v.branch).map(str::to_owned)];
    while let Some((m, _)) = lab.um1.recv_within(Duration::from_millis(300)).await {
        branches.push(m.top_via().and_then(|v| v.branch).map(str::to_owned));
    }
    branches.dedup();
    assert_eq!(branches.len(), 1, "one client transaction: {branches:?}");
    assert!(lab.server.metrics.retransmissions.get() >= 2);
    assert_eq!(lab.server.metrics.decisions_of("contoso"), 1, "the policy was asked once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_marked_down_by_probes_is_skipped() {
    // um1 never answers probes; um2 answers every one.
    let lab = lab("interval_ms = 50\ntimeout_ms = 50\ndown_after = 1\nup_after = 1").await;
    let um1 = format!("sip:{}", lab.um1.addr);
    // Each probe is an event: um2 answers its probes, um1 lets them time out.
    // After one unanswered probe, um1 is down.
    let mut events = 0;
    while lab.server.health.is_healthy(&um1) {
        tokio::select! {
            (probe, _) = lab.um1.expect_request("OPTIONS") => assert_eq!(probe.request_uri(), Some(um1.as_str())),
            (m, from) = lab.um2.recv() => {
                if m.method() == Some("OPTIONS") {
                    lab.um2.send(from, &response(&m, 200, "um2", "")).await;
                }
            }
        }
        events += 1;
        assert!(events < 200, "um1 never marked down");
    }
    lab.caller.send(lab.router, &invite(&lab, BOB, "p1")).await;
    let mut events = 0;
    let (inv, from) = loop {
        let (m, from) = lab.um2.recv().await;
        match m.method() {
            Some("OPTIONS") => lab.um2.send(from, &response(&m, 200, "um2", "")).await,
            Some("INVITE") => break (m, from),
            _ => {}
        }
        events += 1;
        assert!(events < 200, "the INVITE never reached um2");
    };
    lab.um2.send(from, &response(&inv, 200, "um2", "")).await;
    lab.caller.expect_response(200).await;
    assert!(lab.server.health.is_healthy(&format!("sip:{}", lab.um2.addr)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_costs_only_that_message() {
    let lab = lab(NO_PROBES).await;
    lab.caller.send(lab.router, "garbage\r\n\r\n").await;
    let bad_length = invite(&lab, BOB, "b1").replace("Content-Length: 0", "Content-Length: 99");
    lab.caller.send(lab.router, &bad_length).await;
    let r = lab.caller.final_response().await;
    assert_eq!(r.status(), Some(400));
    assert!(r.header("Warning").is_some_and(|w| w.contains("Content-Length")), "{r:?}");
    let wrong_cseq = invite(&lab, BOB, "b2").replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    lab.caller.send(lab.router, &wrong_cseq).await;
    let r = lab.caller.final_response().await;
    assert_eq!(r.status(), Some(400));
    assert!(r.header("Warning").is_some_and(|w| w.contains("CSeq")), "{r:?}");
    let scheme = invite(&lab, "mailto:bob@contoso.com", "b3");
    lab.caller.send(lab.router, &scheme).await;
    assert_eq!(lab.caller.final_response().await.status(), Some(416));
    let required = invite(&lab, BOB, "b4").replace("Max-Forwards: 70", "Max-Forwards: 70\r\nProxy-Require: foo");
    lab.caller.send(lab.router, &required).await;
    assert_eq!(lab.caller.final_response().await.status(), Some(420));
    lab.caller
        .send(
            lab.router,
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKnothing\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
    lab.caller.send(lab.router, &invite(&lab, "sip:bob@northwind.com;opaque=app:voicemail", "b5")).await;
    assert_eq!(lab.caller.final_response().await.status(), Some(404), "no open relay");
    assert!(lab.server.metrics.malformed.get_or_create(&TransportLabel { transport: "udp" }).get() >= 2);
    assert_eq!(lab.server.metrics.dropped_of(Dropped::Unparseable), 1, "garbage cannot be answered");
    assert_eq!(lab.server.metrics.dropped_of(Dropped::StrayResponse), 1);
    // The next valid call is fine.
    lab.caller.send(lab.router, &invite(&lab, "sip:alice@contoso.com;opaque=app:voicemail", "b6")).await;
    let (inv, from) = lab.edge.expect_request("INVITE").await;
    lab.edge.send(from, &response(&inv, 200, "edge", "")).await;
    lab.caller.expect_response(200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_framing_and_bad_peers() {
    let lab = lab(NO_PROBES).await;
    let options = |id: &str, from: SocketAddr| {
        request("OPTIONS", &format!("sip:{}", lab.router_tcp), from, "TCP", id, &format!("z9hG4bK-{id}"))
    };
    let mut peer = TcpPeer::connect(lab.router_tcp).await;
    // Two messages in one segment.
    let two = format!("{}{}", options("o1", peer.addr), options("o2", peer.addr));
    peer.write(two.as_bytes()).await;
    let a = peer.recv_within(Duration::from_secs(5)).await.expect("first answer");
    let b = peer.recv_within(Duration::from_secs(5)).await.expect("second answer");
    assert_eq!((a.status(), b.status()), (Some(200), Some(200)));
    // One message over several writes.
    let one = options("o3", peer.addr);
    let (x, rest) = one.split_at(10);
    let (y, z) = rest.split_at(40);
    for part in [x, y, z] {
        peer.write(part.as_bytes()).await;
        tokio::task::yield_now().await;
    }
    assert_eq!(peer.recv_within(Duration::from_secs(5)).await.and_then(|m| m.status()), Some(200));
    // A message that frames but does not parse is answered like over UDP.
    let v7 = options("o4", peer.addr).replacen("SIP/2.0\r\n", "SIP/7.0\r\n", 1);
    peer.write(v7.as_bytes()).await;
    let r = peer.recv_within(Duration::from_secs(5)).await.expect("an answer");
    assert_eq!((r.status(), r.first(Name::CallId)), (Some(505), Some("o4")));
    // Garbage: disconnected.
    let mut bad = TcpPeer::connect(lab.router_tcp).await;
    bad.write(b"\x16\x03\x01garbage that is not SIP\r\n\r\n").await;
    assert!(bad.closed_within(Duration::from_secs(5)).await);
    // A stall mid-message: disconnected after the 300 ms idle timeout.
    let mut stalled = TcpPeer::connect(lab.router_tcp).await;
    stalled.write(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1").await;
    assert!(stalled.closed_within(Duration::from_secs(5)).await);
    assert!(lab.server.metrics.streams_closed_of("garbage") + lab.server.metrics.streams_closed_of("stalled") >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_transaction_cap_new_calls_get_503_and_calls_in_progress_go_on() {
    let lab = lab_with(NO_PROBES, "[overload]\nmax_transactions = 1\nretry_after_s = 7\n").await;
    // Call 1 rings: one transaction in progress, the cap.
    lab.caller.send(lab.router, &invite(&lab, BOB, "cap1")).await;
    lab.caller.expect_response(100).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    lab.um1.send(from, &response(&inv, 180, "um", "")).await;
    lab.caller.expect_response(180).await;
    // Call 2 is refused with Retry-After, and never reaches a UM server.
    lab.caller.send(lab.router, &invite(&lab, BOB, "cap2")).await;
    let refused = lab.caller.expect_response(503).await;
    assert_eq!(refused.first(Name::CallId), Some("cap2"));
    assert_eq!(refused.header("Retry-After"), Some("7"));
    assert_eq!(lab.server.metrics.overload_of("transactions"), 1);
    // An in-dialog request along the router's Record-Route still passes at
    // the cap (calls in progress can end).
    let rr = inv.first(Name::RecordRoute).expect("record-routed").to_owned();
    let bye = format!(
        "BYE sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-capbye\r\nMax-Forwards: 70\r\nRoute: {rr}\r\n\
         From: <sip:caller@fabrikam.com>;tag=a\r\nTo: <sip:bob@contoso.com>;tag=b\r\nCall-ID: cap1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        lab.um2.addr, lab.caller.addr
    );
    lab.caller.send(lab.router, &bye).await;
    let (bye, bye_from) = lab.um2.expect_request("BYE").await;
    lab.um2.send(bye_from, &response(&bye, 200, "um", "")).await;
    assert_eq!(lab.caller.expect_response(200).await.cseq(), Some((2, "BYE")));
    // Call 1 goes on to its answer.
    lab.um1.send(from, &response(&inv, 200, "um", &format!("Contact: <sip:{}>\r\n", lab.um1.addr))).await;
    let ok = lab.caller.expect_response(200).await;
    assert_eq!(ok.first(Name::CallId), Some("cap1"));
    // Below the cap again once call 1's transaction and the BYE's stop
    // lingering (they count: their retransmissions are still absorbed): call 3 is routed.
    exum_router_tests::until("the transactions to end", || lab.server.proxy.active_transactions() == 0).await;
    lab.caller.send(lab.router, &invite(&lab, BOB, "cap3")).await;
    lab.caller.expect_response(100).await;
    let (inv3, _) = lab.um1.expect_request("INVITE").await;
    assert_eq!(inv3.first(Name::CallId), Some("cap3"));
    let metrics = lab.server.proxy.metrics.encode();
    assert!(metrics.contains("exum_sip_overload_refused_total{reason=\"transactions\"} 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_beyond_its_rate_gets_503_and_other_sources_do_not() {
    // Two new requests per hour per source: the third from the caller is refused.
    let lab = lab_with(NO_PROBES, "[overload]\nper_source_requests = 2\nper_source_window_ms = 3600000\n").await;
    for call in ["rate1", "rate2"] {
        lab.caller.send(lab.router, &invite(&lab, BOB, call)).await;
        lab.caller.expect_response(100).await;
        let (inv, _) = lab.um1.expect_request("INVITE").await;
        assert_eq!(inv.first(Name::CallId), Some(call));
    }
    lab.caller.send(lab.router, &invite(&lab, BOB, "rate3")).await;
    let refused = lab.caller.expect_response(503).await;
    assert_eq!(refused.first(Name::CallId), Some("rate3"));
    assert_eq!(refused.header("Retry-After"), Some("5"));
    assert_eq!(lab.server.metrics.overload_of("source_rate"), 1);
    // Another source address has its own allowance.
    let other = UdpPeer::bind_on("127.0.0.2:0".parse().expect("addr")).await;
    other.send(lab.router, &request("INVITE", BOB, other.addr, "UDP", "rate4", "z9hG4bK-rate4")).await;
    other.expect_response(100).await;
    let (inv, _) = lab.um1.expect_request("INVITE").await;
    assert_eq!(inv.first(Name::CallId), Some("rate4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_calls_to_a_tcp_server_opens_one_connection() {
    // A UM server over TCP that the router has no connection to yet; calls
    // arrive together. Every INVITE must travel on the one connection the
    // router opens (a server that answers on one connection, as sipp's
    // single-socket mode does, would otherwise never answer some of them).
    let TcpUmLab { _dir, server: _server, router, caller, um, um_addr } = tcp_um_lab("").await;
    const CALLS: usize = 20;
    for i in 0..CALLS {
        let id = format!("burst{i}");
        caller.send(router, &request("INVITE", BOB, caller.addr, "UDP", &id, &format!("z9hG4bK-{id}"))).await;
    }
    let (stream, _) = um.accept().await.expect("the router connects");
    let mut conn = TcpPeer::from_stream(stream);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < CALLS {
        let m = conn.recv_within(Duration::from_secs(10)).await.expect("every INVITE on the first connection");
        if m.method() == Some("INVITE") {
            seen.insert(m.first(Name::CallId).expect("Call-ID").to_owned());
            conn.write(response(&m, 200, "um", &format!("Contact: <sip:{um_addr};transport=tcp>\r\n")).as_bytes())
                .await;
        }
    }
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < CALLS {
        let ok = caller.final_response().await;
        assert_eq!(ok.status(), Some(200));
        answered.insert(ok.first(Name::CallId).expect("Call-ID").to_owned());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_crossing_transports_is_record_routed_twice() {
    // A caller over UDP, a UM server over TCP: the router record-routes once
    // per side (RFC 5658), so the caller's in-dialog requests name it over UDP
    // and the UM server's over TCP, and it pops both of its Routes.
    let TcpUmLab { _dir, server, router, caller, um, um_addr } = tcp_um_lab("record_route = true\n").await;
    caller.send(router, &request("INVITE", BOB, caller.addr, "UDP", "x1", "z9hG4bK-x1")).await;
    let (stream, _) = um.accept().await.expect("the router connects");
    let mut conn = TcpPeer::from_stream(stream);
    let inv = loop {
        let m = conn.recv_within(Duration::from_secs(10)).await.expect("the INVITE");
        if m.method() == Some("INVITE") {
            break m;
        }
    };
    let rr: Vec<String> = inv.values(Name::RecordRoute).map(str::to_owned).collect();
    assert_eq!(rr.len(), 2, "{rr:?}");
    assert!(
        rr[0].contains(";transport=tcp")
            && rr[0].contains(&server.local_addr(Transport::Tcp).expect("tcp").to_string()),
        "{rr:?}"
    );
    assert!(!rr[1].contains("transport=") && rr[1].contains(&router.to_string()), "{rr:?}");
    let rr_header = rr.iter().map(|r| format!("Record-Route: {r}\r\n")).collect::<String>();
    conn.write(response(&inv, 200, "um", &format!("Contact: <sip:{um_addr};transport=tcp>\r\n{rr_header}")).as_bytes())
        .await;
    let ok = caller.final_response().await;
    assert_eq!(ok.status(), Some(200));
    // The caller's BYE: its route set is the Record-Route reversed.
    let routes: String =
        ok.values(Name::RecordRoute).collect::<Vec<_>>().iter().rev().map(|r| format!("Route: {r}\r\n")).collect();
    let to = ok.first(Name::To).expect("To").to_owned();
    caller
        .send(
            router,
            &format!(
                "BYE sip:{um_addr};transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-x1bye\r\nMax-Forwards: 70\r\n{routes}\
                 From: <sip:caller@fabrikam.com>;tag=caller-x1\r\nTo: {to}\r\nCall-ID: x1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
                caller.addr
            ),
        )
        .await;
    let bye = loop {
        let m = conn.recv_within(Duration::from_secs(10)).await.expect("the BYE reaches the UM server");
        if m.method() == Some("BYE") {
            break m;
        }
    };
    assert_eq!(bye.first(Name::Route), None, "both of the router's Routes were popped");
    conn.write(response(&bye, 200, "um", "").as_bytes()).await;
    let done = caller.final_response().await;
    assert_eq!((done.status(), done.cseq()), (Some(200), Some((2, "BYE"))));
}

/// A router (UDP and TCP) whose tenant contoso (with `tenant_extra`) sends bob's
/// calls to a UM server over TCP: the test's listener.
struct TcpUmLab {
    _dir: tempfile::TempDir,
    server: Server,
    router: SocketAddr,
    caller: UdpPeer,
    um: tokio::net::TcpListener,
    um_addr: SocketAddr,
}

async fn tcp_um_lab(tenant_extra: &str) -> TcpUmLab {
    let um = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let um_addr = um.local_addr().expect("addr");
    let caller = UdpPeer::bind().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("router.toml"),
        format!(
            "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\", \"tcp\"]\n\
             [probes]\nenabled = false\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n{tenant_extra}"
        ),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("directory.toml"),
        format!(
            "[[tenants.contoso.users]]\nsip = \"sip:bob@contoso.com\"\neum = \"eum:bob@contoso.com;phone-context=DP1\"\n\
             [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\n\
             servers = [{{ uri = \"sip:{um_addr};transport=tcp\" }}]\n"
        ),
    )
    .expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("the router starts");
    let router = server.local_addr(Transport::Udp).expect("udp");
    TcpUmLab { _dir: dir, server, router, caller, um, um_addr }
}
