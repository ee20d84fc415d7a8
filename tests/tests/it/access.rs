//! Access control over real sockets: a listener's `allow` list (requests from
//! other peers get 403, their responses are dropped) and a tenant's `peers`.

use exum_router::model::wire::Name;
use exum_router_tests::LabBuilder;
use exum_router_tests::lab::invite;
use exum_router_tests::peer::{UdpPeer, response};

struct Peers {
    um: UdpPeer,
}

type Lab = exum_router_tests::Lab<Peers>;

/// A router whose listener allows `allow` (one receiving task: datagrams are
/// handled in the order sent) and whose tenant `litware` takes
/// requests from `litware_peers` only; both tenants' users are on `um`.
async fn lab(allow: &str, litware_peers: &str) -> Lab {
    let um = UdpPeer::bind().await;
    let config = format!(
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\nallow = {allow}\n\
         [sip]\nudp_receivers = 1\n[probes]\nenabled = false\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n\
         [[tenant]]\nid = \"litware\"\ndomains = [\"litware.com\"]\npeers = {litware_peers}\n"
    );
    let directory = format!(
        "[[tenants.contoso.users]]\nsip = \"sip:bob@contoso.com\"\neum = \"eum:bob@contoso.com;phone-context=DP1\"\n\
         [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:{um}\" }}]\n\
         [[tenants.litware.users]]\nsip = \"sip:ivan@litware.com\"\neum = \"eum:ivan@litware.com;phone-context=DPL\"\n\
         [[tenants.litware.dial_plans]]\nname = \"DPL\"\nphone_context = \"DPL\"\nservers = [{{ uri = \"sip:{um}\" }}]\n",
        um = um.addr
    );
    LabBuilder::new().config(&config).directory(&directory).start(Peers { um }).await
}

const BOB: &str = "sip:bob@contoso.com;opaque=app:voicemail";
const IVAN: &str = "sip:ivan@litware.com;opaque=app:voicemail";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_answers_only_the_peers_it_allows() {
    let lab = lab("[\"127.0.0.1/32\"]", "[]").await;
    let allowed = UdpPeer::bind().await;
    let outsider = UdpPeer::bind_on("127.0.0.2:0".parse().expect("addr")).await;
    // The outsider's request: 403, counted, never forwarded.
    outsider.send(lab.router, &invite(outsider.addr, BOB, "out1")).await;
    let refused = outsider.final_response().await;
    assert_eq!((refused.status(), refused.first(Name::CallId)), (Some(403), Some("out1")));
    assert_eq!(lab.server.metrics.access_refused_of("listener"), 1);
    // An allowed caller's call is routed; the outsider's forged failure response
    // for its branch is dropped, and the UM server's own answer goes through.
    allowed.send(lab.router, &invite(allowed.addr, BOB, "in1")).await;
    let (inv, from) = lab.um.expect_request("INVITE").await;
    assert_eq!(inv.first(Name::CallId), Some("in1"), "the outsider's INVITE never reached the UM server");
    outsider.send(lab.router, &response(&inv, 486, "forged", "")).await;
    lab.um.send(from, &response(&inv, 200, "um", "")).await;
    let answer = allowed.final_response().await;
    assert_eq!((answer.status(), answer.first(Name::CallId)), (Some(200), Some("in1")));
    assert_eq!(lab.server.metrics.access_refused_of("listener"), 2, "the forged response counted");
    let metrics = lab.server.proxy.metrics.encode();
    assert!(metrics.contains("exum_sip_access_refused_total{reason=\"listener\"} 2"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_takes_new_requests_from_its_peers_only() {
    let lab = lab("[]", "[\"127.0.0.2/32\"]").await;
    let stranger = UdpPeer::bind().await;
    let peer = UdpPeer::bind_on("127.0.0.2:0".parse().expect("addr")).await;
    stranger.send(lab.router, &invite(stranger.addr, IVAN, "t1")).await;
    let refused = stranger.final_response().await;
    assert_eq!((refused.status(), refused.first(Name::CallId)), (Some(403), Some("t1")));
    assert!(refused.header("Warning").is_some_and(|w| w.contains("not a peer of this tenant")), "{refused:?}");
    // The tenant's peer is routed; another tenant without `peers` takes anyone.
    peer.send(lab.router, &invite(peer.addr, IVAN, "t2")).await;
    let (inv, _) = lab.um.expect_request("INVITE").await;
    assert_eq!(inv.first(Name::CallId), Some("t2"));
    stranger.send(lab.router, &invite(stranger.addr, BOB, "t3")).await;
    let (inv, _) = lab.um.expect_request("INVITE").await;
    assert_eq!(inv.first(Name::CallId), Some("t3"));
    let metrics = lab.server.proxy.metrics.encode();
    assert!(metrics.contains("exum_sip_access_refused_total{reason=\"tenant\"} 1"), "{metrics}");
}

#[test]
fn bad_networks_in_the_configuration_name_their_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("router.toml");
    let config =
        "directory = \"d.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\nallow = [\"10.0.0.0/8\", \"10.0.0.1/8\"]\n";
    std::fs::write(&path, config).expect("write");
    let e = exum_router::control::config::RouterConfig::load(&path).expect_err("refused").to_string();
    assert!(e.contains("listen[0].allow[1]") && e.contains("host bits"), "{e}");
    let config = "directory = \"d.toml\"\n[[tenant]]\nid = \"a\"\ndomains = [\"a.com\"]\npeers = [\"nowhere\"]\n";
    std::fs::write(&path, config).expect("write");
    let e = exum_router::control::config::RouterConfig::load(&path).expect_err("refused").to_string();
    assert!(e.contains("tenant[0].peers[0]") && e.contains("not an IP"), "{e}");
}
