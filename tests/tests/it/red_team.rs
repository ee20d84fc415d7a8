//! Attacks of the third security review, each over real sockets on loopback
//! against a router started in-process: the relay a tenant's domain opened, a
//! forged ACK looping through the router, a stranger's CANCEL. Floods are
//! bounded in count and stay on 127.0.0.0/8.

use exum_router::metrics::Dropped;
use exum_router::model::Transport;
use exum_router::model::wire::Name;
use exum_router::server::Server;
use exum_router_tests::peer::{UdpPeer, request, response};
use exum_router_tests::until;

use crate::proxy::{BOB, NO_PROBES, invite, lab_with};

/// Whether a datagram is waiting on `peer` (checked after the router answered
/// or dropped, so anything it forwarded would have been sent before).
fn has_datagram(peer: &UdpPeer) -> bool {
    let mut buf = [0u8; 2048];
    peer.socket.try_recv_from(&mut buf).is_ok()
}

/// An in-dialog request (`method`, To tag) whose From is a tenant's domain,
/// aimed at `target` with no Route: a dialog the router never record-routed.
fn toll_fraud(method: &str, from: std::net::SocketAddr, target: &str, call_id: &str) -> String {
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-{call_id};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:anyone@contoso.com>;tag=a1\r\nTo: <sip:+15551234567@pstn.example>;tag=b1\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\nContact: <sip:a@{from}>\r\nContent-Length: 0\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_domain_opens_no_relay_when_it_has_no_peers() {
    // contoso as the example ships tenants: no `peers`.
    let lab = lab_with(NO_PROBES, "").await;
    let third = UdpPeer::bind_on("127.0.0.2:0".parse().expect("addr")).await;
    for (i, method) in ["INVITE", "BYE", "OPTIONS"].iter().enumerate() {
        let fraud = toll_fraud(method, lab.caller.addr, &format!("sip:+15551234567@{}", third.addr), &format!("tf{i}"));
        lab.caller.send(lab.router, &fraud).await;
        let refused = lab.caller.final_response().await;
        assert_eq!(refused.status(), Some(403), "{method}: {refused:?}");
    }
    assert!(lab.server.metrics.encode().contains("exum_sip_access_refused_total{reason=\"tenant\"} 3"));
    assert!(!has_datagram(&third), "nothing reached the third address");
    // A dialog the router record-routed still goes through: a call, then its BYE.
    lab.caller.send(lab.router, &invite(&lab, BOB, "real")).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    lab.um1.send(from, &response(&inv, 200, "um", &format!("Contact: <sip:{}>\r\n", lab.um1.addr))).await;
    let ok = lab.caller.expect_response(200).await;
    let rr = inv.first(Name::RecordRoute).expect("record-routed").to_owned();
    let to = ok.first(Name::To).expect("To").to_owned();
    let bye = format!(
        "BYE sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-realbye;rport\r\nMax-Forwards: 70\r\nRoute: {rr}\r\n\
         From: <sip:caller@fabrikam.com>;tag=caller-real\r\nTo: {to}\r\nCall-ID: real\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        lab.um1.addr, lab.caller.addr
    );
    lab.caller.send(lab.router, &bye).await;
    let (bye, bye_from) = lab.um1.expect_request("BYE").await;
    lab.um1.send(bye_from, &response(&bye, 200, "um", "")).await;
    assert_eq!(lab.caller.expect_response(200).await.cseq(), Some((2, "BYE")));
}

/// A router whose tenant contoso names 127.0.0.1 as its peer (so an ACK
/// from there passes the dialog check), with a low per-source rate.
async fn peered_router() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [probes]\nenabled = false\n[overload]\nper_source_requests = 20\nper_source_window_ms = 1000\nban_after = 1\nban_ms = 600000\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\npeers = [\"127.0.0.1/32\"]\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("the router starts");
    (dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_ack_naming_the_router_is_not_forwarded_to_itself() {
    let (_dir, server) = peered_router().await;
    let router = server.local_addr(Transport::Udp).expect("udp");
    let peer = UdpPeer::bind().await;
    // Its Request-URI is the router; then its Route is.
    let by_uri = toll_fraud("ACK", peer.addr, &format!("sip:x@{router}"), "ack-loop1");
    peer.send(router, &by_uri).await;
    until("the ACK dropped as a loop", || server.metrics.dropped_of(Dropped::Loop) == 1).await;
    // Three Routes naming the router: two are popped as its own, the third
    // would send it back to the router.
    let routes = format!("Route: <sip:{router};lr>, <sip:{router};lr>, <sip:{router};lr>\r\n");
    let by_route = toll_fraud("ACK", peer.addr, "sip:x@contoso.com", "ack-loop2")
        .replace("Max-Forwards: 70\r\n", &format!("Max-Forwards: 70\r\n{routes}"));
    peer.send(router, &by_route).await;
    until("the second ACK dropped as a loop", || server.metrics.dropped_of(Dropped::Loop) == 2).await;
    // Each was seen once: nothing went round (an ACK is never answered).
    assert!(server.metrics.encode().contains("exum_sip_dropped_total{reason=\"loop\"} 2"));
    assert!(!has_datagram(&peer));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_stray_acks_counts_against_the_source_and_bans_it() {
    let (_dir, server) = peered_router().await;
    let router = server.local_addr(Transport::Udp).expect("udp");
    let flooder = UdpPeer::bind_on("127.0.0.3:0".parse().expect("addr")).await;
    // ACKs for no transaction and no dialog of the router's, about 400/s
    // (twenty times the rate) until the ban, at most 10,000.
    let banned = || server.proxy.bans().iter().any(|b| b.source.to_string() == "127.0.0.3");
    let mut sent = 0;
    while !banned() {
        assert!(sent < 10_000, "no ban after {sent} stray ACKs");
        for _ in 0..20 {
            sent += 1;
            let ack = request("ACK", BOB, flooder.addr, "UDP", &format!("stray{sent}"), &format!("z9hG4bK-s{sent}"));
            flooder.send(router, &ack).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(server.metrics.dropped_of(Dropped::StrayAck) > 0);
    // Another source is served.
    let caller = UdpPeer::bind().await;
    caller.send(router, &request("OPTIONS", &format!("sip:{router}"), caller.addr, "UDP", "ok", "z9hG4bK-ok")).await;
    assert_eq!(caller.recv().await.0.status(), Some(200));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_from_a_stranger_does_not_cancel_the_callers_invite() {
    let lab = lab_with(NO_PROBES, "").await;
    let stranger = UdpPeer::bind_on("127.0.0.3:0".parse().expect("addr")).await;
    let inv_text = invite(&lab, BOB, "cancel-theft");
    lab.caller.send(lab.router, &inv_text).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    lab.um1.send(from, &response(&inv, 180, "um1", "")).await;
    lab.caller.expect_response(180).await;
    // The stranger copies the caller's Via and branch.
    let cancel = inv_text.replacen("INVITE sip", "CANCEL sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    stranger.send(lab.router, &cancel).await;
    let (answer, _) = stranger.recv().await;
    assert_eq!(answer.status(), Some(481), "as if there were no such transaction");
    // The call goes on: the UM server's answer reaches the caller.
    lab.um1.send(from, &response(&inv, 200, "um1", &format!("Contact: <sip:{}>\r\n", lab.um1.addr))).await;
    let ok = lab.caller.final_response().await;
    assert_eq!((ok.status(), ok.first(Name::CallId)), (Some(200), Some("cancel-theft")));
    assert!(lab.server.metrics.encode().contains("exum_sip_access_refused_total{reason=\"cancel\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_own_cancel_still_cancels() {
    let lab = lab_with(NO_PROBES, "").await;
    let inv_text = invite(&lab, BOB, "own-cancel");
    lab.caller.send(lab.router, &inv_text).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    lab.um1.send(from, &response(&inv, 180, "um1", "")).await;
    lab.caller.expect_response(180).await;
    let cancel = inv_text.replacen("INVITE sip", "CANCEL sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    lab.caller.send(lab.router, &cancel).await;
    assert_eq!(lab.caller.expect_response(200).await.cseq(), Some((1, "CANCEL")));
    let (c, from) = lab.um1.expect_request("CANCEL").await;
    lab.um1.send(from, &response(&c, 200, "um1", "")).await;
    lab.um1.send(from, &response(&inv, 487, "um1", "")).await;
    assert_eq!(lab.caller.expect_response(487).await.cseq(), Some((1, "INVITE")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_with_a_peers_address_never_gets_the_peer_banned() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [probes]\nenabled = false\n[overload]\nper_source_requests = 5\nper_source_window_ms = 200\nban_after = 1\nban_ms = 600000\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\npeers = [\"127.0.0.5/32\"]\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("the router starts");
    let router = server.local_addr(Transport::Udp).expect("udp");
    // The peer's address (as a spoofer would use it) and a stranger's, flooded alike.
    let peer = UdpPeer::bind_on("127.0.0.5:0".parse().expect("addr")).await;
    let stranger = UdpPeer::bind_on("127.0.0.6:0".parse().expect("addr")).await;
    let banned = |ip: &str| server.proxy.bans().iter().any(|b| b.source.to_string() == ip);
    let mut bursts = 0;
    let burst = |n: u32| {
        let (peer, stranger) = (&peer, &stranger);
        async move {
            for i in 0..20 {
                let id = format!("spoof{n}-{i}");
                for from in [peer, stranger] {
                    from.send(router, &request("OPTIONS", BOB, from.addr, "UDP", &id, &format!("z9hG4bK-{id}"))).await;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        }
    };
    while !banned("127.0.0.6") {
        assert!(bursts < 500, "the stranger was never banned");
        bursts += 1;
        burst(bursts).await;
    }
    // As many bursts again: the peer has had every chance to be banned.
    for n in 0..bursts {
        burst(1000 + n).await;
    }
    assert!(!banned("127.0.0.5"), "the peer's address is never banned: {:?}", server.proxy.bans());
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_router_answers_itself_do_not_fill_the_transaction_table() {
    // A table of 10 transactions; 300 OPTIONS the router answers 404 itself.
    let lab = lab_with(NO_PROBES, "[overload]\nmax_transactions = 10\n").await;
    let flooder = UdpPeer::bind_on("127.0.0.3:0".parse().expect("addr")).await;
    let options = |n: u32| {
        request(
            "OPTIONS",
            "sip:x@nowhere.example",
            flooder.addr,
            "UDP",
            &format!("cheap{n}"),
            &format!("z9hG4bK-cheap{n}"),
        )
    };
    let mut first = None;
    for n in 0..300 {
        flooder.send(lab.router, &options(n)).await;
        let (answer, _) = flooder.recv().await;
        assert_eq!(answer.status(), Some(404), "request {n}");
        first.get_or_insert(answer);
    }
    // A retransmission of the first gets the same answer (its To tag), not a new one.
    flooder.send(lab.router, &options(0)).await;
    let (again, _) = flooder.recv().await;
    let first = first.expect("answered");
    assert_eq!((again.status(), again.to_tag()), (Some(404), first.to_tag()));
    assert!(lab.server.proxy.active_transactions() < 10, "{} transactions", lab.server.proxy.active_transactions());
    // A real call is routed, not refused for a full table.
    lab.caller.send(lab.router, &invite(&lab, BOB, "after-cheap")).await;
    let (inv, _) = lab.um1.expect_request("INVITE").await;
    assert_eq!(inv.first(Name::CallId), Some("after-cheap"));
    assert_eq!(lab.server.metrics.overload_of("transactions"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_cut_short_is_not_applied_and_a_small_removal_is() {
    let um = UdpPeer::bind().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let users = |n: usize| -> String {
        let mut d = format!(
            "[[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:{}\" }}]\n",
            um.addr
        );
        for i in 0..n {
            d.push_str(&format!(
                "[[tenants.contoso.users]]\nsip = \"sip:user{i}@contoso.com\"\neum = \"eum:user{i}@contoso.com;phone-context=DP1\"\n"
            ));
        }
        d
    };
    std::fs::write(dir.path().join("directory.toml"), users(10)).expect("write");
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [probes]\nenabled = false\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n",
    )
    .expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("the router starts");
    let router = server.local_addr(Transport::Udp).expect("udp");
    let caller = UdpPeer::bind().await;
    let call = |user: usize, id: &str| {
        request(
            "INVITE",
            &format!("sip:user{user}@contoso.com;opaque=app:voicemail"),
            caller.addr,
            "UDP",
            id,
            &format!("z9hG4bK-{id}"),
        )
    };
    // The file caught after its first three users: refused for contoso.
    std::fs::write(dir.path().join("directory.toml"), users(3)).expect("write");
    let refused = server.reload().expect("the configuration is valid");
    assert!(refused.iter().any(|r| r.contains("would lose 7 of its 10 users")), "{refused:?}");
    caller.send(router, &call(9, "cut")).await;
    let (inv, from) = um.expect_request("INVITE").await;
    assert_eq!(inv.first(Name::CallId), Some("cut"), "user9 is still routed");
    um.send(from, &response(&inv, 486, "um", "")).await;
    caller.final_response().await;
    // Removing two of ten is an edit: applied.
    std::fs::write(dir.path().join("directory.toml"), users(8)).expect("write");
    assert_eq!(server.reload().expect("valid"), Vec::<String>::new());
    caller.send(router, &call(9, "removed")).await;
    assert_eq!(caller.final_response().await.status(), Some(404));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_bomb_is_refused_before_it_is_compiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\npolicy_dir = \"policies\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [probes]\nenabled = false\n[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"exum-test-admin-token\"\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n",
    )
    .expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("the router starts");
    let admin = server.admin_addr().expect("admin");
    let compilations = || {
        let metrics = server.metrics.encode();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("exum_policy_compilations_total ").and_then(|v| v.parse::<u64>().ok()))
            .expect("the compilations counter")
    };
    let before = compilations();
    // 60,000 empty functions: far more code than any policy, cheap to send.
    let bomb = exum_router::policy::engine::component_with_functions(60_000);
    std::fs::write(dir.path().join("policies/.contoso.tmp"), &bomb).expect("write");
    std::fs::rename(dir.path().join("policies/.contoso.tmp"), dir.path().join("policies/contoso.wasm"))
        .expect("rename");
    let (status, body) =
        crate::admin::http(admin, "POST", "/tenants/contoso/reload", Some(exum_router_tests::ADMIN_TOKEN)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("60000 functions or more; a policy may have 50000"), "{body}");
    assert_eq!(compilations(), before, "nothing was compiled");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_may_answer_unknown_and_not_enabled_users_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("directory.toml"), "[[tenants.contoso.users]]\nsip = \"sip:carol@contoso.com\"\n")
        .expect("write");
    let config = |uniform: bool| {
        format!(
            "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
             [probes]\nenabled = false\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\nuniform_user_answers = {uniform}\n"
        )
    };
    let caller = UdpPeer::bind().await;
    let mut seen = Vec::new();
    for uniform in [false, true] {
        std::fs::write(dir.path().join("router.toml"), config(uniform)).expect("write");
        let server = Server::start(&dir.path().join("router.toml")).await.expect("the router starts");
        let router = server.local_addr(Transport::Udp).expect("udp");
        let mut answers = Vec::new();
        for user in ["carol", "nobody"] {
            let id = format!("enum-{user}-{uniform}");
            let ruri = format!("sip:{user}@contoso.com;opaque=app:voicemail");
            caller.send(router, &request("INVITE", &ruri, caller.addr, "UDP", &id, &format!("z9hG4bK-{id}"))).await;
            let answer = caller.final_response().await;
            let diagnostics = answer.header("ms-diagnostics").unwrap_or("").split(';').next().unwrap_or("").to_owned();
            answers.push((answer.status(), diagnostics));
        }
        seen.push(answers);
        server.stop();
    }
    // As Lync answers: 480 15000 for a user not enabled, 404 15004 for no user.
    assert_eq!(seen[0], [(Some(480), "15000".to_owned()), (Some(404), "15004".to_owned())]);
    // With the setting, both alike.
    assert_eq!(seen[1], [(Some(480), "15030".to_owned()), (Some(480), "15030".to_owned())]);
}

async fn connect_from(from: &str, to: std::net::SocketAddr) -> exum_router_tests::peer::TcpPeer {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{from}:0").parse().expect("addr")).expect("bind");
    exum_router_tests::peer::TcpPeer::from_stream(socket.connect(to).await.expect("connect"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_neither_last_nor_lock_out_a_tenants_peers() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"tcp\"]\n\
         [sip]\nmax_connections = 4\nmax_connections_per_ip = 4\ntcp_first_message_timeout_ms = 300\n\
         [probes]\nenabled = false\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\npeers = [\"127.0.0.5/32\"]\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("the router starts");
    let router = server.local_addr(Transport::Tcp).expect("tcp");
    // A stranger fills the cap with connections that send nothing.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect_from("127.0.0.3", router).await);
    }
    until("four connections open", || server.metrics.connections_open.get() == 4).await;
    // The tenant's peer still gets in, and is answered.
    let mut peer = connect_from("127.0.0.5", router).await;
    let options = request("OPTIONS", &format!("sip:{router}"), peer.addr, "TCP", "reserved", "z9hG4bK-reserved");
    peer.write(options.as_bytes()).await;
    assert_eq!(peer.recv_within(exum_router_tests::peer::WAIT).await.and_then(|m| m.status()), Some(200));
    // Another stranger does not.
    let mut other = connect_from("127.0.0.6", router).await;
    assert!(other.closed_within(exum_router_tests::peer::WAIT).await, "beyond the cap");
    // The idle ones are closed long before the 30 s idle timeout: no first
    // message within 300 ms.
    for conn in &mut idle {
        assert!(conn.closed_within(exum_router_tests::peer::WAIT).await, "an idle connection was kept");
    }
    server.stop();
}

/// The ACK of a final response to an INVITE, built from the response.
fn ack_of(resp: &exum_router::model::wire::Message, ruri: &str) -> String {
    let field = |name| resp.first(name).unwrap_or("").to_owned();
    format!(
        "ACK {ruri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n",
        field(Name::Via),
        field(Name::From),
        field(Name::To),
        field(Name::CallId)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_a_source_that_never_acknowledges_counts_half_toward_a_ban() {
    // Two sources flood INVITEs at four times their rate in the same windows;
    // one ACKs the router's final responses (it receives at its address), the
    // other never does (as a flood with a spoofed address cannot).
    let lab = lab_with(
        NO_PROBES,
        "[overload]\nper_source_requests = 5\nper_source_window_ms = 500\nban_after = 2\nban_ms = 600000\n",
    )
    .await;
    let answering = UdpPeer::bind_on("127.0.0.7:0".parse().expect("addr")).await;
    let silent = UdpPeer::bind_on("127.0.0.8:0".parse().expect("addr")).await;
    let ruri = "sip:x@nowhere.example";
    let banned = |ip: &str| lab.server.proxy.bans().iter().any(|b| b.source.to_string() == ip);
    let mut n = 0u32;
    let mut answering_banned_first = None;
    while !banned("127.0.0.8") {
        assert!(n < 20_000, "the silent source was never banned");
        for _ in 0..20 {
            n += 1;
            for (from, name) in [(&answering, "a"), (&silent, "s")] {
                let id = format!("half-{name}{n}");
                from.send(lab.router, &request("INVITE", ruri, from.addr, "UDP", &id, &format!("z9hG4bK-{id}"))).await;
            }
            // The answering source ACKs every final response it has.
            while let Some(resp) = answering.try_recv() {
                if resp.status().is_some_and(|c| c >= 200) {
                    answering.send(lab.router, &ack_of(&resp, ruri)).await;
                }
            }
            while silent.try_recv().is_some() {}
        }
        if answering_banned_first.is_none() && banned("127.0.0.7") {
            answering_banned_first = Some(!banned("127.0.0.8"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        answering_banned_first,
        Some(true),
        "the source that completed exchanges was banned first: {:?}",
        lab.server.proxy.bans()
    );
}
