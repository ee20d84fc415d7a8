//! Attacks of the second security review, each over real sockets on loopback
//! against a router started in-process: what broke then is refused now. Floods
//! are bounded in count and stay on 127.0.0.0/8.

use exum_router::metrics::Dropped;
use exum_router::model::wire::{Message, Name};
use std::net::SocketAddr;
use std::time::Duration;

use exum_router_tests::peer::{TcpPeer, UdpPeer, request, response};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingering_transactions_count_towards_the_cap() {
    let lab = lab_with(NO_PROBES, "[overload]\nmax_transactions = 1\n").await;
    // Call 1 is answered: its transaction lingers for retransmissions.
    lab.caller.send(lab.router, &invite(&lab, BOB, "linger1")).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    lab.um1.send(from, &response(&inv, 486, "um", "")).await;
    let busy = lab.caller.final_response().await;
    assert_eq!(busy.first(Name::CallId), Some("linger1"));
    assert_eq!(lab.server.proxy.active_transactions(), 1, "lingering");
    lab.caller.send(lab.router, &invite(&lab, BOB, "linger2")).await;
    let refused = lab.caller.final_response().await;
    assert_eq!((refused.status(), refused.first(Name::CallId)), (Some(503), Some("linger2")));
    assert_eq!(lab.server.metrics.overload_of("transactions"), 1);
    until("the lingering to end", || lab.server.proxy.active_transactions() == 0).await;
    lab.caller.send(lab.router, &invite(&lab, BOB, "linger3")).await;
    let (inv, _) = lab.um1.expect_request("INVITE").await;
    assert_eq!(inv.first(Name::CallId), Some("linger3"));
}

/// An INVITE for bob with a body of `body_bytes`.
fn big_invite(lab: &Lab, call_id: &str, body_bytes: usize) -> String {
    let body = "v".repeat(body_bytes);
    invite(lab, BOB, call_id).replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bytes_transactions_hold_are_bounded() {
    // Room for one transaction with a 60 KB body, not two.
    let lab = lab_with(NO_PROBES, "[overload]\nmax_transaction_bytes = 220000\n").await;
    lab.caller.send(lab.router, &big_invite(&lab, "big1", 60_000)).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    assert_eq!(inv.first(Name::CallId), Some("big1"));
    assert!(lab.server.metrics.transaction_bytes.get() > 180_000, "charged for its bytes");
    lab.caller.send(lab.router, &big_invite(&lab, "big2", 60_000)).await;
    let refused = lab.caller.final_response().await;
    assert_eq!((refused.status(), refused.first(Name::CallId)), (Some(503), Some("big2")));
    assert_eq!(lab.server.metrics.overload_of("memory"), 1);
    // A small call still fits; and once call 1 is over and forgotten, so does a big one.
    lab.caller.send(lab.router, &invite(&lab, BOB, "small")).await;
    let (small, small_from) = lab.um1.expect_request("INVITE").await;
    assert_eq!(small.first(Name::CallId), Some("small"));
    lab.um1.send(from, &response(&inv, 486, "um", "")).await;
    lab.um1.send(small_from, &response(&small, 486, "um", "")).await;
    until("the transactions to end", || lab.server.proxy.active_transactions() == 0).await;
    assert_eq!(lab.server.metrics.transaction_bytes.get(), 0, "every charge released");
    lab.caller.send(lab.router, &big_invite(&lab, "big3", 60_000)).await;
    let (inv, _) = lab.um1.expect_request("INVITE").await;
    assert_eq!(inv.first(Name::CallId), Some("big3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_flooding_for_sustained_windows_is_banned_and_shown_on_the_api() {
    let lab = lab_with(
        NO_PROBES,
        "[overload]\nper_source_requests = 5\nper_source_window_ms = 1000\nban_after = 2\nban_ms = 600000\n\
         [admin]\naddress = \"127.0.0.1:0\"\ntoken = \"exum-test-admin-token\"\n",
    )
    .await;
    let admin = lab.server.admin_addr().expect("admin");
    let flooder = UdpPeer::bind_on("127.0.0.3:0".parse().expect("addr")).await;
    let mut n = 0u64;
    // Bursts of 20 (four times the rate), each answered, until the ban.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while lab.server.proxy.bans().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no ban after {n} requests");
        for _ in 0..20 {
            n += 1;
            let call = format!("flood{n}");
            flooder.send(lab.router, &exum_router_tests::peer::udp_request("OPTIONS", BOB, flooder.addr, &call)).await;
            // Answered, or dropped for the ban that request began.
            tokio::select! {
                _ = flooder.recv() => {}
                _ = until("the ban", || lab.server.metrics.overload_of("banned") > 0) => break,
            }
        }
    }
    let (status, body) = crate::admin::http(admin, "GET", "/bans", None).await;
    assert_eq!(status, 200);
    let bans = crate::admin::json(&body);
    assert_eq!(bans["bans"][0]["source"], "127.0.0.3", "{body}");
    assert!(bans["bans"][0]["remaining_ms"].as_u64().is_some_and(|ms| ms > 0), "{body}");
    // Banned: dropped unanswered and counted; other sources are served.
    let before = lab.server.metrics.overload_of("banned");
    flooder.send(lab.router, &exum_router_tests::peer::udp_request("OPTIONS", BOB, flooder.addr, "banned")).await;
    until("the banned request dropped", || lab.server.metrics.overload_of("banned") == before + 1).await;
    assert!(!has_datagram(&flooder));
    lab.caller.send(lab.router, &invite(&lab, BOB, "served")).await;
    let (inv, _) = lab.um1.expect_request("INVITE").await;
    assert_eq!(inv.first(Name::CallId), Some("served"));
    // The operator lifts the ban.
    let (status, _) =
        crate::admin::http(admin, "DELETE", "/bans/127.0.0.3", Some(exum_router_tests::ADMIN_TOKEN)).await;
    assert_eq!(status, 200);
    assert!(lab.server.proxy.bans().is_empty());
    let (status, _) =
        crate::admin::http(admin, "DELETE", "/bans/127.0.0.3", Some(exum_router_tests::ADMIN_TOKEN)).await;
    assert_eq!(status, 404);
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpPeer {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{from}:0").parse().expect("addr")).expect("bind");
    TcpPeer::from_stream(socket.connect(to).await.expect("connect"))
}

/// Whether `peer`'s connection answers an OPTIONS to the router.
async fn answers(peer: &mut TcpPeer, router: SocketAddr, id: &str) -> bool {
    let options = request("OPTIONS", &format!("sip:{router}"), peer.addr, "TCP", id, &format!("z9hG4bK-{id}"));
    peer.write(options.as_bytes()).await;
    peer.recv_within(exum_router_tests::peer::WAIT).await.and_then(|m| m.status()) == Some(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_address_and_in_all() {
    // The caps are [sip] settings: the lab's [sip] section comes first, so they
    // go in a lab of their own.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\", \"tcp\"]\n\
         [sip]\nmax_connections = 4\nmax_connections_per_ip = 3\n[probes]\nenabled = false\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    let server = exum_router::server::Server::start(&dir.path().join("router.toml")).await.expect("starts");
    let router = server.local_addr(exum_router::model::Transport::Tcp).expect("tcp");
    let mut from_one = Vec::new();
    for i in 0..3 {
        let mut peer = connect_from("127.0.0.1", router).await;
        assert!(answers(&mut peer, router, &format!("one{i}")).await);
        from_one.push(peer);
    }
    let mut fourth = connect_from("127.0.0.1", router).await;
    assert!(fourth.closed_within(exum_router_tests::peer::WAIT).await, "a fourth from one address is closed");
    assert_eq!(server.metrics.connections_refused_of("per_ip"), 1);
    let mut other = connect_from("127.0.0.2", router).await;
    assert!(answers(&mut other, router, "two").await, "another address has its own share");
    let mut fifth = connect_from("127.0.0.3", router).await;
    assert!(fifth.closed_within(exum_router_tests::peer::WAIT).await, "four in all");
    assert_eq!(server.metrics.connections_refused_of("global"), 1);
    // A connection that closes gives its place back.
    drop(from_one.pop());
    until("the closed connection forgotten", || server.metrics.connections_open.get() == 3).await;
    let mut again = connect_from("127.0.0.1", router).await;
    assert!(answers(&mut again, router, "again").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_trickled_a_byte_at_a_time_cannot_hold_a_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"tcp\"]\n\
         [sip]\ntcp_idle_timeout_ms = 300\ntcp_message_timeout_ms = 1000\n[probes]\nenabled = false\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    let server = exum_router::server::Server::start(&dir.path().join("router.toml")).await.expect("starts");
    let router = server.local_addr(exum_router::model::Transport::Tcp).expect("tcp");
    // Idle 300 ms, a whole message within 1 s. A head announcing a 60,000-byte body, then the body a byte every 50 ms:
    // never idle for 300 ms, never whole (it would take 50 minutes).
    let mut slow = TcpPeer::connect(router).await;
    let head = request("INVITE", "sip:bob@contoso.com", slow.addr, "TCP", "slow", "z9hG4bK-slow")
        .replace("Content-Length: 0", "Content-Length: 60000");
    slow.write(head.as_bytes()).await;
    let mut closed = false;
    for _ in 0..400 {
        use tokio::io::AsyncWriteExt as _;
        if slow.stream.write_all(b"v").await.is_err() || slow.closed_within(Duration::from_millis(50)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "closed before 20 s of trickling");
    assert_eq!(server.metrics.streams_closed_of("stalled"), 1);
    // Keep-alives alone do not keep a connection open past the idle timeout.
    let mut pinger = TcpPeer::connect(router).await;
    let mut closed = false;
    for _ in 0..400 {
        use tokio::io::AsyncWriteExt as _;
        if pinger.stream.write_all(b"\r\n\r\n").await.is_err() || pinger.closed_within(Duration::from_millis(50)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "closed before 20 s of keep-alives");
    // A peer that sends whole messages is served meanwhile.
    let mut good = TcpPeer::connect(router).await;
    assert!(answers(&mut good, router, "good").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_is_disconnected() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"tcp\"]\n\
         [sip]\ntcp_send_timeout_ms = 200\n[overload]\nper_source_requests = 0\n[probes]\nenabled = false\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    let server = exum_router::server::Server::start(&dir.path().join("router.toml")).await.expect("starts");
    let router = server.local_addr(exum_router::model::Transport::Tcp).expect("tcp");
    // A peer that asks and asks and never reads a response: once the socket
    // buffers between them are full, the router's write stalls and the
    // connection is closed.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small receive buffer");
    let stream = socket.connect(router).await.expect("connect");
    let local = stream.local_addr().expect("addr");
    let (_reader, mut writer) = stream.into_split();
    let mut sent = 0u64;
    while server.metrics.streams_closed_of("send_timeout") == 0 {
        assert!(sent < 500_000, "still connected after {sent} requests");
        let mut batch = String::new();
        for _ in 0..100 {
            sent += 1;
            let id = format!("nr{sent}");
            batch.push_str(&request("OPTIONS", &format!("sip:{router}"), local, "TCP", &id, &format!("z9hG4bK-{id}")));
        }
        use tokio::io::AsyncWriteExt as _;
        if writer.write_all(batch.as_bytes()).await.is_err() {
            break;
        }
    }
    until("the connection closed for not reading", || server.metrics.streams_closed_of("send_timeout") == 1).await;
    until("its place given back", || server.metrics.connections_open.get() == 0).await;
}
