//! Hot reload over real sockets: policy files created, replaced by atomic rename,
//! broken and removed in the watched directory; the directory reloaded; graceful
//! shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use exum_router::server::Server;
use exum_router_tests::LabBuilder;
use exum_router_tests::components;
use exum_router_tests::lab::invite;
use exum_router_tests::peer::{UdpPeer, request, response};

struct Peers {
    caller: UdpPeer,
    um_a: UdpPeer,
    um_b: UdpPeer,
    edge: UdpPeer,
}

type Lab = exum_router_tests::Lab<Peers>;

/// What the reload tests do with their router.
trait Deploying {
    fn policy_file(&self) -> PathBuf;
    async fn deploy(&self, component: &str);
    async fn call(&self, user: &str, id: &str) -> &'static str;
}

impl Deploying for Lab {
    fn policy_file(&self) -> PathBuf {
        self.dir.path().join("policies/contoso.wasm")
    }

    /// Writes `component` next to the policy file and renames it into place
    /// (what a deployment tool does), then waits until that version serves.
    async fn deploy(&self, component: &str) {
        let mut changes = self.server.policy.subscribe();
        changes.borrow_and_update();
        let bytes = std::fs::read(component).expect("component");
        let hash = exum_router::policy::engine::hex_sha256(&bytes);
        let tmp = self.dir.path().join("policies/.contoso.wasm.tmp");
        std::fs::write(&tmp, &bytes).expect("write");
        std::fs::rename(&tmp, self.policy_file()).expect("rename");
        let tenant = self.server.proxy.tenants().by_id("contoso").expect("tenant").clone();
        while self.server.policy.get(&tenant).own.as_ref().map(|v| v.hash.as_str()) != Some(hash.as_str()) {
            tokio::time::timeout(Duration::from_secs(10), changes.changed())
                .await
                .expect("the router reacts")
                .expect("open");
        }
    }

    /// Sends a call for `user` and returns the peer it reached (answering 200).
    async fn call(&self, user: &str, id: &str) -> &'static str {
        let text = invite(self.caller.addr, &format!("sip:{user}@contoso.com;opaque=app:voicemail"), id);
        self.caller.send(self.router, &text).await;
        // This call's INVITE: a peer may still hold a retransmission of an
        // earlier call's (the router retransmits every T1 = 50 ms until the
        // 200 it was sent reached it).
        let reached = tokio::select! {
            (m, from) = invite_of(&self.um_a, id) => { self.um_a.send(from, &response(&m, 200, "a", "")).await; "A" }
            (m, from) = invite_of(&self.um_b, id) => { self.um_b.send(from, &response(&m, 200, "b", "")).await; "B" }
            (m, from) = invite_of(&self.edge, id) => { self.edge.send(from, &response(&m, 200, "e", "")).await; "edge" }
        };
        assert_eq!(self.caller.final_response().await.status(), Some(200));
        reached
    }
}

/// The next INVITE `peer` receives for the call `id`, earlier calls' skipped.
async fn invite_of(peer: &UdpPeer, id: &str) -> (exum_router::model::wire::Message, SocketAddr) {
    loop {
        let (m, from) = peer.expect_request("INVITE").await;
        if m.header("Call-ID") == Some(id) {
            return (m, from);
        }
    }
}

async fn lab(bob: &str) -> Lab {
    lab_with(bob, "").await
}

async fn lab_with(bob: &str, tenant_extra: &str) -> Lab {
    let (caller, um_a, um_b, edge) =
        (UdpPeer::bind().await, UdpPeer::bind().await, UdpPeer::bind().await, UdpPeer::bind().await);
    let builder = LabBuilder::new();
    std::fs::create_dir(builder.path().join("policies")).expect("mkdir");
    let config = format!(
        "directory = \"directory.toml\"\npolicy_dir = \"policies\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [probes]\nenabled = false\n[sip]\nt1_ms = 50\nshutdown_grace_ms = 5000\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\nedge = \"sip:{}\"\npeers = [\"127.0.0.0/8\"]\n{tenant_extra}\n",
        edge.addr
    );
    let directory = directory(bob, &um_a, &um_b);
    builder.config(&config).directory(&directory).start(Peers { caller, um_a, um_b, edge }).await
}

/// bob's directory entry (`eum = ...` on plan A, or `hosted_voicemail = true`).
fn directory(bob: &str, um_a: &UdpPeer, um_b: &UdpPeer) -> String {
    format!(
        "[[tenants.contoso.users]]\nsip = \"sip:bob@contoso.com\"\n{bob}\n\
         [[tenants.contoso.hosted_voicemail_policies]]\nscope = \"global\"\ndestination = \"exap.um.outlook.com\"\n\
         [[tenants.contoso.dial_plans]]\nname = \"A\"\nphone_context = \"A\"\nservers = [{{ uri = \"sip:{}\" }}]\n\
         [[tenants.contoso.dial_plans]]\nname = \"B\"\nphone_context = \"B\"\nservers = [{{ uri = \"sip:{}\" }}]\n",
        um_a.addr, um_b.addr
    )
}

const ON_PLAN_A: &str = "eum = \"eum:bob@contoso.com;phone-context=A\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_swapped_on_rename_kept_when_broken_and_dropped_on_removal() {
    let lab = lab(ON_PLAN_A).await;
    let tenant = lab.server.proxy.tenants().by_id("contoso").expect("tenant").clone();
    assert_eq!(lab.server.policy.get(&tenant).state(), "standard");
    assert_eq!(lab.call("bob", "r0").await, "A", "standard: bob's own dial plan");

    lab.deploy(components::PLAN_B).await;
    let v1 = lab.server.policy.get(&tenant);
    assert_eq!(v1.state(), "active");
    assert_eq!(lab.call("bob", "r1").await, "B");

    lab.deploy(components::PLAN_A).await;
    assert_eq!(lab.call("bob", "r2").await, "A");
    let good = lab.server.policy.get(&tenant).own.as_ref().map(|v| v.version);

    // A broken replacement: the previous version keeps serving, the error is kept.
    let mut changes = lab.server.policy.subscribe();
    changes.borrow_and_update();
    std::fs::write(lab.policy_file(), b"\0asm\x01\0\0\0not really").expect("write");
    tokio::time::timeout(Duration::from_secs(10), changes.changed()).await.expect("reacts").expect("open");
    let current = lab.server.policy.get(&tenant);
    assert_eq!(current.own.as_ref().map(|v| v.version), good);
    assert_eq!(current.state(), "last_good_after_failed_reload");
    assert!(
        current.reload_error().is_some_and(|e| e.contains("not a WebAssembly component")),
        "{:?}",
        current.reload_error()
    );
    assert_eq!(lab.call("bob", "r3").await, "A");

    // Removal: back to the standard policy.
    let mut changes = lab.server.policy.subscribe();
    changes.borrow_and_update();
    std::fs::remove_file(lab.policy_file()).expect("remove");
    tokio::time::timeout(Duration::from_secs(10), changes.changed()).await.expect("reacts").expect("open");
    assert_eq!(lab.server.policy.get(&tenant).state(), "standard");
    assert_eq!(lab.call("bob", "r4").await, "A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_change_takes_effect_on_reload_and_a_bad_section_keeps_the_previous_one() {
    let lab = lab(ON_PLAN_A).await;
    assert_eq!(lab.call("bob", "d1").await, "A");
    // bob moves to hosted voice mail.
    std::fs::write(lab.dir.path().join("directory.toml"), directory("hosted_voicemail = true", &lab.um_a, &lab.um_b))
        .expect("write");
    lab.server.reload().expect("valid directory");
    assert_eq!(lab.call("bob", "d2").await, "edge");
    // An invalid section is refused for its tenant, which keeps its directory:
    // bob stays hosted.
    std::fs::write(lab.dir.path().join("directory.toml"), "[[tenants.contoso.users]]\nsip = \"nope\"\n")
        .expect("write");
    let refused = lab.server.reload().expect("the configuration is valid");
    assert_eq!(refused.len(), 1);
    assert!(refused[0].contains("directory.toml: tenants.contoso.users[0].sip"), "{refused:?}");
    assert_eq!(lab.call("bob", "d3").await, "edge");
    // A configuration that does not parse is refused whole.
    let config = lab.dir.path().join("router.toml");
    let good = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, format!("{good}\n[[tenant]]\nid = \"contoso\"\ndomains = [\"x.com\"]\n")).expect("write");
    let e = lab.server.reload().expect_err("refused whole").to_string();
    assert!(e.contains("router.toml: tenant[1]"), "{e}");
    std::fs::write(&config, good).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_calls_in_flight_and_refuses_new_ones() {
    let lab = lab(ON_PLAN_A).await;
    let first =
        request("INVITE", "sip:bob@contoso.com;opaque=app:voicemail", lab.caller.addr, "UDP", "g1", "z9hG4bK-g1");
    lab.caller.send(lab.router, &first).await;
    let (inv, from) = lab.um_a.expect_request("INVITE").await;
    lab.um_a.send(from, &response(&inv, 180, "a", "")).await;
    lab.caller.expect_response(180).await;
    // SIGTERM's work: stop taking transactions (now), then wait for those in flight.
    lab.server.proxy.drain();
    let server = lab.server.clone();
    let stopping = tokio::spawn(async move { server.shutdown_gracefully().await });
    // A new call is refused while the first is in flight.
    let second =
        request("INVITE", "sip:bob@contoso.com;opaque=app:voicemail", lab.caller.addr, "UDP", "g2", "z9hG4bK-g2");
    lab.caller.send(lab.router, &second).await;
    let r = lab.caller.final_response().await;
    assert_eq!(r.status(), Some(503));
    assert_eq!(r.header("Retry-After"), Some("5"));
    // Calls in progress can still end: an in-dialog BYE goes through.
    let bye = format!(
        "BYE sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-gbye\r\nMax-Forwards: 70\r\n\
         From: <sip:caller@fabrikam.com>;tag=a\r\nTo: <sip:bob@contoso.com>;tag=b\r\nCall-ID: earlier\r\n\
         CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        lab.um_b.addr, lab.caller.addr
    );
    lab.caller.send(lab.router, &bye).await;
    let (bye, bye_from) = lab.um_b.expect_request("BYE").await;
    lab.um_b.send(bye_from, &response(&bye, 200, "b", "")).await;
    assert_eq!(lab.caller.expect_response(200).await.cseq(), Some((2, "BYE")));
    assert!(!stopping.is_finished());
    lab.um_a.send(from, &response(&inv, 200, "a", "")).await;
    assert_eq!(lab.caller.expect_response(200).await.cseq(), Some((1, "INVITE")));
    tokio::time::timeout(Duration::from_secs(10), stopping).await.expect("shutdown completes").expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_keeps_the_version_it_started_with() {
    // Version 1 (the hostile fixture as "fail:486") routes like the standard
    // policy and answers 486 from on-failure; version 2 (plan B) leaves
    // on-failure to the standard algorithm (480).
    let lab = lab_with(ON_PLAN_A, "policy_config = \"fail:486\"").await;
    lab.deploy(components::HOSTILE).await;
    let text =
        request("INVITE", "sip:bob@contoso.com;opaque=app:voicemail", lab.caller.addr, "UDP", "pin1", "z9hG4bK-pin1");
    lab.caller.send(lab.router, &text).await;
    let (inv, from) = lab.um_a.expect_request("INVITE").await;
    lab.um_a.send(from, &response(&inv, 180, "a", "")).await;
    lab.caller.expect_response(180).await;
    // While bob's UM server rings, version 2 arrives.
    lab.deploy(components::PLAN_B).await;
    lab.um_a.send(from, &response(&inv, 503, "a", "")).await;
    let r = lab.caller.final_response().await;
    assert_eq!(r.status(), Some(486), "on-failure went to the version the call started with: {r:?}");
    // A new call gets version 2.
    assert_eq!(lab.call("bob", "pin2").await, "B");
}

/// Writes `bytes` as `tenant`'s policy by atomic rename and waits until the
/// registry reacted (a new version, or a refused reload).
async fn deploy_bytes(lab: &Lab, tenant: &str, bytes: &[u8]) {
    let mut changes = lab.server.policy.subscribe();
    changes.borrow_and_update();
    let tmp = lab.dir.path().join(format!("policies/.{tenant}.wasm.tmp"));
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, lab.dir.path().join(format!("policies/{tenant}.wasm"))).expect("rename");
    tokio::time::timeout(Duration::from_secs(10), changes.changed()).await.expect("the router reacts").expect("open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deploy_is_one_reload_and_the_router_s_own_reads_trigger_none() {
    let lab = lab_with(ON_PLAN_A, "\n[[tenant]]\nid = \"fabrikam\"\ndomains = [\"fabrikam.com\"]").await;
    let metrics = lab.server.metrics.clone();
    let broken: &[u8] = b"\0asm\x01\0\0\0not really";
    // One broken deploy for contoso: one failed reload.
    deploy_bytes(&lab, "contoso", broken).await;
    assert_eq!(metrics.reloads_of("contoso", "failed"), 1);
    // The watcher reports changes in the order the files were written: once fabrikam's
    // deploy, which comes later, has been handled, any reload that contoso's
    // file could cause by being read has been handled too.
    deploy_bytes(&lab, "fabrikam", broken).await;
    assert_eq!(metrics.reloads_of("fabrikam", "failed"), 1);
    assert_eq!(metrics.reloads_of("contoso", "failed"), 1, "reading the file did not reload it again");

    // One change of the directory file: one reload; the same content written
    // again (a touch): none.
    let mut swapped = lab.server.proxy.live_tenants().subscribe();
    swapped.borrow_and_update();
    std::fs::write(lab.dir.path().join("directory.toml"), directory("hosted_voicemail = true", &lab.um_a, &lab.um_b))
        .expect("write");
    tokio::time::timeout(Duration::from_secs(10), swapped.changed()).await.expect("reloads").expect("open");
    assert_eq!(metrics.config_reloads_of("ok"), 1);
    assert_eq!(lab.call("bob", "w1").await, "edge", "the new directory serves");
    std::fs::write(lab.dir.path().join("directory.toml"), directory("hosted_voicemail = true", &lab.um_a, &lab.um_b))
        .expect("write");
    deploy_bytes(&lab, "fabrikam", b"\0asm\x01\0\0\0broken again").await;
    assert_eq!(metrics.reloads_of("fabrikam", "failed"), 2);
    assert_eq!(metrics.config_reloads_of("ok"), 1, "neither the reload's own reads nor a same-content write reload");
    assert_eq!(metrics.reloads_of("contoso", "failed"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_policy_file_is_refused_by_its_size_before_it_is_read() {
    let lab = lab(ON_PLAN_A).await;
    let tenant = lab.server.proxy.tenants().by_id("contoso").expect("tenant").clone();
    lab.deploy(components::PLAN_B).await;
    // A sparse file of 1 GiB: refused from its metadata (reading it would take
    // a gigabyte of memory), and the version in service keeps serving.
    let mut changes = lab.server.policy.subscribe();
    changes.borrow_and_update();
    let tmp = lab.dir.path().join("policies/.contoso.wasm.tmp");
    std::fs::File::create(&tmp).and_then(|f| f.set_len(1 << 30)).expect("sparse file");
    std::fs::rename(&tmp, lab.policy_file()).expect("rename");
    tokio::time::timeout(Duration::from_secs(10), changes.changed()).await.expect("reacts").expect("open");
    let current = lab.server.policy.get(&tenant);
    let error = current.reload_error().unwrap_or_default();
    assert!(error.contains("component is 1073741824 bytes; the limit is 67108864"), "{error}");
    assert_eq!(current.state(), "last_good_after_failed_reload");
    assert_eq!(lab.call("bob", "huge1").await, "B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_caught_half_written_is_not_applied() {
    let lab = lab(ON_PLAN_A).await;
    let metrics = lab.server.metrics.clone();
    let file = lab.dir.path().join("directory.toml");
    // Rewritten in place: truncated first. The empty file would leave the
    // tenant without users (every call 404): refused, bob still served.
    std::fs::File::create(&file).expect("truncate");
    exum_router_tests::until("the empty directory refused", || metrics.config_reloads_of("partial") == 1).await;
    assert_eq!(lab.call("bob", "half1").await, "A");
    // Then written whole (bob moved to hosted voice mail): applied.
    let mut swapped = lab.server.proxy.live_tenants().subscribe();
    swapped.borrow_and_update();
    std::fs::write(&file, directory("hosted_voicemail = true", &lab.um_a, &lab.um_b)).expect("write");
    tokio::time::timeout(Duration::from_secs(10), swapped.changed()).await.expect("reloads").expect("open");
    assert_eq!(lab.call("bob", "half2").await, "edge");
    // The same refusal on an explicit reload names the tenant and the way out.
    std::fs::write(&file, "").expect("write");
    let refused = lab.server.reload().expect("the configuration is valid");
    assert!(refused.iter().any(|r| r.contains("tenant `contoso` had 1 users and would have none")), "{refused:?}");
    assert!(refused[0].contains("directory_may_remove_all_users"), "{refused:?}");
    assert_eq!(lab.call("bob", "half3").await, "edge", "contoso keeps its directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_may_allow_a_directory_to_empty_a_tenant() {
    let lab = lab(ON_PLAN_A).await;
    let config = lab.dir.path().join("router.toml");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, format!("directory_may_remove_all_users = true\n{text}")).expect("write");
    std::fs::write(lab.dir.path().join("directory.toml"), "").expect("write");
    lab.server.reload().expect("allowed");
    assert_eq!(lab.server.proxy.tenants().by_id("contoso").expect("tenant").directory.user_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_directory_removed_and_created_again_is_watched_again() {
    let lab = lab(ON_PLAN_A).await;
    let tenant = lab.server.proxy.tenants().by_id("contoso").expect("tenant").clone();
    lab.deploy(components::PLAN_B).await;
    let mut changes = lab.server.policy.subscribe();
    changes.borrow_and_update();
    std::fs::remove_dir_all(lab.dir.path().join("policies")).expect("rm -r");
    tokio::time::timeout(Duration::from_secs(10), changes.changed()).await.expect("reacts").expect("open");
    assert_eq!(lab.server.policy.get(&tenant).state(), "standard", "its file went with the directory");
    std::fs::create_dir(lab.dir.path().join("policies")).expect("mkdir");
    // A file put in the new directory is seen, as one put there later.
    lab.deploy(components::PLAN_B).await;
    assert_eq!(lab.call("bob", "again1").await, "B");
    lab.deploy(components::PLAN_A).await;
    assert_eq!(lab.call("bob", "again2").await, "A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_section_is_refused_for_its_tenant_alone() {
    let lab = lab_with(ON_PLAN_A, "\n[[tenant]]\nid = \"fabrikam\"\ndomains = [\"fabrikam.com\"]").await;
    let fabrikam_user = "[[tenants.fabrikam.users]]\nsip = \"sip:grace@fabrikam.com\"\n";
    std::fs::write(
        lab.dir.path().join("directory.toml"),
        format!("{}{fabrikam_user}", directory(ON_PLAN_A, &lab.um_a, &lab.um_b)),
    )
    .expect("write");
    assert!(lab.server.reload().expect("valid").is_empty());
    let fabrikam = |server: &Server| server.proxy.tenants().by_id("fabrikam").map_or(0, |t| t.directory.user_count());
    assert_eq!(fabrikam(&lab.server), 1);
    // contoso moves bob to hosted voice mail while fabrikam's section is broken,
    // first by a wrong type (a parse error), then by a wrong value.
    for broken in
        ["[[tenants.fabrikam.users]]\nsip = 5\n", "[[tenants.fabrikam.users]]\nsip = \"sip:grace@contoso.com\"\n"]
    {
        std::fs::write(
            lab.dir.path().join("directory.toml"),
            format!("{}{broken}", directory("hosted_voicemail = true", &lab.um_a, &lab.um_b)),
        )
        .expect("write");
        let refused = lab.server.reload().expect("the configuration is valid");
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0].contains("directory.toml: tenants.fabrikam.users[0].sip"), "{refused:?}");
        assert!(refused[0].contains("tenant `fabrikam` keeps its previous directory"), "{refused:?}");
        assert_eq!(lab.call("bob", &format!("iso{}", broken.len())).await, "edge", "contoso's update applied");
        assert_eq!(fabrikam(&lab.server), 1, "fabrikam keeps grace");
        // Back to bob on plan A for the next round.
        std::fs::write(
            lab.dir.path().join("directory.toml"),
            format!("{}{fabrikam_user}", directory(ON_PLAN_A, &lab.um_a, &lab.um_b)),
        )
        .expect("write");
        assert!(lab.server.reload().expect("valid").is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_defined_in_the_directory_comes_with_a_directory_change() {
    let lab = lab(ON_PLAN_A).await;
    assert!(lab.server.proxy.tenants().by_domain("northwind.com").is_none());
    // A new tenant, settings and data in the directory file alone: no change to
    // router.toml, no restart.
    let mut swapped = lab.server.proxy.live_tenants().subscribe();
    swapped.borrow_and_update();
    std::fs::write(
        lab.dir.path().join("directory.toml"),
        format!(
            "{}[tenants.northwind]\ndomains = [\"northwind.com\"]\ndefault_next_hop = \"sip:{}\"\n\
             [[tenants.northwind.users]]\nsip = \"sip:nina@northwind.com\"\n",
            directory(ON_PLAN_A, &lab.um_a, &lab.um_b),
            lab.um_b.addr
        ),
    )
    .expect("write");
    tokio::time::timeout(Duration::from_secs(10), swapped.changed()).await.expect("reloads").expect("open");
    let tenants = lab.server.proxy.tenants();
    let northwind = tenants.by_domain("northwind.com").expect("the new tenant");
    assert_eq!((northwind.config.id.as_str(), northwind.directory.user_count()), ("northwind", 1));
    // Its calls are routed by its settings: an ordinary call to its pool.
    lab.caller
        .send(lab.router, &request("INVITE", "sip:nina@northwind.com", lab.caller.addr, "UDP", "nw1", "z9hG4bK-nw1"))
        .await;
    let (inv, from) = lab.um_b.expect_request("INVITE").await;
    assert_eq!(inv.first(exum_router::model::wire::Name::CallId), Some("nw1"));
    lab.um_b.send(from, &response(&inv, 200, "nw", "")).await;
    assert_eq!(lab.caller.final_response().await.status(), Some(200));
}
