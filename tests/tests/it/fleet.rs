//! A fleet: three routers and one PostgreSQL server on loopback
//! (`exum_router_tests::postgres`). The directory is imported with the
//! operator's command, changes made with one UPDATE reach every router, policy
//! versions are activated with one UPDATE, the database stopped under load
//! loses no call, a router that reconnects catches up with what it missed, a
//! row that fails validation is refused for its tenant alone, and a caller
//! resolving the fleet by DNS SRV loses no call when an instance dies.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Child;
use std::time::Duration;

use exum_router::cli::db::{Action, execute as db};
use exum_router::model::Transport;
use exum_router::model::wire::Name;
use exum_router::server::Server;
use exum_router_tests::peer::{UdpPeer, response, udp_request};
use exum_router_tests::postgres::Postgres;
use exum_router_tests::sipp::{sipp_address, stat};
use exum_router_tests::{components, http, http_get, until};

/// The routers' configuration: the directory in the database `source` (the
/// `[directory]` keys naming it), fabrikam defined here (its data in the
/// database), contoso defined in the database. fabrikam's `policy_config`
/// makes the hostile fixture panic (the others ignore it).
fn router_toml_with(source: &str) -> String {
    format!(
        "policy_cache = \"cache\"\n\
         [directory]\nsource = \"postgres\"\n{}pool_size = 2\nconnect_timeout_ms = 2000\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [probes]\nenabled = false\n[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"exum-test-admin-token\"\n\
         [[tenant]]\nid = \"fabrikam\"\ndomains = [\"fabrikam.com\"]\n\
         policy_config = \"panic\"\n",
        source
    )
}

/// The directory file the fleet is set up from: contoso (defined here, its
/// edge the `hosted` peer) with 20 load users on DP1 (sipp's UAS) and dave on
/// plan A; fabrikam's erin on plan A. Plans A and B are probe peers.
fn directory_toml(uas: SocketAddr, a: SocketAddr, b: SocketAddr, hosted: SocketAddr) -> String {
    let mut d =
        format!("[tenants.contoso]\ndomains = [\"contoso.com\"]\npeers = [\"127.0.0.0/8\"]\nedge = \"sip:{hosted}\"\n");
    for i in 0..20 {
        d.push_str(&format!(
            "[[tenants.contoso.users]]\nsip = \"sip:user{i}@contoso.com\"\neum = \"eum:user{i}@contoso.com;phone-context=DP1\"\n"
        ));
    }
    d.push_str(
        "[[tenants.contoso.users]]\nsip = \"sip:dave@contoso.com\"\neum = \"eum:dave@contoso.com;phone-context=A\"\n",
    );
    d.push_str(
        "[[tenants.contoso.hosted_voicemail_policies]]\nscope = \"global\"\ndestination = \"exap.um.outlook.com\"\n",
    );
    d.push_str("[[tenants.fabrikam.users]]\nsip = \"sip:erin@fabrikam.com\"\neum = \"eum:erin@fabrikam.com;phone-context=A\"\n");
    for tenant in ["contoso", "fabrikam"] {
        for (name, at) in [("DP1", uas), ("A", a), ("B", b)] {
            d.push_str(&format!(
                "[[tenants.{tenant}.dial_plans]]\nname = \"{name}\"\nphone_context = \"{name}\"\n\
                 servers = [{{ uri = \"sip:{at}\", timeout_ms = 3000 }}]\n"
            ));
        }
    }
    d
}

/// How long a fleet test waits for one message of a call.
const CALL_WAIT: Duration = Duration::from_secs(30);

struct Fleet {
    pg: Postgres,
    dir: tempfile::TempDir,
    routers: Vec<Option<Server>>,
    plan_a: UdpPeer,
    plan_b: UdpPeer,
    hosted: UdpPeer,
    uas_at: SocketAddr,
    caller: UdpPeer,
}

impl Fleet {
    /// PostgreSQL, the directory imported with `exum-router db import`, and
    /// `n` routers each with its own folder and port.
    async fn start(n: usize) -> Fleet {
        let pg = tokio::task::spawn_blocking(Postgres::start).await.expect("join");
        let url = pg.url();
        Fleet::start_on(pg, &url, n).await
    }

    /// [`Fleet::start`] on `pg`, the routers connecting with `url`.
    async fn start_on(pg: Postgres, url: &str, n: usize) -> Fleet {
        Fleet::start_with(pg, &format!("url = \"{url}\"\n"), n).await
    }

    /// [`Fleet::start`] on `pg`, the routers' `[directory]` naming the
    /// database with the keys `source`.
    async fn start_with(pg: Postgres, source: &str, n: usize) -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let (plan_a, plan_b, hosted) = (UdpPeer::bind().await, UdpPeer::bind().await, UdpPeer::bind().await);
        let uas_at = sipp_address();
        std::fs::write(dir.path().join("router.toml"), router_toml_with(source)).expect("write");
        std::fs::write(
            dir.path().join("directory.toml"),
            directory_toml(uas_at, plan_a.addr, plan_b.addr, hosted.addr),
        )
        .expect("write");
        let out =
            db(&dir.path().join("router.toml"), None, Action::Import { file: Some(dir.path().join("directory.toml")) })
                .await
                .expect("the directory imports");
        assert!(out.contains("2 tenants") && out.contains("22 users"), "{out}");
        let mut routers = Vec::new();
        for i in 0..n {
            let own = dir.path().join(format!("r{i}"));
            std::fs::create_dir(&own).expect("mkdir");
            std::fs::write(own.join("router.toml"), router_toml_with(source)).expect("write");
            routers.push(Some(Server::start(&own.join("router.toml")).await.expect("the router starts")));
        }
        Fleet { pg, dir, routers, plan_a, plan_b, hosted, uas_at, caller: UdpPeer::bind().await }
    }

    /// Runs `sql` as the database's owner (psql), off the runtime's worker.
    fn sql(&self, sql: &str) -> String {
        tokio::task::block_in_place(|| self.pg.sql(sql))
    }

    fn router(&self, i: usize) -> &Server {
        self.routers[i].as_ref().expect("running")
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.router(i).local_addr(Transport::Udp).expect("udp")
    }

    fn running(&self) -> impl Iterator<Item = &Server> {
        self.routers.iter().flatten()
    }

    /// A call to `user` through router `i` reaches `at` (which answers 200).
    /// Waits for each message up to [`CALL_WAIT`]: the machine may be busy
    /// with the rest of the suite (sipp loads, builds, a browser).
    async fn call_reaches(&self, i: usize, user: &str, at: &UdpPeer, call_id: &str) {
        let ruri = format!("sip:{user};opaque=app:voicemail");
        self.caller.send(self.addr(i), &udp_request("INVITE", &ruri, self.caller.addr, call_id)).await;
        loop {
            let (inv, from) = at.recv_within(CALL_WAIT).await.unwrap_or_else(|| {
                panic!("{call_id} through router {i}: no INVITE at {} within {CALL_WAIT:?}", at.addr)
            });
            if inv.method() == Some("INVITE") && inv.first(Name::CallId) == Some(call_id) {
                at.send(from, &response(&inv, 200, "um", "")).await;
                break;
            }
        }
        loop {
            let (ok, _) = self
                .caller
                .recv_within(CALL_WAIT)
                .await
                .unwrap_or_else(|| panic!("{call_id} through router {i}: no final response within {CALL_WAIT:?}"));
            if ok.first(Name::CallId) == Some(call_id) && ok.status().is_some_and(|s| s >= 200) {
                assert_eq!(ok.status(), Some(200), "{call_id} through router {i}");
                return;
            }
        }
    }

    /// A sipp UAC of `calls` calls at `rate` against `target`, its own folder.
    fn load(&self, name: &str, target: SocketAddr, calls: u64, rate: u64) -> (Child, std::path::PathBuf) {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let users: String = std::iter::once("SEQUENTIAL\n".to_owned())
            .chain((0..20).map(|i| format!("user{i};contoso.com\n")))
            .collect();
        std::fs::write(dir.join("users.csv"), users).expect("write");
        let child = exum_router_tests::sipp::uac(&dir, target, sipp_address(), calls, rate)
            .arg("-trace_err")
            .spawn()
            .expect("sipp UAC starts (apt-get install -y sip-tester)");
        (child, dir)
    }

    fn uas(&self) -> Killed {
        Killed(exum_router_tests::sipp::uas(self.dir.path(), self.uas_at).spawn().expect("sipp UAS starts"))
    }
}

/// A UAS that answers every INVITE and BYE with 200, each to where it came
/// from (sipp's UAS answers a call's requests where its INVITE came from, which
/// is not where a BYE that took another path through the fleet came from).
fn answering(peer: UdpPeer) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((m, from)) = peer.recv_within(Duration::from_secs(600)).await {
            let contact = format!("Contact: <sip:um@{}>\r\n", peer.addr);
            let reply = match m.method() {
                Some("INVITE") => response(&m, 200, "um", &contact),
                Some("ACK") | None => continue,
                Some(_) => response(&m, 200, "um", ""),
            };
            peer.send(from, &reply).await;
        }
    })
}

/// A sipp process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a sipp UAC and returns (successful, failed) calls.
async fn finished(load: (Child, std::path::PathBuf)) -> (u64, u64) {
    let (child, dir) = load;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("UAC ends")).await.expect("join");
    let (ok, failed) = (stat(&dir.join("uac.csv"), "SuccessfulCall(C)"), stat(&dir.join("uac.csv"), "FailedCall(C)"));
    if failed > 0 {
        // sipp's error log says which message of which call went wrong.
        for e in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            if e.file_name().to_string_lossy().ends_with("_errors.log") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                eprintln!("{}:\n{}", e.path().display(), &text[..text.len().min(3000)]);
            }
        }
    }
    assert!(
        out.status.success() || failed > 0,
        "sipp UAC in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (ok, failed)
}

fn still_running(load: &mut (Child, std::path::PathBuf)) -> bool {
    load.0.try_wait().expect("try_wait").is_none()
}

fn user_is_hosted(server: &Server, user: &str) -> bool {
    let tenants = server.proxy.tenants();
    let t = tenants.by_id("contoso").expect("contoso");
    t.directory.user(user).is_some_and(|u| u.voicemail == exum_router::control::directory::VoicemailSetting::Hosted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_routers_follow_one_database_under_load_through_its_outage_and_a_router_s_death() {
    const RATE: u64 = 15;
    const CALLS: u64 = 40 * RATE;
    let mut fleet = Fleet::start(3).await;
    let _uas = fleet.uas();
    let mut loads: Vec<_> = (0..3).map(|i| fleet.load(&format!("load{i}"), fleet.addr(i), CALLS, RATE)).collect();

    // Before: dave is on-premises (plan A) everywhere.
    for i in 0..3 {
        fleet.call_reaches(i, "dave@contoso.com", &fleet.plan_a, &format!("before-{i}")).await;
    }
    // One UPDATE moves him to hosted voice mail; every router routes him there.
    fleet.sql("UPDATE exum.users SET hosted_voicemail = true WHERE sip = 'sip:dave@contoso.com'");
    for i in 0..3 {
        until("dave hosted on every router", || user_is_hosted(fleet.router(i), "sip:dave@contoso.com")).await;
        fleet.call_reaches(i, "dave@contoso.com", &fleet.hosted, &format!("hosted-{i}")).await;
    }

    // A policy version (every call to plan B) uploaded, then activated by one UPDATE.
    let out = db(
        &fleet.dir.path().join("router.toml"),
        None,
        Action::Upload {
            tenant: "fabrikam".into(),
            policy: components::PLAN_B.into(),
            by: "test".into(),
            activate: false,
        },
    )
    .await
    .expect("upload");
    let version: i64 = out.split_whitespace().nth(3).and_then(|v| v.parse().ok()).expect("a version id");
    for i in 0..3 {
        fleet.call_reaches(i, "erin@fabrikam.com", &fleet.plan_a, &format!("standard-{i}")).await;
    }
    fleet.sql(&format!("UPDATE exum.policy_active SET version_id = {version} WHERE tenant_id = 'fabrikam'"));
    for i in 0..3 {
        until("the version active on every router", || {
            fleet.router(i).policy.database_version("fabrikam").is_some_and(|v| v.version_id == version)
        })
        .await;
        fleet.call_reaches(i, "erin@fabrikam.com", &fleet.plan_b, &format!("plan-b-{i}")).await;
    }
    // Rolled back through the CLI: back to the standard policy everywhere.
    db(&fleet.dir.path().join("router.toml"), None, Action::Rollback { tenant: "fabrikam".into(), by: "test".into() })
        .await
        .expect("rollback");
    for i in 0..3 {
        until("the rollback on every router", || fleet.router(i).policy.database_version("fabrikam").is_none()).await;
    }

    // The database stops under load: every router says its data is stale and goes on routing.
    assert!(loads.iter_mut().all(still_running), "the load runs while the database stops");
    tokio::task::block_in_place(|| fleet.pg.stop());
    for i in 0..3 {
        until("stale on every router", || fleet.router(i).directory_status().is_some_and(|s| !s.connected())).await;
        assert!(fleet.router(i).directory_status().is_some_and(|s| s.stale_since().is_some()));
        fleet.call_reaches(i, "dave@contoso.com", &fleet.hosted, &format!("db-down-{i}")).await;
    }
    tokio::task::block_in_place(|| fleet.pg.restart());
    assert!(loads.iter_mut().all(still_running), "the load runs while the database restarts");
    for i in 0..3 {
        until("connected again", || fleet.router(i).directory_status().is_some_and(|s| s.connected())).await;
    }
    // A later change reaches all three.
    fleet.sql("UPDATE exum.users SET hosted_voicemail = false WHERE sip = 'sip:dave@contoso.com'");
    for i in 0..3 {
        until("dave on-premises again everywhere", || !user_is_hosted(fleet.router(i), "sip:dave@contoso.com")).await;
        fleet.call_reaches(i, "dave@contoso.com", &fleet.plan_a, &format!("after-{i}")).await;
    }

    // One router dies under load: the other two's calls are unaffected.
    assert!(loads.iter_mut().all(still_running), "the load runs when a router dies");
    let dead = fleet.routers[2].take().expect("running");
    dead.stop();
    drop(dead);
    // Its own caller has no router any more (its calls would wait for sipp's timeout).
    let _ = Killed(loads.pop().expect("three loads").0);
    for (i, load) in loads.into_iter().enumerate() {
        let (ok, failed) = finished(load).await;
        assert_eq!((ok, failed), (CALLS, 0), "router {i}: every call of the load succeeded");
    }
}

/// A PostgreSQL primary (with the server `settings`) and a streaming standby of it.
async fn primary_and_standby(settings: &'static [&'static str]) -> (Postgres, Postgres) {
    let primary = tokio::task::spawn_blocking(|| Postgres::start_with(settings)).await.expect("join");
    let standby = tokio::task::block_in_place(|| Postgres::standby_of(&primary));
    (primary, standby)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_routers_follow_a_promoted_standby_under_load_and_lose_no_call() {
    const RATE: u64 = 15;
    const CALLS: u64 = 30 * RATE;
    let (primary, standby) = primary_and_standby(&[]).await;
    // Both hosts, the one taking writes chosen: the primary now, the standby once promoted.
    let url = format!(
        "postgres://router@127.0.0.1:{},127.0.0.1:{}/exum?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let mut fleet = Fleet::start_on(primary, &url, 3).await;
    let _uas = fleet.uas();
    let mut loads: Vec<_> = (0..3).map(|i| fleet.load(&format!("load{i}"), fleet.addr(i), CALLS, RATE)).collect();
    for i in 0..3 {
        fleet.call_reaches(i, "dave@contoso.com", &fleet.plan_a, &format!("before-{i}")).await;
    }
    // The primary dies; the standby is promoted; a change is made on it.
    assert!(loads.iter_mut().all(still_running), "the load runs when the primary dies");
    tokio::task::block_in_place(|| fleet.pg.stop());
    for i in 0..3 {
        until("the primary's loss seen", || fleet.router(i).directory_status().is_some_and(|s| !s.connected())).await;
    }
    let promoted = std::time::Instant::now();
    tokio::task::block_in_place(|| standby.promote());
    tokio::task::block_in_place(|| {
        standby.sql("UPDATE exum.users SET hosted_voicemail = true WHERE sip = 'sip:dave@contoso.com'")
    });
    let mut applied = Vec::new();
    for i in 0..3 {
        until("the change on the promoted standby applied", || user_is_hosted(fleet.router(i), "sip:dave@contoso.com"))
            .await;
        applied.push(promoted.elapsed());
    }
    println!("promotion to the change applied: {applied:?} (routers 0, 1, 2)");
    for i in 0..3 {
        assert!(
            fleet.router(i).directory_status().is_some_and(|s| s.connected()),
            "router {i} follows the new primary"
        );
        fleet.call_reaches(i, "dave@contoso.com", &fleet.hosted, &format!("after-{i}")).await;
    }
    assert!(loads.iter_mut().all(still_running), "the load ran through the failover");
    for (i, load) in loads.into_iter().enumerate() {
        let (ok, failed) = finished(load).await;
        assert_eq!((ok, failed), (CALLS, 0), "router {i}: every call of the load succeeded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_reading_a_standby_see_every_change_and_read_the_primary_when_its_replay_lags() {
    use exum_router::db::replica::ReadFrom;
    const CHANGES: usize = 40;
    // Commits flushed as a production primary does (the tests' default
    // leaves them to the WAL writer, up to 200 ms later, which a standby waits for).
    let (primary, standby) = primary_and_standby(&["synchronous_commit=on"]).await;
    // Changes notified by the primary, read from the standby; a read waits
    // at most 3 s for the standby to replay the change.
    let source = format!("url = \"{}\"\nread_url = \"{}\"\nread_wait_ms = 3000\n", primary.url(), standby.url());
    let (owner, conn) = tokio_postgres::connect(&primary.admin_url(), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    let fleet = Fleet::start_with(primary, &source, 2).await;
    let reads = |i: usize, from: ReadFrom| fleet.router(i).directory_status().map_or(0, |s| s.reads(from));
    for i in 0..2 {
        assert!(reads(i, ReadFrom::Replica) > 0, "router {i} read its directory from the standby");
        fleet.call_reaches(i, "dave@contoso.com", &fleet.plan_a, &format!("replica-{i}")).await;
    }
    // Propagation: from the UPDATE sent to the primary to the change applied
    // by each router (commit, notification, the standby's replay, the read).
    let mut took = Vec::new();
    for n in 0..CHANGES {
        let hosted = n % 2 == 0;
        let sent = std::time::Instant::now();
        owner
            .execute("UPDATE exum.users SET hosted_voicemail = $1 WHERE sip = 'sip:dave@contoso.com'", &[&hosted])
            .await
            .expect("update");
        let mut pending = vec![0, 1];
        while !pending.is_empty() {
            pending.retain(|&i| {
                let applied = user_is_hosted(fleet.router(i), "sip:dave@contoso.com") == hosted;
                if applied {
                    took.push(sent.elapsed());
                }
                !applied
            });
            assert!(sent.elapsed() < Duration::from_secs(20), "change {n}: not applied by routers {pending:?}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    println!(
        "standby propagation over {} changes applied: p50 {:?}, p99 {:?}, max {:?}",
        took.len(),
        at(0.5),
        at(0.99),
        took[took.len() - 1]
    );
    for i in 0..2 {
        println!(
            "router {i}: reads from the replica {}, the primary (lagging) {}, (unreachable) {}",
            reads(i, ReadFrom::Replica),
            reads(i, ReadFrom::Lagging),
            reads(i, ReadFrom::Unreachable)
        );
    }
    // The standby's replay paused: what it holds is older than the change,
    // so the routers read the primary (after waiting 3 s) and never apply
    // the standby's stale state.
    tokio::task::block_in_place(|| standby.sql("SELECT pg_wal_replay_pause()"));
    let lagging: Vec<u64> = (0..2).map(|i| reads(i, ReadFrom::Lagging)).collect();
    owner
        .execute("UPDATE exum.users SET hosted_voicemail = true WHERE sip = 'sip:dave@contoso.com'", &[])
        .await
        .expect("update");
    for (i, before) in lagging.into_iter().enumerate() {
        until("the change read from the primary", || user_is_hosted(fleet.router(i), "sip:dave@contoso.com")).await;
        assert!(reads(i, ReadFrom::Lagging) > before, "router {i} passed over the lagging standby");
        fleet.call_reaches(i, "dave@contoso.com", &fleet.hosted, &format!("lagging-{i}")).await;
    }
    let on_standby = tokio::task::block_in_place(|| {
        standby.sql("SELECT hosted_voicemail FROM exum.users WHERE sip = 'sip:dave@contoso.com'")
    });
    assert_eq!(on_standby.trim(), "f", "the standby still held the older state");
    // Replaying again: reads go back to it.
    tokio::task::block_in_place(|| standby.sql("SELECT pg_wal_replay_resume()"));
    let replica: Vec<u64> = (0..2).map(|i| reads(i, ReadFrom::Replica)).collect();
    owner
        .execute("UPDATE exum.users SET hosted_voicemail = false WHERE sip = 'sip:dave@contoso.com'", &[])
        .await
        .expect("update");
    for (i, before) in replica.into_iter().enumerate() {
        until("the change read from the standby", || !user_is_hosted(fleet.router(i), "sip:dave@contoso.com")).await;
        assert!(reads(i, ReadFrom::Replica) > before, "router {i} reads the standby again");
    }
    // The standby gone: the primary.
    let mut standby = standby;
    tokio::task::block_in_place(|| standby.stop());
    owner
        .execute("UPDATE exum.users SET hosted_voicemail = true WHERE sip = 'sip:dave@contoso.com'", &[])
        .await
        .expect("update");
    for i in 0..2 {
        until("the change read from the primary", || user_is_hosted(fleet.router(i), "sip:dave@contoso.com")).await;
        assert!(reads(i, ReadFrom::Unreachable) > 0, "router {i} read the primary without its standby");
        fleet.call_reaches(i, "dave@contoso.com", &fleet.hosted, &format!("alone-{i}")).await;
    }
    let metrics = http_get(fleet.router(0).admin_addr().expect("admin"), "/metrics").await;
    assert!(metrics.contains("exum_directory_reads_total{outcome=\"replica\"}"), "{metrics}");
    drop(fleet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_that_expands_keeps_older_routers_running_and_one_that_contracts_waits_for_them() {
    use exum_router::db::schema;
    let mut fleet = Fleet::start(1).await;
    let config = fleet.dir.path().join("r0/router.toml");
    // A newer release's migrations, applied as its first router would.
    let database =
        exum_router::db::Database::new(&exum_router::control::config::PostgresSettings::with_url(fleet.pg.url()))
            .expect("database");
    let own = schema::version();
    let migration = |v: i32, name: &str, sql: &str| {
        refinery::Migration::unapplied(&format!("V{v}__{name}"), sql).expect("migration")
    };
    // Expand: a column with a default and a table, nothing older routers read changed.
    let expand = [
        schema::migrations(),
        vec![migration(
            own + 1,
            "user_notes",
            "ALTER TABLE exum.users ADD COLUMN note text NOT NULL DEFAULT ''; CREATE TABLE exum.user_notes (sip text)",
        )],
    ]
    .concat();
    let prepared = database.prepare(true, &expand).await.expect("the expand step applies beside the older router");
    assert_eq!((prepared.applied.len(), prepared.database), (1, own + 1), "{prepared:?}");
    // The older router follows changes made the new way, and routes them.
    fleet.sql("UPDATE exum.users SET hosted_voicemail = true, note = 'moved' WHERE sip = 'sip:dave@contoso.com'");
    until("the change applied by the older router", || user_is_hosted(fleet.router(0), "sip:dave@contoso.com")).await;
    fleet.call_reaches(0, "dave@contoso.com", &fleet.hosted, "expand-0").await;
    // It restarts against the newer schema (no migration of its own to run).
    fleet.routers[0].take().expect("running").stop();
    fleet.routers[0] = Some(Server::start(&config).await.expect("an older router starts against an expanded schema"));
    fleet.call_reaches(0, "dave@contoso.com", &fleet.hosted, "expand-1").await;
    // Contract: a column older routers read renamed. Refused while one runs.
    let contract = [
        expand.clone(),
        vec![migration(
            own + 2,
            "eum_renamed",
            &format!(
                "-- exum-router: min_router_schema = {}\nALTER TABLE exum.users RENAME COLUMN eum TO eum_address",
                own + 2
            ),
        )],
    ]
    .concat();
    let Err(e) = database.prepare(true, &contract).await else { panic!("contracted under an older router") };
    let why = e.to_string();
    assert!(why.contains(&format!("V{} works only with routers of schema {} or later", own + 2, own + 2)), "{why}");
    assert!(why.contains(&format!("1 connected router is older: exum-router/schema-{own} at 127.0.0.1")), "{why}");
    let version = |fleet: &Fleet| fleet.sql("SELECT max(version) FROM refinery_schema_history").trim().to_owned();
    assert_eq!(version(&fleet), (own + 1).to_string(), "nothing applied");
    fleet.call_reaches(0, "dave@contoso.com", &fleet.hosted, "contract-0").await;
    // The older router gone, the contract step applies; an older router then
    // refuses to start, saying why.
    fleet.routers[0].take().expect("running").stop();
    until("the older router's session gone", || {
        fleet.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'exum-router/schema-%'").trim()
            == "0"
    })
    .await;
    let prepared = database.prepare(true, &contract).await.expect("the contract step applies");
    assert_eq!(prepared.database, own + 2);
    assert_eq!(fleet.sql("SELECT min_router_schema FROM exum.schema_compatibility").trim(), (own + 2).to_string());
    let Err(e) = Server::start(&config).await else { panic!("an older router started against a contracted schema") };
    let chain = format!("{e:#}");
    assert!(chain.contains(&format!("works with routers of schema {} or later", own + 2)), "{chain}");
    assert!(chain.contains(&format!("this router's schema is {own}: upgrade it")), "{chain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_that_missed_changes_catches_up_when_it_reconnects() {
    let fleet = Fleet::start(1).await;
    fleet.call_reaches(0, "dave@contoso.com", &fleet.plan_a, "catch-0").await;
    // Shut the router out: no login for its role, its sessions ended.
    fleet.sql(
        "ALTER ROLE router NOLOGIN; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'router'",
    );
    until("the router sees the connection lost", || fleet.router(0).directory_status().is_some_and(|s| !s.connected()))
        .await;
    // Changes it cannot be notified of: dave hosted, a new user, erin's tenant's plan A moved.
    fleet.sql(
        "UPDATE exum.users SET hosted_voicemail = true WHERE sip = 'sip:dave@contoso.com'; \
         INSERT INTO exum.users (tenant_id, sip, eum) VALUES ('contoso', 'sip:zoe@contoso.com', 'eum:zoe@contoso.com;phone-context=B')",
    );
    assert!(!user_is_hosted(fleet.router(0), "sip:dave@contoso.com"), "not applied while disconnected");
    fleet.sql("ALTER ROLE router LOGIN");
    until("connected again", || fleet.router(0).directory_status().is_some_and(|s| s.connected())).await;
    until("caught up", || user_is_hosted(fleet.router(0), "sip:dave@contoso.com")).await;
    fleet.call_reaches(0, "dave@contoso.com", &fleet.hosted, "catch-1").await;
    fleet.call_reaches(0, "zoe@contoso.com", &fleet.plan_b, "catch-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_starts_from_its_snapshot_while_the_database_is_down_and_catches_up_when_it_returns() {
    let mut fleet = Fleet::start(1).await;
    fleet.call_reaches(0, "dave@contoso.com", &fleet.plan_a, "snap-0").await;
    let config = fleet.dir.path().join("r0/router.toml");
    let snapshot = fleet.dir.path().join("r0/cache/directory.snapshot");
    until("the snapshot written", || snapshot.exists()).await;
    let first = exum_router::db::snapshot::read(&snapshot).expect("a snapshot").0.taken_at_ms;
    // The router stops; so does the database.
    fleet.routers[0].take().expect("running").stop();
    tokio::task::block_in_place(|| fleet.pg.stop());
    let started = std::time::Instant::now();
    let server = Server::start(&config).await.expect("the router starts from its snapshot");
    let took = started.elapsed();
    let status = server.directory_status().expect("a database source").json();
    assert_eq!(
        (status["connected"].as_bool(), status["from_snapshot"].as_bool()),
        (Some(false), Some(true)),
        "{status}"
    );
    assert_eq!(status["stale"].as_bool(), Some(true), "{status}");
    assert!(status["snapshot_taken_at"].as_u64().is_some(), "{status}");
    fleet.routers[0] = Some(server);
    // It routes on the snapshot's directory.
    fleet.call_reaches(0, "dave@contoso.com", &fleet.plan_a, "snap-1").await;
    fleet.call_reaches(0, "erin@fabrikam.com", &fleet.plan_a, "snap-2").await;
    println!("started from the snapshot in {} ms (connect_timeout_ms = 2000)", took.as_millis());
    // The database returns, with a change made meanwhile (by SQL after its
    // restart, before the router reconnects or after: either way applied).
    tokio::task::block_in_place(|| fleet.pg.restart());
    fleet.sql("UPDATE exum.users SET hosted_voicemail = true WHERE sip = 'sip:dave@contoso.com'");
    until("connected again", || fleet.router(0).directory_status().is_some_and(|s| s.connected())).await;
    until("caught up", || user_is_hosted(fleet.router(0), "sip:dave@contoso.com")).await;
    let status = fleet.router(0).directory_status().expect("status").json();
    assert_eq!((status["from_snapshot"].as_bool(), status["stale"].as_bool()), (Some(false), Some(false)), "{status}");
    fleet.call_reaches(0, "dave@contoso.com", &fleet.hosted, "snap-3").await;
    // A torn snapshot with the database down: a clear start-up error.
    fleet.routers[0].take().expect("running").stop();
    until("a snapshot taken after the catch-up", || {
        exum_router::db::snapshot::read(&snapshot).is_ok_and(|(s, _)| s.taken_at_ms > first)
    })
    .await;
    tokio::task::block_in_place(|| fleet.pg.stop());
    let whole = std::fs::read(&snapshot).expect("read");
    std::fs::write(&snapshot, &whole[..whole.len() / 2]).expect("tear");
    let Err(e) = Server::start(&config).await else { panic!("a torn snapshot was used") };
    let (top, chain) = (e.to_string(), format!("{e:#}"));
    assert!(top.contains("cannot be reached") && top.contains("no usable snapshot"), "{top}");
    assert!(chain.contains("checksum does not match"), "{chain}");
    tokio::task::block_in_place(|| fleet.pg.restart());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_fails_validation_is_refused_for_its_tenant_alone() {
    let fleet = Fleet::start(1).await;
    let server = fleet.router(0);
    let applied = |s: &Server| s.directory_status().map_or(0, |d| d.changes_applied());
    // A line that is no number, in contoso: refused, contoso keeps its data.
    let before = applied(server);
    fleet.sql("UPDATE exum.users SET line = 'garbage' WHERE sip = 'sip:dave@contoso.com'");
    until("contoso refused", || server.directory_status().is_some_and(|d| d.refused("contoso").is_some())).await;
    let why = server.directory_status().and_then(|d| d.refused("contoso")).expect("refused");
    assert!(why.contains("users (sip = sip:dave@contoso.com).line") && why.contains("garbage"), "{why}");
    assert_eq!(applied(server), before, "nothing applied for contoso");
    fleet.call_reaches(0, "dave@contoso.com", &fleet.plan_a, "refused-0").await;
    // Fabrikam changes meanwhile apply.
    fleet
        .sql("UPDATE exum.users SET eum = 'eum:erin@fabrikam.com;phone-context=B' WHERE sip = 'sip:erin@fabrikam.com'");
    until("fabrikam applied", || applied(server) > before).await;
    fleet.call_reaches(0, "erin@fabrikam.com", &fleet.plan_b, "refused-1").await;
    // On the admin API and in the metrics.
    let admin = server.admin_addr().expect("admin");
    let body = http_get(admin, "/directory").await;
    assert!(body.contains("\"tenant\":\"contoso\"") && body.contains("garbage"), "{body}");
    let metrics = http_get(admin, "/metrics").await;
    assert!(metrics.contains("exum_directory_refused_tenants 1"), "{metrics}");
    assert!(metrics.contains("exum_directory_changes_total{outcome=\"refused\"} 1"), "{metrics}");
    // Fixed: applied, no longer refused.
    fleet.sql("UPDATE exum.users SET line = 'tel:+14255550123' WHERE sip = 'sip:dave@contoso.com'");
    until("contoso applied again", || server.directory_status().is_some_and(|d| d.refused("contoso").is_none())).await;
    let tenants = server.proxy.tenants();
    let dave = tenants.by_id("contoso").and_then(|t| t.directory.user("+14255550123").cloned());
    assert_eq!(dave.map(|u| u.sip), Some("sip:dave@contoso.com".to_owned()));
    // A row that cannot even be read as a directory entry (a contact of no known kind).
    fleet.sql(
        "INSERT INTO exum.contacts (tenant_id, sip, number, kind) VALUES ('contoso', 'sip:sa@contoso.com', '+14255550199', 'voicemail')",
    );
    until("contoso refused again", || server.directory_status().is_some_and(|d| d.refused("contoso").is_some())).await;
    let why = server.directory_status().and_then(|d| d.refused("contoso")).expect("refused");
    assert!(why.contains("contacts (sip = sip:sa@contoso.com).kind: `voicemail`"), "{why}");
    fleet.call_reaches(0, "dave@contoso.com", &fleet.plan_a, "refused-2").await;
    fleet.sql("UPDATE exum.contacts SET kind = 'subscriber-access' WHERE sip = 'sip:sa@contoso.com'");
    until("contoso with its contact", || {
        server.proxy.tenants().by_id("contoso").is_some_and(|t| t.directory.contact("sip:sa@contoso.com").is_some())
    })
    .await;
    assert!(server.directory_status().is_some_and(|d| d.refused("contoso").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_resolving_the_fleet_by_srv_loses_no_call_when_an_instance_dies() {
    const RATE: u64 = 20;
    const CALLS: u64 = 20 * RATE;
    let mut fleet = Fleet::start(3).await;
    let uas = answering(UdpPeer::bind_on(fleet.uas_at).await);
    // The fleet by SRV: three records of equal priority and weight.
    let mut records = Vec::new();
    for i in 0..3 {
        let name = format!("r{i}.fleet.test");
        records.push(exum_router_tests::dns::srv("_sip._udp.fleet.test", 10, 10, fleet.addr(i).port(), &name));
        records.push(exum_router_tests::dns::a(&name, Ipv4Addr::LOCALHOST));
    }
    let dns = exum_router_tests::dns::serve(records).await;
    // The caller's side: a router whose contoso users' UM is `sip:fleet.test` (RFC 3263).
    let front_dir = fleet.dir.path().join("front");
    std::fs::create_dir(&front_dir).expect("mkdir");
    let mut directory = String::new();
    for i in 0..20 {
        directory.push_str(&format!(
            "[[tenants.contoso.users]]\nsip = \"sip:user{i}@contoso.com\"\neum = \"eum:user{i}@contoso.com;phone-context=FLEET\"\n"
        ));
    }
    directory.push_str(
        "[[tenants.contoso.dial_plans]]\nname = \"FLEET\"\nphone_context = \"FLEET\"\n\
         servers = [{ uri = \"sip:fleet.test;transport=udp\", timeout_ms = 1000 }]\n",
    );
    std::fs::write(front_dir.join("directory.toml"), directory).expect("write");
    std::fs::write(
        front_dir.join("router.toml"),
        format!(
            "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
             [probes]\nenabled = false\n[dns]\nservers = [\"{}\"]\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\npeers = [\"127.0.0.0/8\"]\n",
            dns.addr
        ),
    )
    .expect("write");
    let front = Server::start(&front_dir.join("router.toml")).await.expect("front router");
    let mut load = fleet.load("srv", front.local_addr(Transport::Udp).expect("udp"), CALLS, RATE);
    // Every instance takes calls, then the third dies (between two of its
    // transactions: one in flight dies with it, see docs/deployment.md).
    let decided = |s: &Server| s.proxy.metrics.transactions.get();
    until("every instance takes calls", || fleet.running().all(|s| decided(s) >= 10)).await;
    assert!(still_running(&mut load), "the load runs when the instance dies");
    until("no transaction in flight on the third", || fleet.router(2).proxy.in_flight() == 0).await;
    let dead = fleet.routers[2].take().expect("running");
    dead.stop();
    drop(dead);
    let at_death: Vec<u64> = fleet.running().map(decided).collect();
    let (ok, failed) = finished(load).await;
    assert_eq!((ok, failed), (CALLS, 0), "every call through the fleet succeeded");
    for (s, before) in fleet.running().zip(at_death) {
        assert!(decided(s) > before, "the living instances took the calls after the death");
    }
    uas.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_is_reached_over_tls_verified_against_the_configured_ca() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
    };
    let (ours, other) = (ca("database CA"), ca("another CA"));
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ours).expect("signed");
    let mut pg = tokio::task::spawn_blocking(Postgres::start).await.expect("join");
    tokio::task::block_in_place(|| pg.enable_tls(&cert.pem(), &key.serialize_pem()));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), ours.pem()).expect("write");
    std::fs::write(dir.path().join("other.pem"), other.pem()).expect("write");
    let config = |ca: &str| {
        format!(
            "[directory]\nsource = \"postgres\"\nurl = \"{}\"\ntls = true\nca = \"{ca}\"\nconnect_timeout_ms = 2000\n\
             [[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n[probes]\nenabled = false\n\
             [[tenant]]\nid = \"fabrikam\"\ndomains = [\"fabrikam.com\"]\n",
            pg.url()
        )
    };
    std::fs::write(dir.path().join("router.toml"), config("ca.pem")).expect("write");
    std::fs::write(dir.path().join("other.toml"), config("other.pem")).expect("write");
    // A CA that did not sign the database's certificate: no connection, no start.
    let e = Server::start(&dir.path().join("other.toml")).await.expect_err("refused").to_string();
    let e = format!("{e:#}");
    assert!(e.contains("[directory]"), "{e}");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("the router starts over TLS");
    assert!(server.directory_status().is_some_and(|s| s.connected()));
    let ssl = tokio::task::block_in_place(|| {
        pg.sql("SELECT bool_and(s.ssl) AND count(*) > 0 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'exum-router'")
    });
    assert_eq!(ssl.trim(), "t", "every connection of the router uses TLS");
    fleet_sql_then_applied(&pg, &server).await;
}

/// A row written now reaches `server` (over whatever connection it has).
async fn fleet_sql_then_applied(pg: &Postgres, server: &Server) {
    tokio::task::block_in_place(|| {
        pg.sql(
            "INSERT INTO exum.tenants (tenant_id) VALUES ('fabrikam') ON CONFLICT DO NOTHING; \
             INSERT INTO exum.users (tenant_id, sip) VALUES ('fabrikam', 'sip:erin@fabrikam.com')",
        )
    });
    until("the new user on the router", || {
        server.proxy.tenants().by_id("fabrikam").is_some_and(|t| t.directory.user("sip:erin@fabrikam.com").is_some())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_versions_are_uploaded_activated_and_rolled_back_through_the_admin_api() {
    let fleet = Fleet::start(1).await;
    let server = fleet.router(0);
    let admin = server.admin_addr().expect("admin");
    let b = std::fs::read(components::PLAN_B).expect("B");
    let a = std::fs::read(components::PLAN_A).expect("A");
    // Not a component: refused before it is stored.
    let refused = http(admin, "POST", "/tenants/fabrikam/policy/versions", b"not wasm").await;
    assert!(refused.starts_with("HTTP/1.1 422"), "{refused}");
    let up = http(admin, "POST", "/tenants/fabrikam/policy/versions", &b).await;
    assert!(up.starts_with("HTTP/1.1 201") && up.contains("\"activated\":false"), "{up}");
    let id_b = json_field(&up, "version_id");
    let list = http(admin, "GET", "/tenants/fabrikam/policy/versions", b"").await;
    assert!(list.contains("\"uploaded_by\":\"ops\"") && list.contains("\"active\":false"), "{list}");
    let act = http(admin, "POST", &format!("/tenants/fabrikam/policy/versions/{id_b}/activate"), b"").await;
    assert!(act.starts_with("HTTP/1.1 200"), "{act}");
    until("B active", || server.policy.database_version("fabrikam").is_some_and(|v| v.version_id == id_b)).await;
    fleet.call_reaches(0, "erin@fabrikam.com", &fleet.plan_b, "api-b").await;
    // Uploaded and activated at once.
    let up = http(admin, "POST", "/tenants/fabrikam/policy/versions?activate=true", &a).await;
    let id_a = json_field(&up, "version_id");
    until("A active", || server.policy.database_version("fabrikam").is_some_and(|v| v.version_id == id_a)).await;
    fleet.call_reaches(0, "erin@fabrikam.com", &fleet.plan_a, "api-a").await;
    // Rolled back: B again.
    let back = http(admin, "POST", "/tenants/fabrikam/policy/rollback", b"").await;
    assert!(back.contains(&format!("\"activated\":{id_b}")), "{back}");
    until("B active again", || server.policy.database_version("fabrikam").is_some_and(|v| v.version_id == id_b)).await;
    fleet.call_reaches(0, "erin@fabrikam.com", &fleet.plan_b, "api-b2").await;
    // A version of another tenant cannot be activated here.
    let wrong = http(
        admin,
        "POST",
        "/tenants/contoso/policy/versions/{id_b}/activate".replace("{id_b}", &id_b.to_string()).as_str(),
        b"",
    )
    .await;
    assert!(wrong.starts_with("HTTP/1.1 422") && wrong.contains("not a version of tenant contoso"), "{wrong}");
    // The CLI sees the same history.
    let versions = db(&fleet.dir.path().join("router.toml"), None, Action::Versions { tenant: "fabrikam".into() })
        .await
        .expect("versions");
    assert_eq!(versions.lines().count(), 2, "{versions}");
    assert!(versions.lines().any(|l| l.starts_with('*') && l.contains(&format!(" {id_b} "))), "{versions}");
    let shown =
        db(&fleet.dir.path().join("router.toml"), None, Action::Show { tenant: "contoso".into() }).await.expect("show");
    assert!(shown.contains("sip:dave@contoso.com") && shown.contains("\"domains\""), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_deployment_imported_into_the_database_routes_as_from_its_file() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.expect("join");
    let example = exum_router_tests::deployment_config();
    // `exum-router db import --config examples/deployment/router.toml --url ...`
    let out = db(&example, Some(pg.url()), Action::Import { file: None }).await.expect("the example imports");
    assert!(out.contains("3 tenants"), "{out}");
    // The same configuration reading the database instead of the file.
    let file_config = exum_router::control::config::RouterConfig::load(&example).expect("the example loads");
    let mut pg_config = file_config.clone();
    pg_config.directory = "postgres".into();
    pg_config.directory_source =
        exum_router::control::config::DirectorySource::Postgres(exum_router::control::config::PostgresSettings {
            pool_size: 1,
            ..exum_router::control::config::PostgresSettings::with_url(pg.url())
        });
    let exum_router::control::config::DirectorySource::Postgres(settings) = &pg_config.directory_source else {
        unreachable!()
    };
    let database = exum_router::db::Database::new(settings).expect("database");
    let initial = exum_router::db::follow::initial(database, pg_config.clone(), Default::default())
        .await
        .expect("the database reads");
    assert!(initial.status.refused("contoso").is_none() && initial.status.refused("litware").is_none());
    let from_db = exum_router_tests::Plane::new(initial.tenants);
    let from_file = exum_router_tests::Plane::deployment();
    let ids = |p: &exum_router_tests::Plane| p.tenants.iter().map(|t| t.config.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&from_db), ids(&from_file));
    for t in from_file.tenants.iter() {
        let other = from_db.tenants.by_id(&t.config.id).expect("the same tenants");
        assert_eq!(other.config, t.config, "{}: the same settings", t.config.id);
        assert_eq!(other.directory.user_count(), t.directory.user_count(), "{}: the same users", t.config.id);
    }
    // Every example request is decided the same way.
    let dir = exum_router_tests::workspace().join("examples/deployment/requests");
    let mut compared = 0;
    for entry in std::fs::read_dir(&dir).expect("requests").flatten() {
        let sip = std::fs::read_to_string(entry.path()).expect("read");
        let decide = |p: &exum_router_tests::Plane| {
            let (tenant, req) = p.request(&sip);
            format!("{:?}", p.policy(&tenant).route(&tenant, &req).decision)
        };
        assert_eq!(decide(&from_db), decide(&from_file), "{}", entry.path().display());
        compared += 1;
    }
    assert!(compared >= 8, "{compared} requests compared");
    // What [MS-EUMR] adds to the directory is kept: UM server versions, a
    // dial plan's selection, a user's several EUM addresses.
    let shown = db(&example, Some(pg.url()), Action::Show { tenant: "contoso".into() }).await.expect("shows");
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("json");
    let plans = shown["dial_plans"].as_array().cloned().unwrap_or_default();
    let plan = |name: &str| plans.iter().find(|p| p["name"] == name).cloned().unwrap_or_default();
    let versions: Vec<Option<u64>> =
        plan("DP-Redmond")["servers"].as_array().into_iter().flatten().map(|s| s["version"].as_u64()).collect();
    assert_eq!(versions, [Some(14), Some(15), Some(15)], "{shown}");
    // Stored beside `servers`, which routers of the previous release read
    // (they refuse keys they do not know).
    let stored =
        pg.sql("SELECT servers::text || ' ' || server_versions::text FROM exum.dial_plans WHERE name = 'DP-Redmond'");
    assert!(!stored.contains("version") && stored.trim().ends_with("{14,15,15}"), "{stored}");
    assert_eq!(plan("DP-Paris")["selection"], "round-robin", "{shown}");
    let users = shown["users"].as_array().cloned().unwrap_or_default();
    let henry = users.iter().find(|u| u["sip"] == "sip:henry@contoso.com").cloned().unwrap_or_default();
    assert_eq!(henry["eum"].as_array().map(Vec::len), Some(2), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_configuration_is_applied_to_every_tenant_read_from_the_database() {
    let fleet = Fleet::start(1).await;
    let server = fleet.router(0);
    // fabrikam gains a domain in router.toml: a reload validates every tenant against it.
    let config = fleet.dir.path().join("r0/router.toml");
    let text = std::fs::read_to_string(&config)
        .expect("read")
        .replace("domains = [\"fabrikam.com\"]", "domains = [\"fabrikam.com\", \"fabrikam.net\"]");
    std::fs::write(&config, text).expect("write");
    let reply = http(server.admin_addr().expect("admin"), "POST", "/reload", b"").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    until("fabrikam.net served", || server.proxy.tenants().by_domain("fabrikam.net").is_some()).await;
    let tenants = server.proxy.tenants();
    assert!(tenants.by_id("fabrikam").is_some_and(|t| t.directory.user("sip:erin@fabrikam.com").is_some()));
    assert!(tenants.by_id("contoso").is_some_and(|t| t.directory.user_count() == 21), "contoso kept its data");
    // A configuration that takes contoso's domain for fabrikam: contoso (from the database) is refused, keeps its data.
    let text = std::fs::read_to_string(&config).expect("read").replace("\"fabrikam.net\"", "\"contoso.com\"");
    std::fs::write(&config, text).expect("write");
    let reply = http(server.admin_addr().expect("admin"), "POST", "/reload", b"").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    until("contoso refused", || server.directory_status().is_some_and(|d| d.refused("contoso").is_some())).await;
    let why = server.directory_status().and_then(|d| d.refused("contoso")).expect("refused");
    assert!(why.contains("contoso.com") && why.contains("another tenant"), "{why}");
}

fn json_field(response: &str, field: &str) -> i64 {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
    v[field].as_i64().unwrap_or_else(|| panic!("{field} in {response}"))
}

/// Whether router `server`'s candidate for fabrikam is the database's version
/// `version_id`, rolled back or not as `rolled_back` says.
fn candidate_is(server: &Server, version_id: i64, rolled_back: bool) -> bool {
    server
        .policy
        .current("fabrikam")
        .and_then(|p| p.candidate.clone())
        .is_some_and(|c| c.origin == Some(version_id) && c.is_rolled_back() == rolled_back)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_s_candidate_lives_in_the_database_and_a_canary_one_router_rolls_back_is_rolled_back_on_all() {
    let fleet = Fleet::start(2).await;
    let (r0, r1) = (fleet.router(0), fleet.router(1));
    let (admin0, admin1) = (r0.admin_addr().expect("admin"), r1.admin_addr().expect("admin"));
    let plan_b = std::fs::read(components::PLAN_B).expect("B");
    // A shadow started through one router's API runs on both.
    let r = http(admin0, "POST", "/tenants/fabrikam/policy/candidate?mode=shadow", &plan_b).await;
    assert!(r.starts_with("HTTP/1.1 201") && r.contains("\"fleet\":true"), "{r}");
    let shadow = json_field(&r, "version_id");
    until("the shadow on both routers", || candidate_is(r0, shadow, false) && candidate_is(r1, shadow, false)).await;
    // A canary that faults on every call replaces it, on both.
    let hostile = std::fs::read(components::HOSTILE).expect("hostile");
    let path = "/tenants/fabrikam/policy/candidate?mode=canary&share=1&min_calls=3";
    let r = http(admin1, "POST", path, &hostile).await;
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    let canary = json_field(&r, "version_id");
    until("the canary on both routers", || candidate_is(r0, canary, false) && candidate_is(r1, canary, false)).await;
    // Calls through router 0 only: the fallback (standard) routes them to plan
    // A, and router 0 rolls the canary back after 3 faults; router 1, which
    // decided none of them, follows through the database.
    for i in 0..3 {
        fleet.call_reaches(0, "erin@fabrikam.com", &fleet.plan_a, &format!("canary-{i}")).await;
    }
    until("the rollback on both routers", || candidate_is(r0, canary, true) && candidate_is(r1, canary, true)).await;
    let reason = r1.policy.current("fabrikam").and_then(|p| p.candidate.clone()).and_then(|c| c.rollback_reason());
    assert!(reason.as_deref().is_some_and(|r| r.starts_with("fault rate 100.0% against 0.0%")), "{reason:?}");
    let row = fleet.sql("SELECT state FROM exum.policy_candidates WHERE tenant_id = 'fabrikam'");
    assert!(row.contains("rolled_back"), "{row}");
    let r = http(admin1, "POST", "/tenants/fabrikam/policy/candidate/promote", b"").await;
    assert!(r.starts_with("HTTP/1.1 409"), "a rolled-back canary is not promoted: {r}");
    // A good canary, a stored version this time, promoted through the other
    // router: both serve it, neither has a candidate.
    let path = format!("/tenants/fabrikam/policy/candidate?mode=canary&share=1&from={shadow}");
    let r = http(admin1, "POST", &path, b"").await;
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    until("the good canary on both", || candidate_is(r0, shadow, false) && candidate_is(r1, shadow, false)).await;
    fleet.call_reaches(1, "erin@fabrikam.com", &fleet.plan_b, "canary-b").await;
    let r = http(admin0, "POST", "/tenants/fabrikam/policy/candidate/promote", b"").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    until("B serving everywhere", || {
        fleet.running().all(|s| {
            s.policy.database_version("fabrikam").is_some_and(|v| v.version_id == shadow)
                && s.policy.current("fabrikam").is_some_and(|p| p.candidate.is_none())
        })
    })
    .await;
    fleet.call_reaches(0, "erin@fabrikam.com", &fleet.plan_b, "promoted-b").await;
    let r = http(admin0, "DELETE", "/tenants/fabrikam/policy/candidate", b"").await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
}
