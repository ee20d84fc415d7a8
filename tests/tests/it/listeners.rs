//! More than one listener per transport, and where the router's answers go: an
//! answer leaves from the socket its request arrived on, a forwarded request
//! from the listener it came in on when that one can reach the target, and the
//! Via and Record-Route name the socket used; the router's own responses fill
//! `received`/`rport` and go where RFC 3261 §18.2.2 and RFC 3581 say; an OPTIONS
//! to any listener address, with or without its port, is answered 200.

use std::net::SocketAddr;

use exum_router::model::Transport;
use exum_router::model::wire::{DEFAULT_MAX_MESSAGE, Message, Name};
use exum_router::server::Server;
use exum_router_tests::peer::{TcpPeer, UdpPeer, WAIT, request, response};
use tokio::net::UdpSocket;

struct TwoListeners {
    _dir: tempfile::TempDir,
    server: Server,
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    um: UdpPeer,
}

/// A router with two listeners on 127.0.0.1 (UDP and TCP each), record-routing
/// tenant contoso, whose user bob's UM server is `um`.
async fn two_listeners() -> TwoListeners {
    let um = UdpPeer::bind().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("router.toml"),
        r#"directory = "directory.toml"
[[listen]]
address = "127.0.0.1:0"
transports = ["udp", "tcp"]
[[listen]]
address = "127.0.0.1:0"
transports = ["udp", "tcp"]
[sip]
t1_ms = 50
[probes]
enabled = false
[[tenant]]
id = "contoso"
domains = ["contoso.com"]
record_route = true
"#,
    )
    .expect("write");
    std::fs::write(
        dir.path().join("directory.toml"),
        format!(
            r#"[[tenants.contoso.users]]
sip = "sip:bob@contoso.com"
eum = "eum:bob@contoso.com;phone-context=DP1"
[[tenants.contoso.dial_plans]]
name = "DP1"
phone_context = "DP1"
servers = [{{ uri = "sip:{}" }}]
"#,
            um.addr
        ),
    )
    .expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("the router starts");
    let (udp, tcp) = (server.listeners(Transport::Udp), server.listeners(Transport::Tcp));
    assert_eq!((udp.len(), tcp.len()), (2, 2), "two listeners of each transport");
    assert_ne!(udp[0], udp[1]);
    TwoListeners { _dir: dir, server, udp, tcp, um }
}

const BOB: &str = "sip:bob@contoso.com;opaque=app:voicemail";

/// A UDP socket connected to `to` (as sipsak's): it sees only what `to` sends.
async fn connected(to: SocketAddr) -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    s.connect(to).await.expect("connect");
    let addr = s.local_addr().expect("addr");
    (s, addr)
}

async fn recv_connected(s: &UdpSocket) -> Message {
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(WAIT, s.recv(&mut buf))
        .await
        .expect("an answer from the address the request was sent to")
        .expect("recv");
    Message::parse(buf[..n].to_vec(), false, DEFAULT_MAX_MESSAGE).expect("valid SIP")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_udp_listener_answers_from_its_own_socket() {
    let lab = two_listeners().await;
    for (i, listener) in lab.udp.iter().enumerate() {
        let (socket, me) = connected(*listener).await;
        // To itself, and to the other listener: both are the router.
        for target in [&lab.udp[i], &lab.udp[1 - i]] {
            let call_id = format!("opt-{i}-{}", target.port());
            let options =
                request("OPTIONS", &format!("sip:{target}"), me, "UDP", &call_id, &format!("z9hG4bK{call_id}"));
            socket.send(options.as_bytes()).await.expect("send");
            let answer = recv_connected(&socket).await;
            assert_eq!(answer.status(), Some(200), "OPTIONS sip:{target} through listener {listener}");
            assert!(answer.header("Allow").is_some_and(|a| a.contains("INVITE")));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_second_udp_listener_stays_on_it() {
    let lab = two_listeners().await;
    let second = lab.udp[1];
    let caller = UdpPeer::bind().await;
    caller.send(second, &request("INVITE", BOB, caller.addr, "UDP", "two-udp", "z9hG4bK-two-udp")).await;
    let (inv, from) = lab.um.expect_request("INVITE").await;
    assert_eq!(from, second, "forwarded from the listener the call came in on");
    let via = inv.top_via().expect("our Via");
    assert_eq!(format!("{}:{}", via.host, via.port.unwrap_or(5060)), second.to_string(), "{}", via.value);
    let record_routes: Vec<&str> = inv.values(Name::RecordRoute).collect();
    assert!(!record_routes.is_empty());
    for rr in &record_routes {
        assert!(rr.contains(&second.to_string()), "Record-Route names the listener used: {rr}");
        assert!(!rr.contains(&lab.udp[0].to_string()), "not the first listener: {rr}");
    }
    lab.um.send(from, &response(&inv, 180, "um", "")).await;
    lab.um.send(from, &response(&inv, 200, "um", "Contact: <sip:um@127.0.0.1>\r\n")).await;
    // 100 Trying, 180 and 200: all from the listener the caller used.
    for code in [100, 180, 200] {
        let (answer, answer_from) = caller.recv().await;
        assert_eq!((answer.status(), answer_from), (Some(code), second));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_tcp_to_the_second_listener_leaves_over_udp_from_the_same_listener() {
    let lab = two_listeners().await;
    let second_tcp = lab.tcp[1];
    assert_eq!(second_tcp, lab.udp[1], "a listener's TCP and UDP share the address");
    let mut caller = TcpPeer::connect(second_tcp).await;
    let invite = request("INVITE", BOB, caller.addr, "TCP", "two-tcp", "z9hG4bK-two-tcp");
    caller.write(invite.as_bytes()).await;
    let (inv, from) = lab.um.expect_request("INVITE").await;
    assert_eq!(from, lab.udp[1], "over UDP from the listener the call came in on");
    let via = inv.top_via().expect("our Via");
    assert_eq!(via.transport, "UDP");
    assert_eq!(format!("{}:{}", via.host, via.port.unwrap_or(5060)), lab.udp[1].to_string());
    // Transports differ: two Record-Routes (RFC 5658), both the second listener.
    let record_routes: Vec<&str> = inv.values(Name::RecordRoute).collect();
    assert_eq!(record_routes.len(), 2, "{record_routes:?}");
    assert!(record_routes.iter().all(|rr| rr.contains(&lab.udp[1].to_string())), "{record_routes:?}");
    assert!(record_routes.iter().any(|rr| rr.contains("transport=tcp")), "{record_routes:?}");
    lab.um.send(from, &response(&inv, 486, "um", "")).await;
    // Every UM server failed: 480 (the standard policy's answer).
    let answer = caller.final_response().await;
    assert_eq!(answer.status(), Some(480));
    lab.server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routers_own_answers_fill_received_and_rport_and_follow_the_via() {
    let lab = two_listeners().await;
    let router = lab.udp[0];
    let (sender, elsewhere) = (UdpPeer::bind().await, UdpPeer::bind().await);

    // rport: back to the source address and port, named in the top Via.
    let options = request("OPTIONS", &format!("sip:{router}"), sender.addr, "UDP", "own-rport", "z9hG4bK-own-rport");
    let options = options.replace(&format!("{};branch", sender.addr), "192.0.2.1:5070;branch");
    sender.send(router, &options).await;
    let (answer, from) = sender.recv().await;
    assert_eq!((answer.status(), from), (Some(200), router));
    let via = answer.top_via().expect("Via");
    assert_eq!(via.received, Some("127.0.0.1"), "{}", via.value);
    assert!(via.value.contains(&format!(";rport={}", sender.addr.port())), "{}", via.value);

    // A 404 of the router's own (no tenant) likewise.
    let stranger = request("OPTIONS", "sip:x@unknown.test", sender.addr, "UDP", "own-404", "z9hG4bK-own-404");
    sender.send(router, &stranger).await;
    let (answer, _) = sender.recv().await;
    assert_eq!(answer.status(), Some(404));
    assert!(answer.top_via().expect("Via").value.contains(&format!(";rport={}", sender.addr.port())));

    // No rport: to the source address at the Via's sent-by port (RFC 3261 §18.2.2).
    let to_via_port = request("OPTIONS", &format!("sip:{router}"), elsewhere.addr, "UDP", "own-via", "z9hG4bK-own-via");
    let to_via_port = to_via_port.replace(";rport", "");
    sender.send(router, &to_via_port).await;
    let (answer, from) = elsewhere.recv().await;
    assert_eq!((answer.status(), from), (Some(200), router), "the answer went to the Via's port");
    assert_eq!(answer.header("Call-ID"), Some("own-via"));

    // A relayed answer follows the same rule: the caller's Via names another port.
    let invite = request("INVITE", BOB, elsewhere.addr, "UDP", "relay-via", "z9hG4bK-relay-via").replace(";rport", "");
    sender.send(router, &invite).await;
    let trying = elsewhere.expect_response(100).await;
    assert!(trying.top_via().expect("Via").received.is_none(), "same host: no received");
    let (inv, from) = lab.um.expect_request("INVITE").await;
    lab.um.send(from, &response(&inv, 486, "um", "")).await;
    assert_eq!(elsewhere.final_response().await.status(), Some(480));

    // A Via naming the router itself: the answer goes back to the source.
    let loop_via = request("OPTIONS", &format!("sip:{router}"), router, "UDP", "own-loop", "z9hG4bK-own-loop");
    let loop_via = loop_via.replace(";rport", "");
    sender.send(router, &loop_via).await;
    let (answer, _) = sender.recv().await;
    assert_eq!(answer.header("Call-ID"), Some("own-loop"));
}

/// A router with a UDP listener at each of `addresses`, tenant contoso and
/// no users.
async fn udp_listeners_at(addresses: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let listeners: String =
        addresses.iter().map(|a| format!("[[listen]]\naddress = \"{a}\"\ntransports = [\"udp\"]\n")).collect();
    std::fs::write(
        dir.path().join("router.toml"),
        format!(
            "directory = \"directory.toml\"\n{listeners}[probes]\nenabled = false\n\
             [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n"
        ),
    )
    .expect("write");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("the router starts");
    (dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_options_to_any_listener_address_with_or_without_its_port_is_answered_200() {
    // A listener on the default port of its own loopback address, and one on
    // the unspecified address.
    let (_dir, server) = udp_listeners_at(&["127.0.24.60:5060", "0.0.0.0:0"]).await;
    let listeners = server.listeners(Transport::Udp);
    let fixed: SocketAddr = "127.0.24.60:5060".parse().expect("addr");
    let wildcard = SocketAddr::new([127, 0, 0, 1].into(), listeners[1].port());
    let peer = UdpPeer::bind().await;
    let cases = [
        (fixed, "sip:127.0.24.60".to_owned()),
        (fixed, "sip:127.0.24.60:5060".to_owned()),
        (fixed, "sip:127.0.24.60;transport=udp".to_owned()),
        (fixed, format!("sip:{wildcard}")),
        (wildcard, format!("sip:{wildcard}")),
        (wildcard, "sip:127.0.24.60".to_owned()),
    ];
    for (i, (to, ruri)) in cases.iter().enumerate() {
        let call_id = format!("us-{i}");
        peer.send(*to, &request("OPTIONS", ruri, peer.addr, "UDP", &call_id, &format!("z9hG4bK{call_id}"))).await;
        let (answer, _) = peer.recv().await;
        assert_eq!(answer.status(), Some(200), "OPTIONS {ruri} to {to}: {:?}", answer.header("ms-diagnostics"));
        assert_eq!(answer.header("Call-ID"), Some(call_id.as_str()));
    }
    // Another port of the same address is not the router: no tenant, 404.
    let other = request("OPTIONS", "sip:127.0.24.60:5070", peer.addr, "UDP", "us-other", "z9hG4bK-us-other");
    peer.send(fixed, &other).await;
    assert_eq!(peer.recv().await.0.status(), Some(404));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipsak_gets_200_from_either_listener() {
    // sipsak writes at most four digits of a port in its URIs: listeners on
    // fixed ports of a loopback address of their own.
    let (_dir, server) = udp_listeners_at(&["127.0.24.62:5060", "127.0.24.62:5070"]).await;
    for listener in server.listeners(Transport::Udp) {
        // sipsak (Debian `sipsak`) reads replies on a connected socket: only
        // an answer from the address it sent to reaches it. Exit 0: a 200.
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("sipsak")
                .args(["-s", &format!("sip:{listener}"), "-vv"])
                .output()
                .expect("sipsak runs (Debian package sipsak)")
        })
        .await
        .expect("joined");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "sipsak OPTIONS to {listener}: {said}");
        assert!(said.contains("SIP/2.0 200"), "{said}");
    }
    server.stop();
}
