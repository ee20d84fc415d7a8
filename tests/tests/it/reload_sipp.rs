//! sipp calls through the router for 60 s at a steady rate while the tenant's
//! policy is replaced at least 100 times, alternating two versions that route
//! to two different sipp UAS: 0 failed calls, and both UAS receive calls.

use std::time::{Duration, Instant};

use exum_router::model::Transport;
use exum_router::server::Server;
use exum_router_tests::components;
use exum_router_tests::sipp::{sipp_address, stat};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_flow_while_the_policy_is_replaced_a_hundred_times() {
    const SECONDS: u64 = 60;
    const RATE: u64 = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    let (a_at, b_at, uac_at) = (sipp_address(), sipp_address(), sipp_address());
    let mut directory = String::new();
    let mut users = String::from("SEQUENTIAL\n");
    for i in 0..20 {
        directory.push_str(&format!("[[tenants.contoso.users]]\nsip = \"sip:user{i}@contoso.com\"\neum = \"eum:user{i}@contoso.com;phone-context=A\"\n"));
        users.push_str(&format!("user{i};contoso.com\n"));
    }
    directory.push_str(&format!(
        "[[tenants.contoso.dial_plans]]\nname = \"A\"\nphone_context = \"A\"\nservers = [{{ uri = \"sip:{a_at}\", timeout_ms = 5000 }}]\n\
         [[tenants.contoso.dial_plans]]\nname = \"B\"\nphone_context = \"B\"\nservers = [{{ uri = \"sip:{b_at}\", timeout_ms = 5000 }}]\n"
    ));
    std::fs::write(dir.path().join("directory.toml"), directory).expect("write");
    std::fs::write(dir.path().join("users.csv"), users).expect("write");
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\npolicy_dir = \"policies\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [probes]\nenabled = false\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\npeers = [\"127.0.0.0/8\"]\n",
    )
    .expect("write");
    let versions = [std::fs::read(components::PLAN_A).expect("A"), std::fs::read(components::PLAN_B).expect("B")];
    std::fs::write(dir.path().join("policies/contoso.wasm"), &versions[0]).expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("router starts");
    let router = server.local_addr(Transport::Udp).expect("udp");

    let uas = |at: std::net::SocketAddr, stats: &str| {
        exum_router_tests::sipp::uas(dir.path(), at)
            .args(["-timeout", &format!("{}s", SECONDS + 30)])
            .args(["-trace_stat", "-stf", stats, "-fd", "1"])
            .spawn()
            .expect("sipp UAS starts (apt-get install -y sip-tester)")
    };
    let mut uas_a = uas(a_at, "a.csv");
    let mut uas_b = uas(b_at, "b.csv");
    let calls = SECONDS * RATE;
    let uac = exum_router_tests::sipp::uac(dir.path(), router, uac_at, calls, RATE).spawn().expect("sipp UAC starts");

    // Replace the policy every 500 ms while the calls flow.
    let policies = dir.path().join("policies");
    let replacing = tokio::spawn(async move {
        let start = Instant::now();
        let mut replacements = 0u32;
        while start.elapsed() < Duration::from_secs(SECONDS - 2) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let next = &versions[(replacements as usize + 1) % 2];
            let tmp = policies.join(".contoso.wasm.tmp");
            std::fs::write(&tmp, next).expect("write");
            std::fs::rename(&tmp, policies.join("contoso.wasm")).expect("rename");
            replacements += 1;
        }
        replacements
    });
    let out = tokio::task::spawn_blocking(move || uac.wait_with_output().expect("UAC ends")).await.expect("join");
    let replacements = replacing.await.expect("join");
    // The UAS write their statistics every second: poll them until every
    // call shows (or 10 s), then stop them.
    let arrived =
        || stat(&dir.path().join("a.csv"), "IncomingCall(C)") + stat(&dir.path().join("b.csv"), "IncomingCall(C)");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while arrived() < calls && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for child in [&mut uas_a, &mut uas_b] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let failed = stat(&dir.path().join("uac.csv"), "FailedCall(C)");
    let succeeded = stat(&dir.path().join("uac.csv"), "SuccessfulCall(C)");
    assert!(
        out.status.success(),
        "sipp UAC: {} ({succeeded} ok, {failed} failed) {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(failed, 0);
    assert_eq!(succeeded, calls);
    assert!(replacements >= 100, "only {replacements} replacements");
    // Calls each UAS received (the stock UAS books a call successful only after
    // a closing pause, so count arrivals).
    let (a, b) =
        (stat(&dir.path().join("a.csv"), "IncomingCall(C)"), stat(&dir.path().join("b.csv"), "IncomingCall(C)"));
    assert!(a > 0 && b > 0, "both versions routed calls: A {a}, B {b}");
    assert_eq!(a + b, calls, "every call reached one of the two");
}
