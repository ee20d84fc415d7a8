//! ExUM call flows over real sockets on loopback: what real Lync deployments send
//! and how the router answers (failures of ordinary calls, global failures).

use exum_router::model::Transport;
use exum_router::model::wire::Name;
use exum_router::server::Server;
use exum_router_tests::LabBuilder;
use exum_router_tests::lab::invite;
use exum_router_tests::peer::{UdpPeer, request, response};

struct Peers {
    caller: UdpPeer,
    pool: UdpPeer,
    um1: UdpPeer,
    um2: UdpPeer,
    gw: UdpPeer,
}

type Lab = exum_router_tests::Lab<Peers>;

async fn lab() -> Lab {
    let (caller, pool, um1, um2, gw) = (
        UdpPeer::bind().await,
        UdpPeer::bind().await,
        UdpPeer::bind().await,
        UdpPeer::bind().await,
        UdpPeer::bind().await,
    );
    let config = format!(
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
             [sip]\nt1_ms = 50\ntarget_timeout_ms = 1000\nname = \"um-router.contoso.com\"\n[probes]\nenabled = false\n\
             [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\ndefault_next_hop = \"sip:{}\"\n\
             pstn_gateway = \"sip:{}\"\n[tenant.rerouting]\nenabled = true\nauto_attendant = \"+14255550150\"\n\
             subscriber_access = \"+14255550151\"\n",
        pool.addr, gw.addr
    );
    let directory = format!(
        "[[tenants.contoso.users]]\nsip = \"sip:bob@contoso.com\"\nline = \"tel:+14255550101\"\n\
             eum = \"eum:bob@contoso.com;phone-context=DP1\"\n\
             [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\n\
             servers = [{{ uri = \"sip:{}\" }}, {{ uri = \"sip:{}\" }}]\n",
        um1.addr, um2.addr
    );
    LabBuilder::new().config(&config).directory(&directory).start(Peers { caller, pool, um1, um2, gw }).await
}

/// Whether a datagram is waiting on `peer` (checked after the caller got its
/// final response: anything sent on the way there was sent before).
fn has_datagram(peer: &UdpPeer) -> bool {
    let mut buf = [0u8; 2048];
    peer.socket.try_recv_from(&mut buf).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_call_the_pool_refuses_keeps_its_486_and_is_not_rerouted() {
    let lab = lab().await;
    lab.caller.send(lab.router, &invite(lab.caller.addr, "sip:bob@contoso.com", "busy")).await;
    let (inv, from) = lab.pool.expect_request("INVITE").await;
    lab.pool.send(from, &response(&inv, 486, "pool", "Warning: 399 pool \"busy\"\r\n")).await;
    let r = lab.caller.final_response().await;
    assert_eq!(r.status(), Some(486), "{r:?}");
    assert_eq!(r.header("Warning"), Some("399 pool \"busy\""), "the pool's own response");
    assert_eq!(r.header("ms-diagnostics"), None);
    assert!(!has_datagram(&lab.gw), "the PSTN gateway was not tried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_call_nobody_answers_gets_408() {
    let lab = lab().await;
    lab.caller.send(lab.router, &invite(lab.caller.addr, "sip:bob@contoso.com", "silent")).await;
    let _ = lab.pool.expect_request("INVITE").await;
    let r = lab.caller.final_response().await;
    assert_eq!(r.status(), Some(408), "{r:?}");
    assert!(!has_datagram(&lab.gw));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_6xx_from_a_um_server_ends_the_search() {
    let lab = lab().await;
    lab.caller.send(lab.router, &invite(lab.caller.addr, "sip:bob@contoso.com;opaque=app:voicemail", "declined")).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    lab.um1.send(from, &response(&inv, 603, "um1", "")).await;
    let r = lab.caller.final_response().await;
    assert_eq!((r.status(), r.first(Name::CallId)), (Some(603), Some("declined")));
    assert!(!has_datagram(&lab.um2), "no next UM server");
    assert!(!has_datagram(&lab.gw), "no rerouting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voicemail_call_no_um_server_takes_is_rerouted_to_the_auto_attendant() {
    let lab = lab().await;
    lab.caller.send(lab.router, &invite(lab.caller.addr, "sip:bob@contoso.com;opaque=app:voicemail", "reroute")).await;
    for um in [&lab.um1, &lab.um2] {
        let (inv, from) = um.expect_request("INVITE").await;
        um.send(from, &response(&inv, 503, "um", "")).await;
    }
    let (inv, _) = lab.gw.expect_request("INVITE").await;
    assert_eq!(inv.request_uri().map(|u| u.starts_with("sip:+14255550150@")), Some(true), "{inv:?}");
    assert_eq!(inv.header("Diversion"), Some("<sip:bob@contoso.com>;reason=no-answer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routers_ms_diagnostics_name_their_source() {
    let lab = lab().await;
    lab.caller
        .send(lab.router, &invite(lab.caller.addr, "sip:nobody@contoso.com;opaque=app:voicemail", "unknown"))
        .await;
    let r = lab.caller.final_response().await;
    assert_eq!(r.status(), Some(404));
    let diagnostics = r.header("ms-diagnostics").expect("ms-diagnostics");
    assert!(diagnostics.starts_with("15004;reason="), "{diagnostics}");
    assert!(diagnostics.ends_with(";source=\"um-router.contoso.com\""), "{diagnostics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tel_request_uri_finds_its_tenant_by_the_to_domain() {
    let lab = lab().await;
    // bob's number, voice-mail-bound, To in contoso.com: his UM servers.
    let text = invite(lab.caller.addr, "tel:+14255550101;opaque=app:voicemail", "tel1")
        .replace("To: <tel:+14255550101>", "To: <sip:bob@contoso.com>");
    lab.caller.send(lab.router, &text).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    assert_eq!(inv.first(Name::CallId), Some("tel1"));
    assert_eq!(inv.header("Diversion"), Some("<sip:bob@contoso.com>;reason=no-answer"));
    lab.um1.send(from, &response(&inv, 200, "um1", "")).await;
    assert_eq!(lab.caller.final_response().await.status(), Some(200));
    // A tel: Request-URI whose To names no tenant's domain: 404.
    let text = invite(lab.caller.addr, "tel:+14255550101", "tel2")
        .replace("To: <tel:+14255550101>", "To: <sip:someone@northwind.example>");
    lab.caller.send(lab.router, &text).await;
    assert_eq!(lab.caller.final_response().await.status(), Some(404));
}

/// Answers every OPTIONS `peer` receives with `code`, until the test ends.
fn answer_options(peer: std::sync::Arc<UdpPeer>, code: u16) {
    tokio::spawn(async move {
        while let Some((m, from)) = peer.recv_within(std::time::Duration::from_secs(60)).await {
            if m.method() == Some("OPTIONS") {
                peer.send(from, &response(&m, code, "p", "")).await;
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_follow_the_directory_and_cover_the_hosted_edge() {
    use std::sync::Arc;
    let (edge, um1, um2) = (Arc::new(UdpPeer::bind().await), Arc::new(UdpPeer::bind().await), UdpPeer::bind().await);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("router.toml"),
        format!(
            "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
             [probes]\ninterval_ms = 50\ntimeout_ms = 500\ndown_after = 1\nup_after = 1\n\
             [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\nedge = \"sip:{}\"\n",
            edge.addr
        ),
    )
    .expect("write");
    let plan = |servers: &str| {
        format!(
            "[[tenants.contoso.users]]\nsip = \"sip:bob@contoso.com\"\neum = \"eum:bob@contoso.com;phone-context=DP1\"\n\
             [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{servers}]\n"
        )
    };
    let directory = dir.path().join("directory.toml");
    std::fs::write(&directory, plan(&format!("{{ uri = \"sip:{}\" }}", um1.addr))).expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("starts");
    // The edge answers its probes 503: marked down; um1 answers 200: up.
    answer_options(edge.clone(), 503);
    answer_options(um1.clone(), 200);
    let edge_uri = format!("sip:{}", edge.addr);
    exum_router_tests::until("the edge marked down", || !server.health.is_healthy(&edge_uri)).await;
    assert!(server.health.is_healthy(&format!("sip:{}", um1.addr)));
    // um2 added to the dial plan by a directory change: probed without a restart.
    std::fs::write(&directory, plan(&format!("{{ uri = \"sip:{}\" }}, {{ uri = \"sip:{}\" }}", um1.addr, um2.addr)))
        .expect("write");
    let (probe, _) = um2.expect_request("OPTIONS").await;
    assert_eq!(probe.request_uri(), Some(format!("sip:{}", um2.addr).as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_voice_mail_is_decided_again_as_a_voicemail_call() {
    let lab = lab().await;
    // An ordinary call to bob goes to the pool, which redirects it to his voice mail.
    lab.caller.send(lab.router, &invite(lab.caller.addr, "sip:bob@contoso.com", "vm302")).await;
    let (inv, from) = lab.pool.expect_request("INVITE").await;
    let contact = "Contact: <sip:bob@contoso.com;opaque=app:voicemail>\r\n";
    lab.pool.send(from, &response(&inv, 302, "pool", contact)).await;
    // The router decides it again: bob's UM server, with a Diversion naming him.
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    assert_eq!(inv.request_uri(), Some("sip:bob@contoso.com;opaque=app:voicemail"));
    assert_eq!(inv.header("Diversion"), Some("<sip:bob@contoso.com>;reason=no-answer"));
    assert_eq!(inv.first(Name::CallId), Some("vm302"));
    lab.um1.send(from, &response(&inv, 200, "um1", "")).await;
    let ok = lab.caller.final_response().await;
    assert_eq!((ok.status(), ok.first(Name::CallId)), (Some(200), Some("vm302")), "the same server transaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_redirects_to_voice_mail_stops() {
    let lab = lab().await;
    lab.caller.send(lab.router, &invite(lab.caller.addr, "sip:bob@contoso.com", "vmloop")).await;
    let (inv, from) = lab.pool.expect_request("INVITE").await;
    lab.pool.send(from, &response(&inv, 302, "pool", "Contact: <sip:bob@contoso.com;opaque=app:voicemail>\r\n")).await;
    // um1 keeps redirecting to voice-mail URIs: decided again once more, then
    // its redirects are not followed and um2 is tried.
    for n in 1..=2 {
        let (inv, from) = lab.um1.expect_request("INVITE").await;
        let contact = format!("Contact: <sip:bob@contoso.com;opaque=app:voicemail;n={n}>\r\n");
        lab.um1.send(from, &response(&inv, 302, "um1", &contact)).await;
    }
    let (inv, from) = lab.um2.expect_request("INVITE").await;
    lab.um2.send(from, &response(&inv, 200, "um2", "")).await;
    assert_eq!(lab.caller.final_response().await.status(), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_a_pool_redirecting_to_voice_mail_reaches_the_um_server() {
    use exum_router_tests::sipp::{sipp, sipp_address, uas};
    let (pool_at, um_at) = (sipp_address(), sipp_address());
    let caller = UdpPeer::bind().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("router.toml"),
        format!(
            "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
             [probes]\nenabled = false\n\
             [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\ndefault_next_hop = \"sip:{pool_at}\"\n"
        ),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("directory.toml"),
        format!(
            "[[tenants.contoso.users]]\nsip = \"sip:bob@contoso.com\"\neum = \"eum:bob@contoso.com;phone-context=DP1\"\n\
             [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:{um_at}\" }}]\n"
        ),
    )
    .expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("starts");
    let router = server.local_addr(Transport::Udp).expect("udp");
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp/uas-302-voicemail.xml");
    let mut pool = sipp()
        .arg("-sf")
        .arg(scenario)
        .args(["-i", &pool_at.ip().to_string(), "-p", &pool_at.port().to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "30s"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp pool starts");
    let mut um = uas(dir.path(), um_at).args(["-m", "1", "-timeout", "30s"]).spawn().expect("sipp UM starts");
    exum_router_tests::sipp::listening(&mut pool, pool_at).await;
    exum_router_tests::sipp::listening(&mut um, um_at).await;
    let id = "sipp302";
    caller.send(router, &request("INVITE", "sip:bob@contoso.com", caller.addr, "UDP", id, "z9hG4bK-sipp302")).await;
    let ok = caller.final_response().await;
    assert_eq!(ok.status(), Some(200), "the UM server answered the redirected call: {ok:?}");
    // End the call with the UM server, as sipp's UAS expects, straight to it (in
    // order: one socket to another on loopback). sipp answers the BYE to where
    // the call's INVITE came from, the router, which drops that stray response:
    // sipp's own exit status says whether the call completed.
    let to = ok.first(Name::To).expect("To").to_owned();
    let contact = ok.first(Name::Contact).and_then(|c| exum_router::model::uri::addr_spec(c).ok()).expect("Contact");
    let in_dialog = |method: &str, cseq: u32| {
        format!(
            "{method} {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-{method}{cseq}\r\nMax-Forwards: 70\r\n\
             From: <sip:caller@fabrikam.com>;tag=caller-{id}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            caller.addr
        )
    };
    caller.send(um_at, &in_dialog("ACK", 1)).await;
    caller.send(um_at, &in_dialog("BYE", 2)).await;
    let (pool_status, um_status) = tokio::task::spawn_blocking(move || (pool.wait(), um.wait())).await.expect("join");
    assert!(pool_status.expect("pool").success(), "the pool redirected one call");
    assert!(um_status.expect("um").success(), "the UM server completed the redirected call");
}
