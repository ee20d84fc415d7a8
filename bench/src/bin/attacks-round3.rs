//! The attacks of the third security review, replayed against the release
//! router (a process of its own, on loopback, a deployment as shipped: a
//! tenant with no `peers`, no record-routing, the admin API with a token
//! file), with what each measured before the fixes beside what it measures
//! now. Each attack is bounded in count and time.
//!
//! `cargo build --release && cargo run --release -p exum-bench --bin attacks-round3`
//! (about two minutes); writes `bench/results/attacks-round3.md`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use exum_bench::attack::{answering_um, count_arrivals, cpu_seconds, place_calls, status_bytes};
use exum_bench::harness::{bound, router_exe, serve_in, stop};
use exum_router_tests::peer::{UdpPeer, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUTER: u16 = 5971;
const ADMIN: u16 = 9971;

fn router_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ROUTER))
}

/// One HTTP request to the admin API: the status and body.
async fn http(method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", ADMIN)).await else { return (0, String::new()) };
    let head =
        format!("{method} {path} HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// A sample of the Prometheus exposition (summed over the lines that match).
async fn metric(name: &str, label: &str) -> u64 {
    let (_, body) = http("GET", "/metrics", "Host: localhost\r\n", b"").await;
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn write_deployment(dir: &Path, um: SocketAddr, silent: SocketAddr) {
    let config = format!(
        "directory = \"directory.toml\"\npolicy_cache = \"cache\"\n[[listen]]\naddress = \"127.0.0.1:{ROUTER}\"\n\
         transports = [\"udp\", \"tcp\"]\n[probes]\nenabled = false\n[admin]\naddress = \"127.0.0.1:{ADMIN}\"\n\
         token_file = \"admin.token\"\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\nuniform_user_answers = true\n\
         [[tenant]]\nid = \"fabrikam\"\ndomains = [\"fabrikam.com\"]\npeers = [\"127.0.0.5/32\"]\n"
    );
    std::fs::write(dir.join("router.toml"), config).expect("write");
    let directory = format!(
        "[[tenants.contoso.users]]\nsip = \"sip:user0@contoso.com\"\neum = \"eum:user0@contoso.com;phone-context=DP1\"\n\
         [[tenants.contoso.users]]\nsip = \"sip:silent@contoso.com\"\neum = \"eum:silent@contoso.com;phone-context=DP2\"\n\
         [[tenants.contoso.users]]\nsip = \"sip:off@contoso.com\"\n\
         [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:{um}\" }}]\n\
         [[tenants.contoso.dial_plans]]\nname = \"DP2\"\nphone_context = \"DP2\"\nservers = [{{ uri = \"sip:{silent}\" }}]\n\
         [[tenants.fabrikam.users]]\nsip = \"sip:user0@fabrikam.com\"\neum = \"eum:user0@fabrikam.com;phone-context=DP1\"\n\
         [[tenants.fabrikam.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:{um}\" }}]\n"
    );
    std::fs::write(dir.join("directory.toml"), &directory).expect("write");
}

type Row = (String, String, String);

fn row(rows: &mut Vec<Row>, attack: &str, before: &str, after: String) {
    eprintln!("{attack}: {after}");
    rows.push((attack.into(), before.into(), after));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let um = Arc::new(UdpPeer::bind().await);
    let silent = Arc::new(UdpPeer::bind().await);
    write_deployment(d, um.addr, silent.addr);
    answering_um(um.clone());
    let silent_arrivals = count_arrivals(silent.clone());
    let router = serve_in(d);
    let pid = router.id();
    assert!(bound(ROUTER), "the router did not bind {ROUTER}");
    let token = std::fs::read_to_string(d.join("admin.token")).expect("the token file").trim().to_owned();
    let auth = format!("Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n");
    let mut rows: Vec<Row> = Vec::new();

    // 1. Open relay through a tenant's domain.
    let third = Arc::new(UdpPeer::bind_on("127.0.0.2:7777".parse().expect("addr")).await);
    let reached = count_arrivals(third.clone());
    let fraud = Arc::new(UdpPeer::bind_on("127.0.0.3:0".parse().expect("addr")).await);
    let answered_fraud = count_arrivals(fraud.clone());
    for i in 0..6_000u64 {
        let text = format!(
            "INVITE sip:+15551234567@127.0.0.2:7777 SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-r{i};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:anyone@contoso.com>;tag=a1\r\nTo: <sip:+15551234567@127.0.0.2>;tag=b{i}\r\n\
             Call-ID: relay{i}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            fraud.addr
        );
        let _ = fraud.socket.send_to(text.as_bytes(), router_addr()).await;
        if i % 15 == 14 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = metric("exum_sip_access_refused_total", "reason=\"tenant\"").await
        + metric("exum_sip_access_refused_total", "reason=\"dialog\"").await;
    let banned = metric("exum_sip_overload_refused_total", "reason=\"banned\"").await;
    row(
        &mut rows,
        "1. 6,000 in-dialog INVITEs at 1,500/s with a tenant's From, to a third address (tenant without `peers`)",
        "20,787 datagrams (8.7 MB) reached it in 12 s; 0 refused, no ban",
        format!(
            "{} datagrams reached it; {refused} refused ({} answered 403, {banned} dropped once the source was banned)",
            reached.load(Ordering::Relaxed),
            answered_fraud.load(Ordering::Relaxed)
        ),
    );

    // 2. A forged ACK naming the router, and a flood of them beside real calls.
    let forger = UdpPeer::bind_on("127.0.0.4:0".parse().expect("addr")).await;
    let forger_addr = forger.addr;
    let ack = move |i: u64| {
        format!(
            "ACK sip:x@{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-ack{i}\r\nMax-Forwards: 70\r\n\
             From: <sip:a@x.example>;tag=1\r\nTo: <sip:b@x.example>;tag=2\r\nCall-ID: ack{i}\r\nCSeq: 1 ACK\r\n\
             Content-Length: 0\r\n\r\n",
            router_addr(),
            forger_addr
        )
    };
    let loops_before = metric("exum_sip_dropped_total", "").await;
    let _ = forger.socket.send_to(ack(0).as_bytes(), router_addr()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dropped_one = metric("exum_sip_dropped_total", "").await - loops_before;
    let flood = {
        let forger = Arc::new(forger);
        tokio::spawn(async move {
            for i in 1..=10_000u64 {
                let _ = forger.socket.send_to(ack(i).as_bytes(), router_addr()).await;
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        })
    };
    let caller = UdpPeer::bind().await;
    let exum_bench::attack::Answers { ok, .. } =
        place_calls(router_addr(), &caller, 300, Duration::from_millis(20), Duration::from_secs(3), "ackflood").await;
    let _ = flood.await;
    row(
        &mut rows,
        "2. One ACK whose Request-URI is the router; then 10,000 such ACKs at 1,000/s beside 300 real calls",
        "forwarded 147 times to itself; calls' p50 0.5 → 13-14 ms, ~1% unanswered, 13,149 kernel UDP drops",
        format!(
            "the one ACK dropped once ({dropped_one} message dropped); {ok} of 300 real calls answered during the flood"
        ),
    );

    // 3. The admin API driven cross-site.
    let standard = exum_router::policy::STANDARD_COMPONENT;
    let (form, _) = http(
        "POST",
        "/tenants/contoso/policy/candidate?mode=canary&share=1",
        "Host: 127.0.0.1\r\nOrigin: http://attacker.example\r\nContent-Type: text/plain\r\n",
        standard,
    )
    .await;
    let (simple, _) = http("POST", "/reload", "Host: 127.0.0.1\r\nContent-Type: text/plain\r\n", b"").await;
    let (rebinding, _) = http("GET", "/tenants", "Host: attacker.example\r\n", b"").await;
    row(
        &mut rows,
        "3. Simple cross-site POSTs (candidate upload, reload) and a rebinding `Host` against the admin API on loopback",
        "200 for each: the attacker's component served, across a restart; `Host: attacker.example` 200",
        format!(
            "candidate upload from another origin {form}; simple POST without the token {simple}; foreign Host {rebinding}"
        ),
    );

    // 4. Compile bombs.
    let rss_before = status_bytes(pid, "VmRSS:");
    let many = exum_router::policy::engine::component_with_functions(990_000);
    let started = Instant::now();
    let (many_status, _) = http("POST", "/tenants/contoso/policy/candidate?mode=shadow", &auth, &many).await;
    let many_ms = started.elapsed().as_millis();
    let nested = exum_router::policy::engine::component_with_nested_blocks(7 << 20);
    let started = Instant::now();
    let (nested_status, nested_body) =
        http("POST", "/tenants/contoso/policy/candidate?mode=shadow", &auth, &nested).await;
    let nested_s = started.elapsed().as_secs_f64();
    // Two at once (two different bombs).
    let started = Instant::now();
    let other = exum_router::policy::engine::component_with_nested_blocks((7 << 20) - 4096);
    let (a, b) = tokio::join!(
        http("POST", "/tenants/contoso/policy/candidate?mode=shadow", &auth, &nested),
        http("POST", "/tenants/fabrikam/policy/candidate?mode=shadow", &auth, &other),
    );
    let both_s = started.elapsed().as_secs_f64();
    let peak = status_bytes(pid, "VmHWM:");
    let standard_hash = exum_router::policy::hex_sha256(standard);
    let artifacts: Vec<String> = std::fs::read_dir(d.join("cache"))
        .map(|r| {
            r.flatten().filter(|e| e.path().is_file()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
        })
        .unwrap_or_default();
    let only_standard = artifacts.iter().all(|a| a.starts_with(&standard_hash));
    row(
        &mut rows,
        "4. A policy of 990,000 empty functions (4 MB); one 7 MB function of nested blocks",
        "6.2 GB RSS (two at once 11.4 GB), ~59 s each, a 212 MB artifact left in `policy_cache`",
        format!(
            "990,000 functions: {many_status} in {many_ms} ms, not compiled; nested blocks: {nested_status} after {nested_s:.1} s in a child capped at 1 GiB ({}); two at once: {} and {} after {both_s:.1} s; router RSS {:.0} MB before, peak {:.0} MB; artifacts in `policy_cache`: {} ({})",
            nested_body.trim(),
            a.0,
            b.0,
            rss_before as f64 / 1e6,
            peak as f64 / 1e6,
            artifacts.len(),
            if only_standard { "the standard policy's" } else { "others left" }
        ),
    );

    // 5. Cheap requests the router answers itself, from 10 addresses, beside real calls.
    let mut flooders = Vec::new();
    for i in 0..10u8 {
        flooders.push(Arc::new(UdpPeer::bind_on(SocketAddr::from(([127, 0, 2, i + 1], 0))).await));
    }
    let cpu_before = cpu_seconds(pid);
    let sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let (flooders, sent) = (flooders.clone(), sent.clone());
        tokio::spawn(async move {
            let end = Instant::now() + Duration::from_secs(10);
            let mut n = 0u64;
            while Instant::now() < end {
                for f in &flooders {
                    n += 1;
                    let id = format!("cheap{n}");
                    let text =
                        request("OPTIONS", "sip:x@nowhere.example", f.addr, "UDP", &id, &format!("z9hG4bK-{id}"));
                    let _ = f.socket.send_to(text.as_bytes(), router_addr()).await;
                }
                tokio::time::sleep(Duration::from_millis(6)).await;
            }
            sent.store(n, Ordering::Relaxed);
        })
    };
    let caller = UdpPeer::bind().await;
    let exum_bench::attack::Answers { ok, busy, .. } =
        place_calls(router_addr(), &caller, 200, Duration::from_millis(40), Duration::from_secs(3), "beside").await;
    let _ = flood.await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let sent = sent.load(Ordering::Relaxed);
    row(
        &mut rows,
        "5. OPTIONS the router answers 404 itself, ~1,600/s from 10 addresses for 10 s, beside 200 real calls",
        "the table's 50,000 filled by lingering transactions: 79 and 145 of 200 real calls got 503",
        format!(
            "{ok} of 200 real calls answered, {busy} got 503; {sent} OPTIONS in {cpu:.2} CPU-s for everything ({:.1} µs each at most)",
            cpu * 1e6 / sent.max(1) as f64
        ),
    );

    // The cost of one request the router answers itself: 20,000 OPTIONS alone
    // from 10 addresses (each within its rate), the router's CPU time for them.
    let cpu_before = cpu_seconds(pid);
    let table_before = metric("exum_sip_transactions_active", "").await;
    let mut n = 0u64;
    for round in 0..2_000u64 {
        for f in &flooders {
            n += 1;
            let id = format!("alone{n}");
            let text = request("OPTIONS", "sip:x@nowhere.example", f.addr, "UDP", &id, &format!("z9hG4bK-{id}"));
            let _ = f.socket.send_to(text.as_bytes(), router_addr()).await;
        }
        if round % 4 == 3 {
            tokio::time::sleep(Duration::from_millis(8)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alone = cpu_seconds(pid) - cpu_before;
    let transactions = metric("exum_sip_transactions_active", "").await;
    row(
        &mut rows,
        "5b. The cost of a request the router answers itself: 20,000 OPTIONS answered 404, alone",
        "a server transaction each, lingering 32 s (Timer J)",
        format!(
            "{:.1} µs of the router's CPU each ({alone:.2} CPU-s, receiving and sending included); transactions in the table {table_before} before them, {transactions} after (their answers are kept for retransmissions in the answered-requests cache instead)",
            alone * 1e6 / n as f64
        ),
    );

    // 6. A flood with a tenant peer's address.
    let peer = UdpPeer::bind_on("127.0.0.5:0".parse().expect("addr")).await;
    for i in 0..6_300u64 {
        let id = format!("spoof{i}");
        let text = request("OPTIONS", "sip:user0@fabrikam.com", peer.addr, "UDP", &id, &format!("z9hG4bK-{id}"));
        let _ = peer.socket.send_to(text.as_bytes(), router_addr()).await;
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(9)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    while peer.recv_within(Duration::from_millis(200)).await.is_some() {}
    let (_, bans) = http("GET", "/bans", "Host: 127.0.0.1\r\n", b"").await;
    let mut answered = 0;
    for i in 0..26 {
        let id = format!("after{i}");
        let text = request("OPTIONS", "sip:user0@fabrikam.com", peer.addr, "UDP", &id, &format!("z9hG4bK-{id}"));
        peer.send(router_addr(), &text).await;
        if peer.recv_within(Duration::from_millis(500)).await.is_some() {
            answered += 1;
        }
    }
    row(
        &mut rows,
        "6. ~1,050 requests/s for 6 s with a tenant peer's address",
        "the peer banned for 60 s: 14 of its 26 requests dropped",
        format!("bans: {}; {answered} of the peer's 26 requests answered afterwards", bans.trim()),
    );

    // 7. CANCEL from a stranger copying the caller's Via and branch.
    let caller = UdpPeer::bind().await;
    let stranger = UdpPeer::bind_on("127.0.0.6:0".parse().expect("addr")).await;
    let invite = request(
        "INVITE",
        "sip:silent@contoso.com;opaque=app:voicemail",
        caller.addr,
        "UDP",
        "cancelled",
        "z9hG4bK-cancelled",
    );
    let at_um = silent_arrivals.load(Ordering::Relaxed);
    caller.send(router_addr(), &invite).await;
    while silent_arrivals.load(Ordering::Relaxed) == at_um {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cancel = invite.replacen("INVITE sip", "CANCEL sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    stranger.send(router_addr(), &cancel).await;
    let to_stranger = stranger.recv_within(Duration::from_secs(2)).await.and_then(|(m, _)| m.status());
    let mut to_caller = Vec::new();
    while let Some((m, _)) = caller.recv_within(Duration::from_millis(700)).await {
        to_caller.extend(m.status());
    }
    row(
        &mut rows,
        "7. A CANCEL from another address copying the caller's Via and branch",
        "the caller's INVITE cancelled (487)",
        format!(
            "the stranger answered {}; the caller got {to_caller:?} (no 487)",
            to_stranger.map_or("nothing".into(), |c| c.to_string())
        ),
    );

    // 8a. Idle TCP connections from 40 addresses, then a tenant's peer connects.
    let mut idle = Vec::new();
    for a in 0..40u8 {
        for _ in 0..110 {
            let Ok(socket) = tokio::net::TcpSocket::new_v4() else { break };
            if socket.bind(SocketAddr::from(([127, 0, 3, a + 1], 0))).is_err() {
                break;
            }
            if let Ok(s) = socket.connect(router_addr()).await {
                idle.push(s);
            }
        }
    }
    let opened = idle.len();
    // Those the router accepted and kept: a read that does not end at once.
    let still_open = |idle: &mut Vec<tokio::net::TcpStream>| {
        let mut open = 0;
        let mut buf = [0u8; 64];
        for s in idle.iter_mut() {
            match s.try_read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
                _ => {}
            }
        }
        open
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open_at_first = still_open(&mut idle);
    let peer_answered = {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.5:0".parse().expect("addr")).expect("bind");
        match socket.connect(router_addr()).await {
            Ok(mut s) => {
                let local = s.local_addr().expect("addr");
                let text = request("OPTIONS", "sip:user0@fabrikam.com", local, "TCP", "tcp-peer", "z9hG4bK-tcp-peer");
                let _ = s.write_all(text.as_bytes()).await;
                let mut buf = vec![0u8; 4096];
                matches!(tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await, Ok(Ok(n)) if n > 0)
            }
            Err(_) => false,
        }
    };
    tokio::time::sleep(Duration::from_secs(6)).await;
    let open_later = still_open(&mut idle);
    drop(idle);
    row(
        &mut rows,
        "8a. 40 addresses × 110 idle TCP connections, then a tenant's peer connects over TCP",
        "legitimate TCP peers locked out",
        format!(
            "{opened} opened, {open_at_first} open after 0.5 s (the cap and 128 per address); the peer {}; {open_later} still open 6.5 s later (closed without a first message in 5 s)",
            if peer_answered { "connected and was answered" } else { "was NOT answered" }
        ),
    );

    // 8. User enumeration (the tenant's uniform_user_answers), and what a start refuses.
    let prober = UdpPeer::bind().await;
    let mut answers = Vec::new();
    for user in ["nobody", "off"] {
        let id = format!("enum-{user}");
        let text = request(
            "INVITE",
            &format!("sip:{user}@contoso.com;opaque=app:voicemail"),
            prober.addr,
            "UDP",
            &id,
            &format!("z9hG4bK-{id}"),
        );
        prober.send(router_addr(), &text).await;
        let answer = loop {
            let (m, _) = prober.recv().await;
            if m.status().is_some_and(|c| c >= 200) {
                break format!(
                    "{} {}",
                    m.status().unwrap_or(0),
                    m.header("ms-diagnostics").unwrap_or("").split(';').next().unwrap_or("")
                );
            }
        };
        answers.push(answer);
    }
    stop(router);
    let bad = tempfile::tempdir().expect("tempdir");
    std::fs::write(bad.path().join("directory.toml"), "").expect("write");
    std::fs::write(
        bad.path().join("router.toml"),
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n[[tenant]]\nid = \"..\"\ndomains = [\"a.test\"]\n",
    )
    .expect("write");
    let dots = Command::new(router_exe())
        .args(["serve", "--config", "router.toml"])
        .current_dir(bad.path())
        .output()
        .expect("runs");
    std::fs::write(
        bad.path().join("router.toml"),
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n[[tenant]]\nid = \"t\"\ndomains = [\"t.test\"]\n",
    )
    .expect("write");
    std::fs::write(bad.path().join("directory.toml"), format!("# {}\n", "x".repeat(100 << 20))).expect("write");
    let huge = Command::new(router_exe())
        .args(["serve", "--config", "router.toml"])
        .current_dir(bad.path())
        .output()
        .expect("runs");
    let last = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("").to_owned();
    row(
        &mut rows,
        "8. An unknown and a not-enabled user probed; a tenant id `..`; a 100 MB directory line",
        "404 15004 and 480 15000 tell them apart; `..` accepted (records under `records/../`); 100 MB and 1 million users accepted at 2.1 GB RSS",
        format!(
            "unknown: {}, not enabled: {} (with `uniform_user_answers`); `..`: exit {:?} `{}`; 100 MB: exit {:?} `{}`",
            answers[0],
            answers[1],
            dots.status.code(),
            last(&dots),
            huge.status.code(),
            last(&huge)
        ),
    );

    let mut md = String::from(
        "Attacks of the third security review, replayed by `cargo run --release -p exum-bench --bin attacks-round3` against \
         the release router on loopback (a deployment as shipped: no `peers` for contoso, no record-routing, the admin \
         API with a token file; contoso answers users uniformly, fabrikam names a peer). Idle TCP connections locking out \
         peers (item 8) are in `red_team::idle_connections_neither_last_nor_lock_out_a_tenants_peers`; the directory cut \
         short in the second review's table (`attacks`).\n\n\
         | attack | before | after |\n|---|---|---|\n",
    );
    for (attack, before, after) in &rows {
        md.push_str(&format!("| {attack} | {before} | {} |\n", after.replace('|', "\\|")));
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&out).expect("results dir");
    std::fs::write(out.join("attacks-round3.md"), &md).expect("write");
    println!("{md}");
}
