//! Conformance to [MS-EUMR] 3.1.5 (routing to Exchange UM) and [MS-SIPRE]
//! (voice-mail GRUU, `Ms-Sensitivity`): the headers of an INVITE to a UM
//! server, as `simulate` shows them on the example deployment, and over
//! loopback the order of UM servers (versions, round robin) and the retries.

use std::net::SocketAddr;

use exum_router::model::wire::Name;
use exum_router::tools::{self, SimulateOptions};
use exum_router_tests::lab::invite;
use exum_router_tests::peer::{UdpPeer, response};
use exum_router_tests::{LabBuilder, deployment_config, workspace};

/// An example request file with `extra` header lines added after its Call-ID.
fn example(name: &str, extra: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(workspace().join("examples/deployment/requests").join(name)).expect("request");
    let (head, rest) = text.split_once("CSeq:").expect("a CSeq");
    format!("{head}{extra}CSeq:{rest}").into_bytes()
}

/// What `simulate` forwards for `request`: the forwarded request's text.
fn forwarded(name: &str, request: &[u8]) -> String {
    let out = tools::simulate(&deployment_config(), name, request, &SimulateOptions::default()).expect("simulates");
    out.split_once("--- forwarded to ").map(|(_, f)| f.to_owned()).unwrap_or_else(|| panic!("not forwarded: {out}"))
}

/// The values of header `name` in a forwarded request's text.
fn header<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

const GRUU: &str = "<sip:avedge.contoso.com@contoso.com;gruu;opaque=srvr:MRAS:q3V0Ayt4k0uWdm9kOeFOoAAA>";

#[test]
fn an_invite_to_a_um_server_supports_ms_fe_and_carries_the_a_v_edge_gruu() {
    // contoso has an A/V Edge: its GRUU replaces the caller's Ms-Mras-Address.
    let bob =
        example("bob-on-premises.sip", "Supported: timer, 100rel\r\nMs-Mras-Address: <sip:stale@contoso.com>\r\n");
    let out = forwarded("bob", &bob);
    assert_eq!(header(&out, "Supported"), ["timer, 100rel, ms-fe"], "{out}");
    assert_eq!(header(&out, "Ms-Mras-Address"), [GRUU], "{out}");
    // ms-fe once, whatever case the caller wrote it in.
    let out = forwarded("bob", &example("bob-on-premises.sip", "Supported: MS-FE\r\n"));
    assert_eq!(header(&out, "Supported"), ["MS-FE"], "{out}");
    // litware has none: the caller's is kept (the secondary source), and a
    // call without one gets none.
    let ivan = example("ivan-on-premises.sip", "Ms-Mras-Address: <sip:edge-mras@litware.com;gruu>\r\n");
    let out = forwarded("ivan", &ivan);
    assert_eq!(header(&out, "Ms-Mras-Address"), ["<sip:edge-mras@litware.com;gruu>"], "{out}");
    assert_eq!(header(&out, "Supported"), ["ms-fe"], "{out}");
    let out = forwarded("ivan", &example("ivan-on-premises.sip", ""));
    assert!(header(&out, "Ms-Mras-Address").is_empty(), "{out}");
    // A hosted call goes to the provider's proxy, not to a UM server: no edits.
    let out = forwarded("alice", &example("alice-hosted.sip", "Supported: timer\r\n"));
    assert_eq!(header(&out, "Supported"), ["timer"], "{out}");
    assert!(header(&out, "Ms-Mras-Address").is_empty(), "{out}");
}

#[test]
fn only_the_highest_exchange_version_of_a_dial_plan_is_tried() {
    // DP-Redmond lists an Exchange 2010 server first; calls never go to it.
    let out =
        tools::simulate(&deployment_config(), "bob", &example("bob-on-premises.sip", ""), &SimulateOptions::default())
            .expect("simulates");
    assert!(out.contains("sip:um1.redmond.contoso.com:5061;transport=tls, then sip:um2"), "{out}");
    assert!(!out.contains("um-2010"), "{out}");
}

/// Peers standing in for UM servers, and the caller.
struct Peers {
    caller: UdpPeer,
    ums: Vec<UdpPeer>,
}

type Lab = exum_router_tests::Lab<Peers>;

/// A router whose contoso has one dial plan over `servers` UM servers, the
/// `n`th with `versions[n]`, ordered by `selection`; bob and a contact on it.
async fn lab(versions: &[Option<u32>], selection: &str) -> Lab {
    let caller = UdpPeer::bind().await;
    let mut ums = Vec::new();
    for _ in versions {
        ums.push(UdpPeer::bind().await);
    }
    let servers: Vec<String> = ums
        .iter()
        .zip(versions)
        .map(|(p, v)| match v {
            Some(v) => format!("{{ uri = \"sip:{}\", timeout_ms = 2000, version = {v} }}", p.addr),
            None => format!("{{ uri = \"sip:{}\", timeout_ms = 2000 }}", p.addr),
        })
        .collect();
    let config = "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
                  [sip]\nt1_ms = 50\n[probes]\nenabled = false\n\
                  [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n";
    let directory = format!(
        "[[tenants.contoso.users]]\nsip = \"sip:bob@contoso.com\"\neum = \"eum:bob@contoso.com;phone-context=DP1\"\n\
         [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nselection = \"{selection}\"\n\
         servers = [{}]\n",
        servers.join(", ")
    );
    LabBuilder::new().config(config).directory(&directory).start(Peers { caller, ums }).await
}

const BOB: &str = "sip:bob@contoso.com;opaque=app:voicemail";

/// Which UM server (its index) the call `id`'s INVITE reaches first; it is
/// answered with `code`.
async fn first_reached(lab: &Lab, id: &str, code: u16) -> usize {
    lab.caller.send(lab.router, &invite(lab.caller.addr, BOB, id)).await;
    let reached = tokio::select! {
        r = reach(&lab.ums[0], id) => (0, r),
        r = reach(&lab.ums[1], id) => (1, r),
        r = reach(&lab.ums[2], id) => (2, r),
    };
    let (i, (inv, from)) = reached;
    lab.ums[i].send(from, &response(&inv, code, "um", "")).await;
    i
}

/// The INVITE of call `id` at `peer`.
async fn reach(peer: &UdpPeer, id: &str) -> (exum_router::model::wire::Message, SocketAddr) {
    loop {
        let (m, from) = peer.expect_request("INVITE").await;
        if m.first(Name::CallId) == Some(id) {
            return (m, from);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_calls_over_the_servers_and_keeps_one_order_per_call() {
    let lab = lab(&[Some(15), Some(15), Some(15)], "round-robin").await;
    let mut firsts = [0usize; 3];
    for n in 0..12 {
        let id = format!("rr-{n}");
        let i = first_reached(&lab, &id, 200).await;
        assert_eq!(lab.caller.final_response().await.status(), Some(200));
        firsts[i] += 1;
        // The same call again (a new transaction of the same Call-ID, as
        // after a redirect) starts at the same server.
        let second = invite(lab.caller.addr, BOB, &id)
            .replace("CSeq: 1 ", "CSeq: 2 ")
            .replace(&format!("z9hG4bK-{id}"), &format!("z9hG4bK-{id}-again"));
        lab.caller.send(lab.router, &second).await;
        let (again, (inv, from)) = tokio::select! {
            r = reach(&lab.ums[0], &id) => (0, r),
            r = reach(&lab.ums[1], &id) => (1, r),
            r = reach(&lab.ums[2], &id) => (2, r),
        };
        lab.ums[again].send(from, &response(&inv, 200, "um", "")).await;
        assert_eq!(lab.caller.final_response().await.status(), Some(200));
        assert_eq!(again, i, "one Call-ID, one order");
    }
    assert!(firsts.iter().all(|&n| n > 0), "every server starts some calls: {firsts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_failure_of_a_um_server_moves_on_and_a_lower_version_is_never_tried() {
    // Server 0 is Exchange 2010: never tried. Servers 1 and 2 answer with
    // failures [MS-EUMR] retries after, a challenge included.
    let lab = lab(&[Some(14), Some(15), Some(15)], "ordered").await;
    for (n, (first, second)) in [(401, 503), (407, 404), (500, 486)].into_iter().enumerate() {
        let id = format!("retry-{n}");
        lab.caller.send(lab.router, &invite(lab.caller.addr, BOB, &id)).await;
        let (inv, from) = reach(&lab.ums[1], &id).await;
        lab.ums[1].send(from, &response(&inv, first, "um1", "")).await;
        // The next UM server is tried (a relayed failure would leave it waiting).
        let next = tokio::time::timeout(std::time::Duration::from_secs(20), reach(&lab.ums[2], &id));
        let (inv, from) = next.await.unwrap_or_else(|_| panic!("{first} from the first UM server ended the search"));
        lab.ums[2].send(from, &response(&inv, second, "um2", "")).await;
        let answer = lab.caller.final_response().await;
        assert_eq!(answer.status(), Some(480), "all UM servers tried: 480 ({first}, {second})");
        let diagnostics = answer.header("ms-diagnostics").unwrap_or_default();
        assert!(diagnostics.starts_with("15030;"), "{diagnostics}");
        assert!(lab.ums[0].try_recv().is_none(), "the Exchange 2010 server is never tried");
    }
}

#[test]
fn a_call_that_may_not_be_diverted_is_not_rerouted_to_voice_mail() {
    // bob's UM servers all fail: normally rerouted to the auto attendant over
    // the PSTN (contoso enables rerouting) ...
    let fail_all = SimulateOptions { fail_all: true, ..Default::default() };
    let out = tools::simulate(&deployment_config(), "bob", &example("bob-on-premises.sip", ""), &fail_all)
        .expect("simulates");
    assert!(out.contains("sip:+14255550150@gw.contoso.com;user=phone"), "{out}");
    // ... but not a call marked no-diversion, in either form and any case.
    for value in ["normal-no-diversion", "Private-No-Diversion"] {
        let bob = example("bob-on-premises.sip", &format!("Ms-Sensitivity: {value}\r\n"));
        let out = tools::simulate(&deployment_config(), "bob", &bob, &fail_all).expect("simulates");
        let after = out.split_once("on-failure").map(|(_, a)| a).unwrap_or_default();
        assert!(!after.contains("gw.contoso.com"), "{out}");
        assert!(after.contains("480") && after.contains("15030;"), "{out}");
    }
    // normal and private are ordinary calls.
    let bob = example("bob-on-premises.sip", "Ms-Sensitivity: private\r\n");
    let out = tools::simulate(&deployment_config(), "bob", &bob, &fail_all).expect("simulates");
    assert!(out.contains("sip:+14255550150@gw.contoso.com;user=phone"), "{out}");
}

#[test]
fn the_standard_algorithm_s_diagnostics_name_the_exum_routing_application() {
    let out = tools::simulate(
        &deployment_config(),
        "carol",
        &example("carol-not-enabled.sip", ""),
        &SimulateOptions::default(),
    )
    .expect("simulates");
    assert!(
        out.contains("ms-diagnostics: 15000;reason=\"User is not enabled for Unified Messaging\";appName=\"ExumRouting\";source=\""),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ms_sensitivity_is_checked_and_a_redirect_to_voice_mail_of_a_no_diversion_call_goes_to_the_caller() {
    let caller = UdpPeer::bind().await;
    let (pool, um) = (UdpPeer::bind().await, UdpPeer::bind().await);
    let config = format!(
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [sip]\nt1_ms = 50\n[probes]\nenabled = false\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\ndefault_next_hop = \"sip:{}\"\n",
        pool.addr
    );
    let directory = format!(
        "[[tenants.contoso.users]]\nsip = \"sip:bob@contoso.com\"\neum = \"eum:bob@contoso.com;phone-context=DP1\"\n\
         [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:{}\" }}]\n",
        um.addr
    );
    let lab =
        LabBuilder::new().config(&config).directory(&directory).start(Peers { caller, ums: vec![pool, um] }).await;
    let with = |id: &str, headers: &str| {
        invite(lab.caller.addr, "sip:bob@contoso.com", id)
            .replace("Content-Length:", &format!("{headers}Content-Length:"))
    };
    // A value [MS-SIPRE] does not define, or the header twice: 400 naming it.
    for (id, headers) in [
        ("bad-value", "Ms-Sensitivity: secret\r\n"),
        ("twice", "Ms-Sensitivity: normal\r\nMs-Sensitivity: private\r\n"),
    ] {
        lab.caller.send(lab.router, &with(id, headers)).await;
        let answer = lab.caller.final_response().await;
        assert_eq!(answer.status(), Some(400), "{id}");
        assert!(answer.header("Warning").unwrap_or_default().contains("Ms-Sensitivity"), "{id}: {answer:?}");
    }
    // The pool redirects the no-diversion call to bob's voice mail: the
    // caller gets that 302 and the UM server nothing.
    lab.caller.send(lab.router, &with("nodiv", "Ms-Sensitivity: normal-no-diversion\r\n")).await;
    let (inv, from) = lab.ums[0].expect_request("INVITE").await;
    let contact = "Contact: <sip:bob@contoso.com;opaque=app:voicemail>\r\n";
    lab.ums[0].send(from, &response(&inv, 302, "pool", contact)).await;
    let answer = lab.caller.final_response().await;
    assert_eq!(answer.status(), Some(302));
    assert_eq!(answer.first(Name::Contact), Some("<sip:bob@contoso.com;opaque=app:voicemail>"));
    assert!(lab.ums[1].try_recv().is_none(), "not diverted to the UM server");
}

#[test]
fn both_voice_mail_gruu_forms_are_voice_mail_calls_whatever_their_parameters() {
    // [MS-SIPRE] 2.2.3: `;gruu;opaque=app:voicemail` and `;opaque=app:voicemail`,
    // the parameters in either order, others beside them, any case.
    for ruri in [
        "sip:bob@contoso.com;opaque=app:voicemail",
        "sip:bob@contoso.com;gruu;opaque=app:voicemail",
        "sip:bob@contoso.com;opaque=app:voicemail;gruu",
        "sip:bob@contoso.com;transport=tls;gruu;opaque=app:voicemail;x-lync=1",
        "sip:bob@contoso.com;x-lync=1;opaque=APP:VoiceMail;gruu;transport=tls",
        "sip:bob@contoso.com:5061;maddr=10.0.0.1;OPAQUE=app:voicemail",
    ] {
        let bob = String::from_utf8(example("bob-on-premises.sip", "")).expect("utf8");
        let bob = bob.replacen("sip:bob@contoso.com;opaque=app:voicemail", ruri, 1);
        let out = tools::simulate(&deployment_config(), "bob", bob.as_bytes(), &SimulateOptions::default())
            .expect("simulates");
        assert!(out.contains("sip:um1.redmond.contoso.com:5061;transport=tls, then sip:um2"), "{ruri}: {out}");
        assert!(out.contains("Diversion: <sip:bob@contoso.com>;reason=no-answer"), "{ruri}: {out}");
    }
    // Without the opaque parameter, a gruu alone is an ordinary call.
    let bob = String::from_utf8(example("bob-on-premises.sip", "")).expect("utf8");
    let bob = bob.replacen("sip:bob@contoso.com;opaque=app:voicemail", "sip:bob@contoso.com;gruu", 1);
    let out =
        tools::simulate(&deployment_config(), "bob", bob.as_bytes(), &SimulateOptions::default()).expect("simulates");
    assert!(!out.contains("um1.redmond"), "{out}");
}
