//! The directory in PostgreSQL, measured (a PostgreSQL server of its own in a
//! temporary folder, as the tests start it):
//!
//! - `fleet propagation [changes]`: three routers on one database; for each of
//!   `changes` (100) UPDATEs of a user, the time from the COMMIT to the moment
//!   each router routes with the new data (its tenants swapped: the next call
//!   uses them; polled every 0.2 ms, and one call checked through each router at
//!   the end), p50/p99; the same for policy activations (two versions activated
//!   in turn by one UPDATE each).
//! - `fleet scale [tenants] [users]`: `tenants` × `users` (10,000 × 100) in the
//!   database and the same directory as a JSON file; for each, a router
//!   process's start time (spawn to `/ready`) and RSS after start, and with
//!   the database stopped, from the snapshot the routers keep; in this
//!   process, the user lookup time and the time one incremental change takes to
//!   apply with all the tenants loaded.
//!
//! Build first: `cargo build --release -p exum-router -p exum-bench`.
//! Writes `bench/results/fleet.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use exum_router::model::Transport;
use exum_router::model::wire::Name;
use exum_router::server::Server;
use exum_router_tests::components;
use exum_router_tests::peer::{UdpPeer, response, udp_request};
use exum_router_tests::postgres::Postgres;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

/// Waits until `cond` holds, polling every 0.2 ms; the time it took.
async fn wait_for(start: Instant, cond: impl Fn() -> bool) -> Duration {
    let deadline = start + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "not applied within 30 s");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    start.elapsed()
}

fn router_toml(pg: &Postgres) -> String {
    format!(
        "policy_cache = \"cache\"\n[directory]\nsource = \"postgres\"\nurl = \"{}\"\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n[probes]\nenabled = false\n\
         [[tenant]]\nid = \"fabrikam\"\ndomains = [\"fabrikam.com\"]\n",
        pg.url()
    )
}

async fn propagation(changes: usize) -> String {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.expect("join");
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, hosted) = (UdpPeer::bind().await, UdpPeer::bind().await, UdpPeer::bind().await);
    let mut directory = format!(
        "[tenants.contoso]\ndomains = [\"contoso.com\"]\npeers = [\"127.0.0.0/8\"]\nedge = \"sip:{}\"\n",
        hosted.addr
    );
    directory.push_str(
        "[[tenants.contoso.users]]\nsip = \"sip:dave@contoso.com\"\neum = \"eum:dave@contoso.com;phone-context=A\"\n",
    );
    directory
        .push_str("[[tenants.contoso.hosted_voicemail_policies]]\nscope = \"global\"\ndestination = \"um.example\"\n");
    directory.push_str("[[tenants.fabrikam.users]]\nsip = \"sip:erin@fabrikam.com\"\neum = \"eum:erin@fabrikam.com;phone-context=A\"\n");
    for t in ["contoso", "fabrikam"] {
        for (name, at) in [("A", a.addr), ("B", b.addr)] {
            directory.push_str(&format!(
                "[[tenants.{t}.dial_plans]]\nname = \"{name}\"\nphone_context = \"{name}\"\nservers = [{{ uri = \"sip:{at}\" }}]\n"
            ));
        }
    }
    std::fs::write(dir.path().join("directory.toml"), directory).expect("write");
    std::fs::write(dir.path().join("router.toml"), router_toml(&pg)).expect("write");
    exum_router::cli::db::execute(
        &dir.path().join("router.toml"),
        None,
        exum_router::cli::db::Action::Import { file: Some(dir.path().join("directory.toml")) },
    )
    .await
    .expect("import");
    let mut routers = Vec::new();
    for i in 0..3 {
        let own = dir.path().join(format!("r{i}"));
        std::fs::create_dir(&own).expect("mkdir");
        std::fs::write(own.join("router.toml"), router_toml(&pg)).expect("write");
        routers.push(Server::start(&own.join("router.toml")).await.expect("router"));
    }
    let client = connect(&pg.admin_url()).await;
    let hosted_on = |s: &Server| {
        s.proxy
            .tenants()
            .by_id("contoso")
            .and_then(|t| t.directory.user("sip:dave@contoso.com").cloned())
            .map(|u| u.voicemail == exum_router::control::directory::VoicemailSetting::Hosted)
            == Some(true)
    };
    let mut directory_times: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    for k in 0..changes {
        let hosted_now = k.is_multiple_of(2);
        client
            .execute("UPDATE exum.users SET hosted_voicemail = $1 WHERE sip = 'sip:dave@contoso.com'", &[&hosted_now])
            .await
            .expect("update");
        let committed = Instant::now();
        for (i, r) in routers.iter().enumerate() {
            directory_times[i].push(wait_for(committed, || hosted_on(r) == hosted_now).await);
        }
    }
    // One call through each router goes where the last change says.
    let caller = UdpPeer::bind().await;
    let last_hosted = (changes - 1).is_multiple_of(2);
    for (i, r) in routers.iter().enumerate() {
        let call_id = format!("check-{i}");
        let to = r.local_addr(Transport::Udp).expect("udp");
        caller
            .send(to, &udp_request("INVITE", "sip:dave@contoso.com;opaque=app:voicemail", caller.addr, &call_id))
            .await;
        let at = if last_hosted { &hosted } else { &a };
        let (inv, from) = at.expect_request("INVITE").await;
        assert_eq!(inv.first(Name::CallId), Some(call_id.as_str()));
        at.send(from, &response(&inv, 200, "um", "")).await;
        caller.final_response().await;
    }

    // Policy versions: two uploaded, then activated in turn.
    let mut ids = Vec::new();
    for (file, name) in [(components::PLAN_A, "A"), (components::PLAN_B, "B")] {
        let bytes = std::fs::read(file).expect("component");
        let db = exum_router::db::Database::new(&exum_router::control::config::PostgresSettings {
            pool_size: 1,
            ..exum_router::control::config::PostgresSettings::with_url(pg.url())
        })
        .expect("db");
        let c = db.client("bench").await.expect("client");
        ids.push((exum_router::db::policies::upload(&c, "fabrikam", &bytes, name).await.expect("upload"), name));
    }
    let mut policy_times: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    let mut first_times: Vec<Duration> = Vec::new();
    for k in 0..changes {
        let (id, _) = ids[k % 2];
        client
            .execute("UPDATE exum.policy_active SET version_id = $1 WHERE tenant_id = 'fabrikam'", &[&id])
            .await
            .expect("activate");
        let committed = Instant::now();
        for (i, r) in routers.iter().enumerate() {
            let t =
                wait_for(committed, || r.policy.database_version("fabrikam").is_some_and(|v| v.version_id == id)).await;
            // The first activation of each version compiles it; later ones come from the disk cache.
            if k < 2 {
                first_times.push(t);
            } else {
                policy_times[i].push(t);
            }
        }
    }
    drop(routers);
    drop(pg);

    let mut out = String::from("## Propagation: COMMIT to routing with the new data, three routers\n\n");
    let _ = writeln!(
        out,
        "`fleet propagation {changes}`; each router on its own port in this process, one PostgreSQL on loopback.\n"
    );
    out.push_str("| change | router | n | p50 | p99 | max |\n|---|---|---:|---:|---:|---:|\n");
    for (what, times) in
        [("user UPDATE (directory)", &mut directory_times), ("policy activation (cached)", &mut policy_times)]
    {
        for (i, t) in times.iter_mut().enumerate() {
            t.sort();
            let _ = writeln!(
                out,
                "| {what} | {i} | {} | {} | {} | {} |",
                t.len(),
                ms(percentile(t, 0.5)),
                ms(percentile(t, 0.99)),
                ms(*t.last().unwrap_or(&Duration::ZERO))
            );
        }
    }
    first_times.sort();
    let _ = writeln!(
        out,
        "\nFirst activation of each version (compiled by each router, then in its disk cache): {} samples, max {}.\n",
        first_times.len(),
        ms(*first_times.last().unwrap_or(&Duration::ZERO))
    );
    out
}

/// The scale directory: `tenants` defined in the database, `users` each, made
/// by SQL; and the same as a JSON directory file.
fn scale_sql(tenants: usize, users: usize) -> String {
    format!(
        "INSERT INTO exum.tenants (tenant_id, settings)
           SELECT 't' || i, jsonb_build_object('domains', jsonb_build_array('t' || i || '.example'))
             FROM generate_series(0, {t}) i;
         INSERT INTO exum.dial_plans (tenant_id, name, phone_context, servers)
           SELECT 't' || i, 'DP', 'DP.t' || i || '.example',
                  jsonb_build_array(jsonb_build_object('uri', 'sip:um.t' || i || '.example'))
             FROM generate_series(0, {t}) i;
         INSERT INTO exum.users (tenant_id, sip, line, eum)
           SELECT 't' || i, 'sip:u' || j || '@t' || i || '.example', 'tel:+1' || lpad(i::text, 6, '0') || lpad(j::text, 4, '0'),
                  'eum:u' || j || '@t' || i || '.example;phone-context=DP.t' || i || '.example'
             FROM generate_series(0, {t}) i, generate_series(0, {u}) j;",
        t = tenants - 1,
        u = users - 1
    )
}

fn scale_json(tenants: usize, users: usize) -> String {
    let mut out = String::from("{\"tenants\":{");
    for i in 0..tenants {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "\"t{i}\":{{\"domains\":[\"t{i}.example\"],\"dial_plans\":[{{\"name\":\"DP\",\"phone_context\":\"DP.t{i}.example\",\"servers\":[{{\"uri\":\"sip:um.t{i}.example\"}}]}}],\"users\":["
        );
        for j in 0..users {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"sip\":\"sip:u{j}@t{i}.example\",\"line\":\"tel:+1{i:06}{j:04}\",\"eum\":\"eum:u{j}@t{i}.example;phone-context=DP.t{i}.example\"}}"
            );
        }
        out.push_str("]}");
    }
    out.push_str("}}");
    out
}

async fn scale(tenants: usize, users: usize) -> String {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.expect("join");
    let dir = tempfile::tempdir().expect("tempdir");
    // The schema, then the rows.
    let db_settings = exum_router::control::config::PostgresSettings {
        pool_size: 2,
        ..exum_router::control::config::PostgresSettings::with_url(pg.url())
    };
    let db = exum_router::db::Database::new(&db_settings).expect("db");
    db.migrate().await.expect("migrate");
    let client = connect(&pg.url()).await;
    let t = Instant::now();
    client.batch_execute(&scale_sql(tenants, users)).await.expect("rows");
    let loaded_in = t.elapsed();
    client.batch_execute("VACUUM ANALYZE").await.expect("vacuum");
    std::fs::write(dir.path().join("directory.json"), scale_json(tenants, users)).expect("write");
    let file_mib =
        std::fs::metadata(dir.path().join("directory.json")).map_or(0, |m| m.len()) as f64 / (1 << 20) as f64;

    let admin = |port: u16| format!("[admin]\naddress = \"127.0.0.1:{port}\"\n");
    let common = "[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n[probes]\nenabled = false\n";
    let (p1, p2) = (exum_bench::harness::free_port(), exum_bench::harness::free_port());
    std::fs::write(
        dir.path().join("pg.toml"),
        format!(
            "policy_cache = \"cache\"\n[directory]\nsource = \"postgres\"\nurl = \"{}\"\n{common}{}",
            pg.url(),
            admin(p1)
        ),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("file.toml"),
        format!("directory = \"directory.json\"\ndirectory_max_mib = 512\n{common}{}", admin(p2)),
    )
    .expect("write");
    let (pg_start, pg_rss) = tokio::task::block_in_place(|| {
        exum_bench::harness::serve_until_ready(
            &dir.path().join("pg.toml"),
            ([127, 0, 0, 1], p1).into(),
            Some("\"connected\":true"),
        )
    });
    let (file_start, file_rss) = tokio::task::block_in_place(|| {
        exum_bench::harness::serve_until_ready(&dir.path().join("file.toml"), ([127, 0, 0, 1], p2).into(), None)
    });

    // In this process: lookups and one incremental change with everything loaded.
    let server = Server::start(&dir.path().join("pg.toml")).await.expect("router");
    let all = server.proxy.tenants();
    let keys: Vec<(String, String)> = (0..10_000)
        .map(|k| {
            let (i, j) = ((k * 7919) % tenants, (k * 104_729) % users);
            (format!("t{i}"), format!("sip:u{j}@t{i}.example"))
        })
        .collect();
    let t = Instant::now();
    let mut found = 0usize;
    for _ in 0..10 {
        for (tenant, user) in &keys {
            if all.by_id(tenant).and_then(|t| t.directory.user(user)).is_some() {
                found += 1;
            }
        }
    }
    let lookup = t.elapsed() / (10 * keys.len() as u32);
    assert_eq!(found, 10 * keys.len());
    let t = Instant::now();
    for (_, user) in &keys {
        let tenant = user.rsplit('@').next().and_then(|d| all.by_domain(d));
        assert!(tenant.is_some());
    }
    let by_domain = t.elapsed() / keys.len() as u32;
    let mut change_times = Vec::new();
    // One user of one tenant, changed 20 times.
    let probe_tenant = format!("t{}", 42.min(tenants - 1));
    let probe_user = format!("sip:u{}@{probe_tenant}.example", 7.min(users - 1));
    for k in 0..20 {
        let site = format!("site-{k}");
        let before = server.directory_status().map_or(0, |d| d.changes_applied());
        client
            .execute(
                "UPDATE exum.users SET site = $1 WHERE tenant_id = $2 AND sip = $3",
                &[&site, &probe_tenant, &probe_user],
            )
            .await
            .expect("update");
        let committed = Instant::now();
        change_times.push(
            wait_for(committed, || {
                server.directory_status().map_or(0, |d| d.changes_applied()) > before
                    && server
                        .proxy
                        .tenants()
                        .by_id(&probe_tenant)
                        .and_then(|t| t.directory.user(&probe_user).and_then(|u| u.site.clone()))
                        .as_deref()
                        == Some(site.as_str())
            })
            .await,
        );
    }
    change_times.sort();
    // The snapshot the routers keep (written a second after their changes).
    let snapshot = dir.path().join("cache/directory.snapshot");
    let t = Instant::now();
    while !snapshot.exists() {
        assert!(t.elapsed() < Duration::from_secs(120), "no snapshot written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(server);
    drop(pg);
    // The database down: a router starts from the snapshot.
    let snapshot_mib = std::fs::metadata(&snapshot).map_or(0, |m| m.len()) as f64 / (1 << 20) as f64;
    let (snapshot_start, snapshot_rss) = tokio::task::block_in_place(|| {
        exum_bench::harness::serve_until_ready(
            &dir.path().join("pg.toml"),
            ([127, 0, 0, 1], p1).into(),
            Some("\"from_snapshot\":true"),
        )
    });

    let mut out = format!("## Scale: {tenants} tenants × {users} users\n\n");
    let _ = writeln!(
        out,
        "`fleet scale {tenants} {users}`; rows written by SQL in {:.1} s; the same directory as a JSON file of {file_mib:.0} MiB.\n",
        loaded_in.as_secs_f64()
    );
    out.push_str("| source | start to /ready | RSS after start |\n|---|---:|---:|\n");
    let _ = writeln!(out, "| PostgreSQL | {:.2} s | {pg_rss:.0} MiB |", pg_start.as_secs_f64());
    let _ = writeln!(out, "| JSON file | {:.2} s | {file_rss:.0} MiB |", file_start.as_secs_f64());
    let _ = writeln!(
        out,
        "| PostgreSQL down: from the snapshot ({snapshot_mib:.0} MiB) | {:.2} s | {snapshot_rss:.0} MiB |",
        snapshot_start.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "\nUser lookup (tenant by id, then user by SIP address), all loaded: {:.0} ns; tenant by domain: {:.0} ns.\n",
        lookup.as_nanos(),
        by_domain.as_nanos()
    );
    let _ = writeln!(
        out,
        "One incremental change (one user's row, UPDATE to applied on a router holding all {} tenants): p50 {}, max {} over {} changes.\n",
        tenants,
        ms(percentile(&change_times, 0.5)),
        ms(*change_times.last().unwrap_or(&Duration::ZERO)),
        change_times.len()
    );
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let report = match args.first().map(String::as_str) {
        Some("propagation") => propagation(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(100)).await,
        Some("scale") => {
            scale(
                args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10_000),
                args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100),
            )
            .await
        }
        _ => {
            eprintln!("usage: fleet propagation [changes] | fleet scale [tenants] [users]");
            std::process::exit(2);
        }
    };
    print!("{report}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/fleet.md");
    let mut existing = std::fs::read_to_string(&path).unwrap_or_else(|_| "# The directory in PostgreSQL\n\n".into());
    let heading = report.lines().next().unwrap_or_default().split(':').next().unwrap_or_default().to_owned();
    // Replace the section of the same kind, keep the other.
    if let Some(start) = existing.find(&heading) {
        let end =
            existing[start + heading.len()..].find("\n## ").map_or(existing.len(), |e| start + heading.len() + e + 1);
        existing.replace_range(start..end, &report);
    } else {
        existing.push_str(&report);
    }
    std::fs::write(&path, existing).expect("write results");
}
