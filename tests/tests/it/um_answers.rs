//! What a UM server's answers do to a call: a UM server that rings is waited
//! for beyond its `timeout_ms` (the time to its first response) under Timer C;
//! when every UM server failed, the caller's 480 says which answered what; a
//! UM server a reload removed leaves the metrics.

use std::time::Duration;

use exum_router_tests::LabBuilder;
use exum_router_tests::lab::invite;
use exum_router_tests::peer::{UdpPeer, response};

struct Peers {
    caller: UdpPeer,
    um1: UdpPeer,
    um2: UdpPeer,
}

type Lab = exum_router_tests::Lab<Peers>;

/// Tenant contoso (no voice-mail rerouting) whose user bob's dial plan has
/// `um1` and `um2`, 300 ms each to their first response; Timer C 1500 ms;
/// `probes` is the `[probes]` section's body.
async fn lab(probes: &str) -> Lab {
    let (caller, um1, um2) = (UdpPeer::bind().await, UdpPeer::bind().await, UdpPeer::bind().await);
    let builder = LabBuilder::new().config(&format!(
        r#"directory = "directory.toml"
[[listen]]
address = "127.0.0.1:0"
transports = ["udp"]
[sip]
t1_ms = 50
timer_c_ms = 1500
[admin]
address = "127.0.0.1:0"
[probes]
{probes}
[[tenant]]
id = "contoso"
domains = ["contoso.com"]
"#
    ));
    builder.directory(&directory(&[&um1, &um2])).start(Peers { caller, um1, um2 }).await
}

/// The directory: bob on a dial plan whose UM servers are `servers`.
fn directory(servers: &[&UdpPeer]) -> String {
    let servers: Vec<String> =
        servers.iter().map(|s| format!("{{ uri = \"sip:{}\", timeout_ms = 300 }}", s.addr)).collect();
    format!(
        r#"[[tenants.contoso.users]]
sip = "sip:bob@contoso.com"
eum = "eum:bob@contoso.com;phone-context=DP1"
[[tenants.contoso.dial_plans]]
name = "DP1"
phone_context = "DP1"
servers = [{}]
"#,
        servers.join(", ")
    )
}

const BOB: &str = "sip:bob@contoso.com;opaque=app:voicemail";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_um_server_that_rings_is_not_cut_at_its_timeout_and_its_answer_reaches_the_caller() {
    let lab = lab("enabled = false").await;
    lab.caller.send(lab.router, &invite(lab.caller.addr, BOB, "rings")).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    lab.um1.send(from, &response(&inv, 180, "um1", "")).await;
    lab.caller.expect_response(180).await;
    // The UM server rings well past its 300 ms to a first response: the
    // router sends nothing meanwhile (no CANCEL), then relays its answer.
    let meanwhile = lab.um1.recv_within(Duration::from_millis(900)).await;
    assert!(
        meanwhile.is_none(),
        "the ringing UM server got {:?}",
        meanwhile.map(|(m, _)| m.method().map(str::to_owned))
    );
    lab.um1.send(from, &response(&inv, 200, "um1", "Contact: <sip:um1@127.0.0.1>\r\n")).await;
    let ok = lab.caller.final_response().await;
    assert_eq!(ok.status(), Some(200), "{:?}", ok.header("ms-diagnostics"));
    lab.server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_c_cancels_a_target_that_rings_forever_and_the_480_names_what_each_target_did() {
    let lab = lab("enabled = false").await;
    lab.caller.send(lab.router, &invite(lab.caller.addr, BOB, "timer-c")).await;
    let (inv, from) = lab.um1.expect_request("INVITE").await;
    lab.um1.send(from, &response(&inv, 180, "um1", "")).await;
    // Timer C (1500 ms) runs out: the router cancels um1 and tries um2.
    let (cancel, _) = lab.um1.expect_request("CANCEL").await;
    lab.um1.send(from, &response(&cancel, 200, "um1", "")).await;
    lab.um1.send(from, &response(&inv, 487, "um1", "")).await;
    let (inv2, from2) = lab.um2.expect_request("INVITE").await;
    // um2 cannot take the SDP.
    let not_acceptable = response(&inv2, 488, "um2", "").replace("488 Reason", "488 Not Acceptable Here");
    lab.um2.send(from2, &not_acceptable).await;
    let answer = lab.caller.final_response().await;
    assert_eq!(answer.status(), Some(480), "as Lyncs do when every UM server failed");
    let diagnostics = answer.header("ms-diagnostics").expect("ms-diagnostics");
    assert!(diagnostics.starts_with("15030;"), "{diagnostics}");
    let warning = answer.header("Warning").expect("a Warning naming each target");
    for said in [format!("sip:{} timeout", lab.um1.addr), format!("sip:{} 488 Not Acceptable Here", lab.um2.addr)] {
        assert!(warning.contains(&said), "{warning} lacks {said}");
        assert!(diagnostics.contains(&said), "{diagnostics} lacks {said}");
    }
    lab.server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_um_server_removed_by_a_reload_leaves_the_up_metric() {
    // Probes every 100 ms; the UM servers never answer them (marked down).
    let lab = lab("interval_ms = 100\ntimeout_ms = 50\ndown_after = 1").await;
    let admin = lab.server.admin_addr().expect("admin API");
    let series = |um: &UdpPeer| format!("exum_um_server_up{{server=\"sip:{}\"}}", um.addr);
    let metrics = || async { exum_router_tests::http_get(admin, "/metrics").await };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = metrics().await;
        if m.contains(&series(&lab.um1)) && m.contains(&series(&lab.um2)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "both UM servers probed: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(lab.path().join("directory.toml"), directory(&[&lab.um1])).expect("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = metrics().await;
        if !m.contains(&series(&lab.um2)) {
            assert!(m.contains(&series(&lab.um1)), "the remaining UM server keeps its series: {m}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "um2's series still there after the reload: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lab.server.stop();
}
