//! The attacks of the second security review, replayed against the release
//! router (a process of its own, on loopback) with what each measured then
//! beside what it measures now. Each attack is bounded in count and time.
//!
//! `cargo build --release && cargo run --release -p exum-bench --bin attacks`
//! (about a minute); writes `bench/results/attacks.md`.
//!
//! 1. Forged dialogs: 30,000 INVITEs with a To tag for a domain no tenant owns,
//!    aimed at a third address, at 6,000/s, while a caller places 300 real calls.
//! 2. Forged 2xx: 1,000 forged 200s (60 KB) whose second Via is a third
//!    address; 2,000 200s with 240 Vias naming the router (its CPU time).
//! 3. Slow connections: 500 sending a header a byte a second, 200 sending a
//!    60,000-byte body a byte a second; how many are open after 15 s.
//! 4. A directory file rewritten in place (truncated, whole 300 ms later)
//!    while 300 calls arrive.
//! 5. Memory: 10,000 INVITEs with a 60 KB body to a UM server that never
//!    answers, from 20 addresses; the router's peak RSS.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use exum_bench::attack::{answering_um, count_arrivals, cpu_seconds, place_calls, status_bytes};
use exum_bench::harness::{bound, serve_in, stop};
use exum_router_tests::peer::{UdpPeer, request};
use tokio::io::AsyncWriteExt;

const ROUTER: u16 = 5970;
const ADMIN: u16 = 9970;

fn router_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ROUTER))
}

/// A counter of one Prometheus sample from the admin API.
async fn metric(name: &str, label: &str) -> u64 {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", ADMIN)).await else { return 0 };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
    let mut out = String::new();
    let _ = tokio::io::AsyncReadExt::read_to_string(&mut s, &mut out).await;
    out.lines()
        .find(|l| l.starts_with(name) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn forged_dialog(attacker: SocketAddr, victim: SocketAddr, i: u64) -> String {
    format!(
        "INVITE sip:v@{victim} SIP/2.0\r\nVia: SIP/2.0/UDP {attacker};branch=z9hG4bK-f{i};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:a@northwind.example>;tag=1\r\nTo: <sip:v@northwind.example>;tag=forged\r\nCall-ID: f{i}\r\n\
         CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
}

fn forged_ok(vias: &[String], body: usize) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for v in vias {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    out.push_str(&format!(
        "From: <sip:a@x.example>;tag=1\r\nTo: <sip:b@x.example>;tag=2\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\n\
         Content-Length: {body}\r\n\r\n{}",
        "x".repeat(body)
    ));
    out
}

/// Opens `count` connections from 127.0.0.`first`.. (50 per address), each
/// writing `head` and then a byte a second; how many are open after `wait`.
async fn slow_connections(count: usize, first: u8, head: &'static str, wait: Duration) -> usize {
    let mut tasks = Vec::new();
    for i in 0..count {
        let from = SocketAddr::from(([127, 0, 0, first + (i / 50) as u8], 0));
        tasks.push(tokio::spawn(async move {
            let socket = tokio::net::TcpSocket::new_v4().ok()?;
            socket.bind(from).ok()?;
            let mut s = socket.connect(SocketAddr::from(([127, 0, 0, 1], ROUTER))).await.ok()?;
            s.write_all(head.as_bytes()).await.ok()?;
            let end = Instant::now() + wait;
            let mut buf = [0u8; 512];
            while Instant::now() < end {
                if s.write_all(b"x").await.is_err() {
                    return Some(false);
                }
                // Closed by the router: the read sees the end (or an error).
                if let Ok(r) =
                    tokio::time::timeout(Duration::from_secs(1), tokio::io::AsyncReadExt::read(&mut s, &mut buf)).await
                    && matches!(r, Ok(0) | Err(_))
                {
                    return Some(false);
                }
            }
            Some(true)
        }));
    }
    let mut open = 0;
    for t in tasks {
        if let Ok(Some(true)) = t.await {
            open += 1;
        }
    }
    open
}

fn write_deployment(dir: &Path, um: SocketAddr, silent: SocketAddr) -> String {
    let config = format!(
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:{ROUTER}\"\ntransports = [\"udp\", \"tcp\"]\n\
         [probes]\nenabled = false\n[admin]\naddress = \"127.0.0.1:{ADMIN}\"\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\nrecord_route = true\n"
    );
    std::fs::write(dir.join("router.toml"), config).expect("write");
    let directory = format!(
        "[[tenants.contoso.users]]\nsip = \"sip:user0@contoso.com\"\neum = \"eum:user0@contoso.com;phone-context=DP1\"\n\
         [[tenants.contoso.users]]\nsip = \"sip:silent@contoso.com\"\neum = \"eum:silent@contoso.com;phone-context=DP2\"\n\
         [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:{um}\" }}]\n\
         [[tenants.contoso.dial_plans]]\nname = \"DP2\"\nphone_context = \"DP2\"\nservers = [{{ uri = \"sip:{silent}\", timeout_ms = 30000 }}]\n"
    );
    std::fs::write(dir.join("directory.toml"), &directory).expect("write");
    directory
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let um = Arc::new(UdpPeer::bind().await);
    let silent = Arc::new(UdpPeer::bind().await);
    let directory = write_deployment(d, um.addr, silent.addr);
    answering_um(um.clone());
    let _silent_arrivals = count_arrivals(silent.clone());
    let router = serve_in(d);
    let pid = router.id();
    assert!(bound(ROUTER), "the router did not bind {ROUTER}");
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // 1. Forged dialogs while a caller places real calls.
    let victim = Arc::new(UdpPeer::bind_on("127.0.0.2:0".parse().expect("addr")).await);
    let reached = count_arrivals(victim.clone());
    let attacker = Arc::new(UdpPeer::bind_on("127.0.0.3:0".parse().expect("addr")).await);
    let answers_to_attacker = count_arrivals(attacker.clone());
    let caller = UdpPeer::bind().await;
    let flood = {
        let (attacker, victim) = (attacker.clone(), victim.addr);
        tokio::spawn(async move {
            for batch in 0..500u64 {
                for j in 0..60 {
                    let _ = attacker
                        .socket
                        .send_to(forged_dialog(attacker.addr, victim, batch * 60 + j).as_bytes(), router_addr())
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let exum_bench::attack::Answers { ok, .. } =
        place_calls(router_addr(), &caller, 300, Duration::from_millis(10), Duration::from_secs(5), "legit").await;
    let _ = flood.await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let refused = metric("exum_sip_access_refused_total", "reason=\"dialog\"").await;
    let banned = metric("exum_sip_overload_refused_total", "reason=\"banned\"").await;
    rows.push((
        "30,000 forged in-dialog INVITEs at 6,000/s to a third address".into(),
        "5 datagrams reached it per request; all admitted past a cap of 1,000; other callers starved".into(),
        format!(
            "{} datagrams reached it; {refused} refused: {} answered 404, {banned} dropped once the source was banned (after 5 s at twice its rate); {ok} of 300 real calls answered meanwhile",
            reached.load(Ordering::Relaxed),
            answers_to_attacker.load(Ordering::Relaxed)
        ),
    ));
    eprintln!("{:?}", rows.last());

    // 2. Forged 2xx.
    let before = reached.load(Ordering::Relaxed);
    let forged_via = format!("SIP/2.0/UDP {};branch=z9hG4bK-0000000000000001-1-0123456789abcdef", router_addr());
    let to_victim = format!("SIP/2.0/UDP {};branch=z9hG4bK-v", victim.addr);
    let big = forged_ok(&[forged_via.clone(), to_victim.clone()], 60_000);
    for _ in 0..1000 {
        let _ = attacker.socket.send_to(big.as_bytes(), router_addr()).await;
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let mut looping = vec![forged_via; 240];
    looping.push(to_victim);
    let looping = forged_ok(&looping, 0);
    let cpu_before = cpu_seconds(pid);
    for _ in 0..2000 {
        let _ = attacker.socket.send_to(looping.as_bytes(), router_addr()).await;
        tokio::time::sleep(Duration::from_micros(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    rows.push((
        "1,000 forged 200s (60 KB) whose second Via is a third address; 2,000 200s with 240 Vias naming the router"
            .into(),
        "1,000 of 1,000 reflected; the 240-Via 200s passed through the router 240 times each, 3.15 CPU-s".into(),
        format!(
            "{} reflected; {:.2} CPU-s for the 2,000 240-Via 200s (each dropped once)",
            reached.load(Ordering::Relaxed) - before,
            cpu
        ),
    ));
    eprintln!("{:?}", rows.last());

    // 3. Slow connections.
    let (headers, bodies) = tokio::join!(
        slow_connections(
            500,
            10,
            "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1\r\nX-Slow: ",
            Duration::from_secs(15)
        ),
        slow_connections(
            200,
            30,
            "INVITE sip:user0@contoso.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKs\r\nMax-Forwards: 70\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:user0@contoso.com>\r\nCall-ID: s\r\nCSeq: 1 INVITE\r\nContent-Length: 60000\r\n\r\n",
            Duration::from_secs(15)
        ),
    );
    rows.push((
        "500 connections sending a header a byte a second; 200 sending a 60,000-byte body a byte a second".into(),
        "500 of 500 open after 50 s; 200 of 200 open after 45 s".into(),
        format!("{headers} of 500 and {bodies} of 200 open after 15 s (a message must be whole within 10 s)"),
    ));
    eprintln!("{:?}", rows.last());

    // 4. The directory rewritten in place while calls arrive.
    let file = d.join("directory.toml");
    let writer = {
        let (file, directory) = (file.clone(), directory.clone());
        tokio::spawn(async move {
            let _ = std::fs::File::create(&file);
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = std::fs::write(&file, directory);
        })
    };
    let caller = UdpPeer::bind().await;
    let exum_bench::attack::Answers { ok, not_found, .. } =
        place_calls(router_addr(), &caller, 300, Duration::from_millis(2), Duration::from_secs(5), "dir").await;
    let _ = writer.await;
    rows.push((
        "The directory file truncated, written whole 300 ms later, while 300 calls arrive".into(),
        "285 of 300 calls answered 404".into(),
        format!("{not_found} of 300 answered 404, {ok} answered 200 (the empty directory was refused)"),
    ));
    eprintln!("{:?}", rows.last());
    // 5. Memory: big INVITEs to a UM server that never answers.
    let rss_before = status_bytes(pid, "VmRSS:");
    let mut peak = rss_before;
    let mut sources = Vec::new();
    for i in 0..20u8 {
        sources.push(Arc::new(UdpPeer::bind_on(SocketAddr::from(([127, 0, 1, i + 1], 0))).await));
    }
    let refused_503: Vec<Arc<AtomicU64>> = sources.iter().map(|s| count_arrivals(s.clone())).collect();
    let body = "v".repeat(60_000);
    for n in 0..10_000usize {
        let source = &sources[n % 20];
        let id = format!("mem{n}");
        let text = request(
            "INVITE",
            "sip:silent@contoso.com;opaque=app:voicemail",
            source.addr,
            "UDP",
            &id,
            &format!("z9hG4bK-{id}"),
        )
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
        );
        let _ = source.socket.send_to(text.as_bytes(), router_addr()).await;
        if n % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            peak = peak.max(status_bytes(pid, "VmRSS:"));
        }
    }
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(status_bytes(pid, "VmRSS:"));
    }
    let memory_refusals = metric("exum_sip_overload_refused_total", "reason=\"memory\"").await;
    let answers: u64 = refused_503.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    rows.push((
        "10,000 INVITEs with a 60 KB body to a UM server that never answers".into(),
        "RSS 0.35 → 2.84 GB".into(),
        format!(
            "RSS {:.2} → {:.2} GB at its peak; {memory_refusals} refused with 503 for memory ({answers} answers in all)",
            rss_before as f64 / 1e9,
            peak as f64 / 1e9
        ),
    ));
    eprintln!("{:?}", rows.last());

    stop(router);

    let mut md = String::from(
        "Attacks of the second security review, replayed by `cargo run --release -p exum-bench --bin attacks` against the \
         release router on loopback (defaults but for the tenant's `record_route`).\n\n\
         | attack | before | after |\n|---|---|---|\n",
    );
    for (attack, before, after) in &rows {
        md.push_str(&format!("| {attack} | {before} | {after} |\n"));
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&out).expect("results dir");
    std::fs::write(out.join("attacks.md"), &md).expect("write");
    println!("{md}");
}
