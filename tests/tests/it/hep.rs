//! HEP capture: sngrep (Debian `sngrep`, listening for HEP with `-L` and
//! writing what it captured to a pcap file) as the real capture server of a
//! sipp call through the router, and a HEP receiver of the test's own,
//! decoding every packet, for the decision log events and the tenants'
//! shares.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use exum_router::hep::packet;
use exum_router::model::Transport;
use exum_router::server::Server;
use exum_router_tests::lab::{LabBuilder, invite};
use exum_router_tests::peer::UdpPeer;
use exum_router_tests::sipp::{listening, sipp_address};

/// A process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One SIP message as seen by the router: whether it received it, its first
/// line, Call-ID and CSeq.
type Seen = (bool, String, String, String);

/// The start line, Call-ID and CSeq of a SIP message's text.
fn describe(text: &str) -> (String, String, String) {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("").trim().to_owned();
    let header = |name: &str| {
        text.lines()
            .take_while(|l| !l.trim().is_empty())
            .find_map(|l| {
                l.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    (first, header("Call-ID"), header("CSeq"))
}

/// The messages in a sipp `-trace_msg` file, from the router's side: what
/// sipp sent the router received, and the other way round.
fn sipp_trace(path: &Path) -> Vec<Seen> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.split("----------------------------------------------- ")
        .filter_map(|block| {
            let (head, message) = block.split_once("\n\n")?;
            let sent_by_sipp = head.contains("message sent");
            let (first, call_id, cseq) = describe(message.trim_start());
            Some((sent_by_sipp, first, call_id, cseq))
        })
        .collect()
}

/// The SIP messages in sngrep's pcap file (Ethernet, IPv4, UDP frames it made
/// of the HEP packets), from the router's side.
fn sngrep_capture(path: &Path, router: SocketAddr) -> Vec<Seen> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() >= 24, "a pcap file");
    let mut at = 24;
    let mut seen = Vec::new();
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        let frame = &bytes[at + 16..at + 16 + len];
        at += 16 + len;
        assert_eq!(&frame[12..14], &[0x08, 0x00], "IPv4 frames");
        let ip = &frame[14..];
        let header = usize::from(ip[0] & 0x0f) * 4;
        assert_eq!(ip[9], 17, "UDP");
        let dst = SocketAddr::from((
            <[u8; 4]>::try_from(&ip[16..20]).expect("4 bytes"),
            u16::from_be_bytes([ip[header + 2], ip[header + 3]]),
        ));
        let text = String::from_utf8_lossy(&ip[header + 8..]);
        let (first, call_id, cseq) = describe(&text);
        seen.push((dst == router, first, call_id, cseq));
    }
    seen
}

/// Counts of each item.
fn tally(items: Vec<Seen>) -> BTreeMap<Seen, usize> {
    let mut out = BTreeMap::new();
    for i in items {
        *out.entry(i).or_insert(0) += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sngrep_captures_every_message_of_sipp_calls_through_the_router() {
    let found = Command::new("sngrep").arg("-V").stdout(Stdio::null()).status();
    assert!(found.is_ok(), "sngrep is not installed: `apt-get install -y sngrep` (scripts/test.sh does it)");
    const CALLS: u64 = 5;
    let (um_at, uac_at, hep_at) = (sipp_address(), sipp_address(), sipp_address());
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("capture.pcap");
    let mut sngrep = Killed(
        Command::new("sngrep")
            .args(["-N", "-q", "-L", &format!("udp:{hep_at}"), "-O"])
            .arg(&pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sngrep starts"),
    );
    listening(&mut sngrep.0, hep_at).await;
    std::fs::write(
        dir.path().join("router.toml"),
        format!(
            "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
             [probes]\nenabled = false\n\
             [hep]\naddress = \"{hep_at}\"\ncapture_id = 2001\nnode_name = \"router-under-test\"\n\
             [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\nrecord_route = true\npeers = [\"127.0.0.0/8\"]\n"
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
    std::fs::write(dir.path().join("users.csv"), "SEQUENTIAL\nbob;contoso.com\n").expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("router starts");
    let router = server.local_addr(Transport::Udp).expect("udp");
    let mut um = exum_router_tests::sipp::uas(dir.path(), um_at)
        .args(["-m", &CALLS.to_string(), "-timeout", "60s", "-trace_msg", "-message_file", "uas-messages.log"])
        .spawn()
        .expect("sipp UAS starts");
    listening(&mut um, um_at).await;
    let uac = exum_router_tests::sipp::uac(dir.path(), router, uac_at, CALLS, 10)
        .args(["-trace_msg", "-message_file", "uac-messages.log"])
        .spawn()
        .expect("sipp UAC starts");
    let (uac_out, um_status) =
        tokio::task::spawn_blocking(move || (uac.wait_with_output().expect("UAC ends"), um.wait().expect("UAS ends")))
            .await
            .expect("join");
    assert!(uac_out.status.success(), "sipp UAC: {}", String::from_utf8_lossy(&uac_out.stderr));
    assert!(um_status.success(), "sipp UAS: {um_status}");

    let mut expected = sipp_trace(&dir.path().join("uac-messages.log"));
    expected.extend(sipp_trace(&dir.path().join("uas-messages.log")));
    assert!(expected.len() >= CALLS as usize * 10, "sipp traced the calls: {expected:?}");
    // Every message, and one decision per call, sent to sngrep.
    let packets = (expected.len() + CALLS as usize) as u64;
    exum_router_tests::until("every HEP packet sent", || server.metrics.hep_sent.get() >= packets).await;
    assert_eq!(server.metrics.hep_sent.get(), packets, "one packet per message and per decision");
    // sngrep writes its pcap file out when interrupted.
    let stopped = Command::new("kill").args(["-INT", &sngrep.0.id().to_string()]).status().expect("kill");
    assert!(stopped.success());
    let status = tokio::task::spawn_blocking(move || {
        let status = sngrep.0.wait();
        (status, sngrep)
    });
    let (status, mut sngrep) = status.await.expect("join");
    let mut stderr = String::new();
    if let Some(mut e) = sngrep.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let out = (status.expect("sngrep ends"), stderr);
    assert!(out.0.success(), "sngrep: {} {}", out.0, out.1);
    // sngrep keeps the decision log events too (payloads that are not SIP).
    let (decisions, captured): (Vec<Seen>, Vec<Seen>) =
        sngrep_capture(&pcap, router).into_iter().partition(|(_, first, _, _)| first.starts_with('{'));
    assert_eq!(tally(captured), tally(expected), "sngrep captured each message the router received and sent");
    assert_eq!(decisions.len(), CALLS as usize, "a decision per call: {decisions:?}");
    assert!(decisions.iter().all(|(_, text, _, _)| text.contains("\"event\":\"decision\"")));
}

/// A HEP receiver: every packet that arrives on its socket, decoded.
struct Receiver {
    socket: tokio::net::UdpSocket,
}

/// A decoded packet, owned.
#[derive(Debug, Clone)]
struct Got {
    kind: u8,
    src: SocketAddr,
    dst: SocketAddr,
    capture_id: u32,
    auth_key: Option<String>,
    node_name: Option<String>,
    correlation: String,
    payload: String,
}

impl Receiver {
    async fn bind() -> Receiver {
        Receiver { socket: tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind") }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("addr")
    }

    /// Packets until one satisfies `last` (that one included).
    async fn until(&self, last: impl Fn(&Got) -> bool) -> Vec<Got> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(20), self.socket.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no more HEP packets; got {got:#?}"))
                .expect("recv");
            let (p, len) = packet::decode(&buf[..n]).expect("a HEPv3 packet");
            assert_eq!(len, n, "one packet per datagram");
            let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
            let g = Got {
                kind: p.kind,
                src: p.src,
                dst: p.dst,
                capture_id: p.capture_id,
                auth_key: text(p.auth_key),
                node_name: text(p.node_name),
                correlation: text(p.correlation).unwrap_or_default(),
                payload: String::from_utf8_lossy(p.payload).into_owned(),
            };
            let done = last(&g);
            got.push(g);
            if done {
                return got;
            }
        }
    }
}

#[tokio::test]
async fn decisions_are_log_events_beside_their_calls_and_each_tenant_has_its_share() {
    struct Peers {
        caller: UdpPeer,
        hep: Receiver,
    }
    let hep = Receiver::bind().await;
    let config = format!(
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [probes]\nenabled = false\n\
         [hep]\naddress = \"{}\"\ncapture_id = 77\nauth_key = \"homer-secret\"\nnode_name = \"edge-router-1\"\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n\
         [[tenant]]\nid = \"fabrikam\"\ndomains = [\"fabrikam.com\"]\nhep = false\n\
         [[tenant]]\nid = \"litware\"\ndomains = [\"litware.com\"]\nhep_share = 0.5\n",
        hep.addr()
    );
    let lab = LabBuilder::new().config(&config).start(Peers { caller: UdpPeer::bind().await, hep }).await;
    let router = lab.router;
    // Unknown users: each tenant's standard policy rejects the call (404).
    lab.caller.send(router, &invite(lab.caller.addr, "sip:nobody@fabrikam.com", "fab-1")).await;
    assert_eq!(lab.caller.final_response().await.status(), Some(404));
    lab.caller.send(router, &invite(lab.caller.addr, "sip:nobody@contoso.com", "con-1")).await;
    assert_eq!(lab.caller.final_response().await.status(), Some(404));
    let got = lab.hep.until(|g| g.correlation == "con-1" && g.payload.starts_with("SIP/2.0 404")).await;
    assert!(got.iter().all(|g| g.correlation != "fab-1"), "a tenant with hep = false is not captured: {got:#?}");
    assert!(got.iter().all(|g| g.capture_id == 77 && g.auth_key.as_deref() == Some("homer-secret")));
    assert!(got.iter().all(|g| g.node_name.as_deref() == Some("edge-router-1")));
    let kinds: Vec<(u8, String)> =
        got.iter().map(|g| (g.kind, g.payload.lines().next().unwrap_or("").to_owned())).collect();
    assert_eq!(kinds[0], (packet::SIP, "INVITE sip:nobody@contoso.com SIP/2.0".to_owned()), "{kinds:?}");
    assert_eq!(
        (got[0].src, got[0].dst),
        (lab.caller.addr, router),
        "the INVITE from the caller to the router's listener"
    );
    let log = got.iter().find(|g| g.kind == packet::LOG).expect("a decision log event");
    let decision: serde_json::Value = serde_json::from_str(&log.payload).expect("JSON");
    assert_eq!(decision["event"], "decision");
    assert_eq!(decision["tenant"], "contoso");
    assert_eq!(decision["policy"], "standard");
    assert_eq!(decision["decided_by"]["by"], "standard", "{decision}");
    assert_eq!(decision["decision"]["Reject"]["code"], 404, "{decision}");
    assert_eq!(log.correlation, "con-1");
    let final_404 = got.last().expect("the 404");
    assert_eq!((final_404.src, final_404.dst), (router, lab.caller.addr), "sent by the router to the caller");
    let trying = got.iter().position(|g| g.payload.starts_with("SIP/2.0 100")).expect("100 Trying captured");
    assert!(trying < got.len() - 1);

    // litware captures half of its calls, by Call-ID: each call whole or not at all.
    for i in 0..40 {
        let id = format!("lit-{i}");
        lab.caller.send(router, &invite(lab.caller.addr, "sip:nobody@litware.com", &id)).await;
        assert_eq!(lab.caller.final_response().await.status(), Some(404));
        // The ACK for the 404 is received and captured too (when the call is).
        let ack = format!(
            "ACK sip:nobody@litware.com SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-{id};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:caller@fabrikam.com>;tag=caller-{id}\r\nTo: <sip:nobody@litware.com>\r\nCall-ID: {id}\r\n\
             CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            lab.caller.addr
        );
        lab.caller.send(router, &ack).await;
    }
    // A last contoso call marks the end: what litware's calls sent came before it.
    lab.caller.send(router, &invite(lab.caller.addr, "sip:nobody@contoso.com", "con-2")).await;
    assert_eq!(lab.caller.final_response().await.status(), Some(404));
    let got = lab.hep.until(|g| g.correlation == "con-2" && g.payload.starts_with("SIP/2.0 404")).await;
    let mut per_call: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in got.iter().filter(|g| g.correlation.starts_with("lit-")) {
        let what =
            if g.kind == packet::LOG { "log".to_owned() } else { g.payload.lines().next().unwrap_or("").to_owned() };
        per_call.entry(g.correlation.clone()).or_default().push(what);
    }
    assert!((5..=35).contains(&per_call.len()), "about half of 40 calls captured: {}", per_call.len());
    for (id, messages) in &per_call {
        assert_eq!(
            messages.iter().map(|m| m.split(' ').take(2).collect::<Vec<_>>().join(" ")).collect::<Vec<_>>(),
            ["INVITE sip:nobody@litware.com", "SIP/2.0 100", "log", "SIP/2.0 404", "ACK sip:nobody@litware.com"],
            "call {id} captured whole"
        );
    }
    assert_eq!(
        lab.server.metrics.hep_dropped.get_or_create(&exum_router::metrics::ReasonLabel { reason: "queue_full" }).get(),
        0
    );
}
