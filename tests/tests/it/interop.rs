//! Interop with a real SIP implementation: sipp (Debian package `sip-tester`) as
//! caller through the router to two sipp UAS, an on-premises UM server and the
//! hosted edge. The directory sends even users to hosted voice mail and odd users
//! on-premises; each UAS is told to expect exactly half of the calls.

use exum_router::model::Transport;
use exum_router::server::Server;
use exum_router_tests::sipp::sipp_address;

const CALLS: usize = 2000;
const USERS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_calls_split_between_on_premises_um_and_the_hosted_edge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (um_at, edge_at, uac_at) = (sipp_address(), sipp_address(), sipp_address());
    let mut directory = String::new();
    let mut users = String::from("SEQUENTIAL\n");
    for i in 0..USERS {
        if i % 2 == 0 {
            directory.push_str(&format!(
                "[[tenants.contoso.users]]\nsip = \"sip:user{i}@contoso.com\"\nhosted_voicemail = true\n"
            ));
        } else {
            directory.push_str(&format!("[[tenants.contoso.users]]\nsip = \"sip:user{i}@contoso.com\"\neum = \"eum:user{i}@contoso.com;phone-context=DP1\"\n"));
        }
        users.push_str(&format!("user{i};contoso.com\n"));
    }
    directory.push_str(&format!(
        "[[tenants.contoso.hosted_voicemail_policies]]\nscope = \"global\"\ndestination = \"exap.um.outlook.com\"\n\
         [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:{um_at}\", timeout_ms = 5000 }}]\n"
    ));
    let config = format!(
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n[probes]\nenabled = false\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\nedge = \"sip:{edge_at}\"\npeers = [\"127.0.0.0/8\"]\n"
    );
    std::fs::write(dir.path().join("router.toml"), config).expect("write");
    std::fs::write(dir.path().join("directory.toml"), directory).expect("write");
    std::fs::write(dir.path().join("users.csv"), users).expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("router starts");
    let router = server.local_addr(Transport::Udp).expect("udp");

    let half = (CALLS / 2).to_string();
    let uas = |at: std::net::SocketAddr| {
        exum_router_tests::sipp::uas(dir.path(), at)
            .args(["-m", &half, "-timeout", "120s"])
            .spawn()
            .expect("sipp UAS starts")
    };
    let mut um = uas(um_at);
    let mut edge = uas(edge_at);
    let uac = exum_router_tests::sipp::uac(dir.path(), router, uac_at, CALLS as u64, 200)
        .args(["-l", "400"])
        .spawn()
        .expect("sipp UAC starts");
    let (uac_out, um_status, edge_status) = tokio::task::spawn_blocking(move || {
        let out = uac.wait_with_output().expect("UAC ends");
        (out, um.wait().expect("UM UAS ends"), edge.wait().expect("edge UAS ends"))
    })
    .await
    .expect("join");
    let stats = std::fs::read_to_string(dir.path().join("uac.csv")).unwrap_or_default();
    let last = stats.lines().last().unwrap_or("");
    assert!(
        uac_out.status.success(),
        "sipp UAC: {} {}\n{last}",
        uac_out.status,
        String::from_utf8_lossy(&uac_out.stderr)
    );
    assert!(um_status.success(), "the on-premises UM server did not complete exactly {half} calls: {um_status}");
    assert!(edge_status.success(), "the hosted edge did not complete exactly {half} calls: {edge_status}");
    assert_eq!(
        server.metrics.decisions_of("contoso")
            + server.metrics.decisions_of("fabrikam")
            + server.metrics.decisions_of("litware"),
        CALLS as u64,
        "one decision per call"
    );
}

/// The sipp scenarios shipped for trying the router locally
/// (`examples/sipp/`), on their own configuration with only the addresses
/// moved: the UAS answers the OPTIONS probes (the router keeps it up), and
/// each call's caller and callee come from the injection file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_sipp_scenarios_keep_the_um_server_up_and_take_callers_from_the_csv() {
    use exum_router_tests::sipp::{sipp, stat};
    let dir = tempfile::tempdir().expect("tempdir");
    let examples = exum_router_tests::workspace().join("examples/sipp");
    let (uas_at, uac_at) = (sipp_address(), sipp_address());
    let read = |name: &str| std::fs::read_to_string(examples.join(name)).expect("example file");
    std::fs::write(
        dir.path().join("directory.toml"),
        read("directory.toml").replace("127.0.0.1:5070", &uas_at.to_string()),
    )
    .expect("write");
    let router = read("router.toml")
        .replace("127.0.0.1:5080", "127.0.0.1:0")
        .replace("127.0.0.1:9080", "127.0.0.1:0")
        .replace("interval_ms = 2000", "interval_ms = 200")
        .replace("timeout_ms = 1000", "timeout_ms = 150")
        .replace("record_route = true", "record_route = true\nrecord_decisions = 1.0")
        + "\n[records]\ndir = \"records\"\n";
    std::fs::write(dir.path().join("router.toml"), router).expect("write");
    let mut uas = sipp()
        .arg("-sf")
        .arg(examples.join("uas.xml"))
        .args(["-i", &uas_at.ip().to_string(), "-p", &uas_at.port().to_string(), "-nostdin", "-timeout", "120s"])
        .args(["-trace_stat", "-stf", "uas.csv", "-fd", "1"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp UAS starts");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("router starts");
    let admin = server.admin_addr().expect("admin");
    // Four probes answered: with `down_after = 2` and probes ending before the
    // next is sent, an unanswered UAS would be marked down by now.
    let stats = dir.path().join("uas.csv");
    exum_router_tests::until("four probes at the UAS", || stat(&stats, "IncomingCall(C)") >= 4).await;
    let metrics = exum_router_tests::http_get(admin, "/metrics").await;
    let up = format!("exum_um_server_up{{server=\"sip:{uas_at}\"}} 1");
    assert!(metrics.contains(&up), "{up} in {metrics}");
    // Calls from the injection file.
    let calls = 30;
    let router_at = server.local_addr(Transport::Udp).expect("udp");
    let out = sipp()
        .arg(router_at.to_string())
        .arg("-sf")
        .arg(examples.join("uac.xml"))
        .arg("-inf")
        .arg(examples.join("calls.csv"))
        .args(["-i", &uac_at.ip().to_string(), "-p", &uac_at.port().to_string()])
        .args(["-m", &calls.to_string(), "-r", "10", "-nostdin", "-timeout", "60s"])
        .args(["-trace_stat", "-stf", "uac.csv", "-fd", "1"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .output()
        .expect("sipp UAC runs");
    let (ok, failed) =
        (stat(&dir.path().join("uac.csv"), "SuccessfulCall(C)"), stat(&dir.path().join("uac.csv"), "FailedCall(C)"));
    assert!(out.status.success(), "UAC: {} ({ok} ok, {failed} failed)", out.status);
    assert_eq!((ok, failed), (calls, 0));
    // The callers the router saw are the file's.
    server.policy.recorder().expect("recorder").flush();
    let records =
        exum_router::policy::record::read(&dir.path().join("records/contoso/decisions.jsonl")).expect("records");
    for caller in ["sip:carol@fabrikam.com", "sip:dave@fabrikam.com", "sip:alice@contoso.com"] {
        assert!(records.iter().any(|r| r.request.head.contains(&format!("From: <{caller}>"))), "a call from {caller}");
    }
    let metrics = exum_router_tests::http_get(admin, "/metrics").await;
    assert!(metrics.contains(&up), "still up after the calls");
    server.stop();
    let _ = uas.kill();
    let _ = uas.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sipp_um_server_that_rings_past_its_timeout_answers_the_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (um_at, uac_at) = (sipp_address(), sipp_address());
    // 300 ms to the UM server's first response; it rings at once and answers
    // after 1500 ms.
    std::fs::write(
        dir.path().join("directory.toml"),
        format!(
            "[[tenants.contoso.users]]\nsip = \"sip:bob@contoso.com\"\neum = \"eum:bob@contoso.com;phone-context=DP1\"\n\
             [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:{um_at}\", timeout_ms = 300 }}]\n"
        ),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n[probes]\nenabled = false\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\npeers = [\"127.0.0.0/8\"]\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("users.csv"), "SEQUENTIAL\nbob;contoso.com\n").expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("router starts");
    let router = server.local_addr(Transport::Udp).expect("udp");
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp/uas-rings.xml");
    let mut um = exum_router_tests::sipp::sipp()
        .arg("-sf")
        .arg(scenario)
        .args(["-i", &um_at.ip().to_string(), "-p", &um_at.port().to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "30s"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp UM server starts");
    exum_router_tests::sipp::listening(&mut um, um_at).await;
    let uac = exum_router_tests::sipp::uac(dir.path(), router, uac_at, 1, 1).spawn().expect("sipp UAC starts");
    let (uac_out, um_status) = tokio::task::spawn_blocking(move || {
        let out = uac.wait_with_output().expect("UAC ends");
        (out, um.wait().expect("UM ends"))
    })
    .await
    .expect("join");
    assert!(
        uac_out.status.success(),
        "the caller's call did not complete: {} {}",
        uac_out.status,
        String::from_utf8_lossy(&uac_out.stderr)
    );
    assert!(um_status.success(), "the ringing UM server did not complete its call: {um_status}");
}
