//! RFC 3263 resolution against a DNS server on loopback (`exum_router_tests::dns`):
//! SRV by priority with failover to the next record when an address does not
//! answer, NAPTR choosing the transport, and static hosts from configuration.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;

use exum_router::model::wire::Name;
use exum_router_tests::LabBuilder;
use exum_router_tests::dns::{self, a, naptr, srv};
use exum_router_tests::lab::invite;
use exum_router_tests::peer::{TcpPeer, UdpPeer, response};

const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

struct Peers {
    caller: UdpPeer,
}

type Lab = exum_router_tests::Lab<Peers>;

const BOB: &str = "sip:bob@contoso.com;opaque=app:voicemail";

/// A router resolving through `dns` (and `[dns] hosts` from `hosts`), whose
/// user bob's UM server is `um`.
async fn lab(dns: SocketAddr, hosts: &str, um: &str) -> Lab {
    let caller = UdpPeer::bind().await;
    let config = format!(
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\", \"tcp\"]\n\
         [sip]\nt1_ms = 50\n[probes]\nenabled = false\n[dns]\nservers = [\"{dns}\"]\n{hosts}\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n"
    );
    let directory = format!(
        "[[tenants.contoso.users]]\nsip = \"sip:bob@contoso.com\"\neum = \"eum:bob@contoso.com;phone-context=DP1\"\n\
         [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"{um}\", timeout_ms = 400 }}]\n"
    );
    LabBuilder::new().config(&config).directory(&directory).start(Peers { caller }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_by_priority_and_failover_to_the_next_when_one_is_silent() {
    // The preferred record points to a port where nothing answers; the next one to the UM server.
    let um = UdpPeer::bind().await;
    let silent = UdpPeer::bind().await; // bound, so no ICMP error: it just never answers
    let server = dns::serve(vec![
        srv("_sip._udp.um.contoso.test", 10, 1, silent.addr.port(), "first.contoso.test"),
        srv("_sip._udp.um.contoso.test", 20, 1, um.addr.port(), "second.contoso.test"),
        a("first.contoso.test", LOCAL),
        a("second.contoso.test", LOCAL),
    ])
    .await;
    let lab = lab(server.addr, "", "sip:um.contoso.test;transport=udp").await;
    lab.caller.send(lab.router, &invite(lab.caller.addr, BOB, "srv1")).await;
    // The first record gets the INVITE first (priority 10) and stays silent.
    let (first, _) = silent.expect_request("INVITE").await;
    assert_eq!(first.first(Name::CallId), Some("srv1"));
    let (inv, from) = um.expect_request("INVITE").await;
    assert_eq!(inv.first(Name::CallId), Some("srv1"), "failed over to the priority-20 record");
    um.send(from, &response(&inv, 200, "um", "")).await;
    let ok = lab.caller.final_response().await;
    assert_eq!((ok.status(), ok.first(Name::CallId)), (Some(200), Some("srv1")));
    assert!(server.queries.load(Ordering::Relaxed) >= 2, "SRV and A were asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naptr_chooses_the_transport() {
    // NAPTR says TCP (SIP+D2T) is preferred to UDP; the UM server listens on TCP.
    let um = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = um.local_addr().expect("addr").port();
    let server = dns::serve(vec![
        naptr("naptr.contoso.test", 10, 10, "SIP+D2T", "_sip._tcp.naptr.contoso.test"),
        naptr("naptr.contoso.test", 20, 10, "SIP+D2U", "_sip._udp.naptr.contoso.test"),
        srv("_sip._tcp.naptr.contoso.test", 10, 1, port, "um-tcp.contoso.test"),
        a("um-tcp.contoso.test", LOCAL),
    ])
    .await;
    let lab = lab(server.addr, "", "sip:naptr.contoso.test").await;
    lab.caller.send(lab.router, &invite(lab.caller.addr, BOB, "naptr1")).await;
    let (stream, _) = tokio::time::timeout(std::time::Duration::from_secs(5), um.accept())
        .await
        .expect("the router connects over TCP")
        .expect("accept");
    let mut um = TcpPeer::from_stream(stream);
    let inv = um.recv_within(std::time::Duration::from_secs(5)).await.expect("the INVITE over TCP");
    assert_eq!((inv.method(), inv.first(Name::CallId)), (Some("INVITE"), Some("naptr1")));
    assert!(inv.top_via().is_some_and(|v| v.transport == "TCP"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_hosts_come_before_dns() {
    let um = UdpPeer::bind().await;
    // The DNS server knows nothing; the configuration names the host.
    let server = dns::serve(vec![]).await;
    let lab = lab(
        server.addr,
        "[dns.hosts]\n\"um.static.test\" = [\"127.0.0.1\"]\n",
        &format!("sip:um.static.test:{}", um.addr.port()),
    )
    .await;
    lab.caller.send(lab.router, &invite(lab.caller.addr, BOB, "static1")).await;
    let (inv, _) = um.expect_request("INVITE").await;
    assert_eq!(inv.first(Name::CallId), Some("static1"));
    assert_eq!(server.queries.load(Ordering::Relaxed), 0, "no DNS query for a static host");
}
