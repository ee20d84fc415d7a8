//! Hostile policies under load: tenants whose policies loop, exhaust memory,
//! recurse without end, flood host calls, return giant strings or a million
//! targets, panic, or hang
//! in `init`, called steadily while a well-behaved tenant carries sipp load.
//! Phase 1 (baseline): the sipp load alone. Phase 2: the same load with the
//! hostile tenants called alongside, quarantine off (every call runs the
//! hostile code). Reports the well-behaved tenant's failed calls and decision
//! p50/p99 (from the router's `exum_policy_call_seconds` histogram, interpolated
//! within its 1.4× buckets) in each phase, and the hostile tenants' faults.
//! Writes `bench/results/hostile-tenants.{md,json}`.
//!
//! `hostile-tenants [rate] [seconds] [hostile calls/s per tenant]` (200 20 20)

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use exum_bench::harness::{self, bound, serve_in, stop};
use exum_router_tests::sipp::stat;

const PROXY: u16 = 15360;
const UM: u16 = 15380;
const UAC: u16 = 15400;
const ADMIN: u16 = 15460;
const USERS: usize = 1000;
/// Hostile tenants: id and the fixture's mode (its `policy_config`).
const HOSTILE: [(&str, &str); 8] = [
    ("h-loop", "loop"),
    ("h-alloc", "alloc:1000000000"),
    ("h-recurse", "recurse:100000000"),
    ("h-flood", "flood:1000000000"),
    ("h-header", "header:10000000"),
    ("h-targets", "targets:1000000"),
    ("h-panic", "panic"),
    ("h-slow-init", "loop-init"),
];

/// GET /metrics from the admin listener.
fn metrics() -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", ADMIN)) else { return String::new() };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The cumulative bucket counts of the tenant's decision-latency histogram, by upper bound.
fn buckets(text: &str, tenant: &str) -> BTreeMap<u64, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("exum_policy_call_seconds_bucket{")) {
        if !line.contains(&format!("tenant=\"{tenant}\"")) {
            continue;
        }
        let le = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
        let count = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok()).unwrap_or(0.0);
        out.insert(le.to_bits(), count);
    }
    out
}

/// A quantile of the observations between two scrapes, interpolated within its bucket (µs).
fn quantile(before: &BTreeMap<u64, f64>, after: &BTreeMap<u64, f64>, q: f64) -> f64 {
    let mut bounds: Vec<(f64, f64)> =
        after.iter().map(|(le, c)| (f64::from_bits(*le), c - before.get(le).copied().unwrap_or(0.0))).collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = bounds.last().map_or(0.0, |b| b.1);
    if total == 0.0 {
        return f64::NAN;
    }
    let target = total * q;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in bounds {
        if count >= target {
            if le.is_infinite() {
                return lower * 1e6;
            }
            let within = if count > below { (target - below) / (count - below) } else { 1.0 };
            return (lower + (le - lower) * within) * 1e6;
        }
        (lower, below) = (le, count);
    }
    f64::NAN
}

/// Calls the hostile tenants at `rate` each until `stop`, ACKing their final
/// responses; returns how many INVITEs were sent.
fn hostile_driver(rate: u32, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_read_timeout(Some(Duration::from_millis(1))).expect("timeout");
        let me = socket.local_addr().expect("addr");
        let started = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let mut buf = vec![0u8; 65536];
        let mut i: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= started + interval * (i as u32) {
                for (tenant, _) in HOSTILE {
                    let invite = format!(
                        "INVITE sip:someone@{tenant}.example;opaque=app:voicemail SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-h{i}-{tenant}\r\n\
                         From: <sip:x@fabrikam.com>;tag=h{i}\r\nTo: <sip:someone@{tenant}.example>\r\nCall-ID: h{i}-{tenant}\r\n\
                         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                    );
                    let _ = socket.send_to(invite.as_bytes(), ("127.0.0.1", PROXY));
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
            // ACK every final non-2xx answer so the router stops retransmitting it.
            while let Ok((n, _)) = socket.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                let code: u16 = text.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
                if code < 300 {
                    continue;
                }
                let header = |name: &str| {
                    text.lines()
                        .find(|l| l.to_ascii_lowercase().starts_with(&format!("{}:", name.to_ascii_lowercase())))
                        .map(|l| l.to_owned())
                        .unwrap_or_default()
                };
                let (via, from, to, call_id) = (header("Via"), header("From"), header("To"), header("Call-ID"));
                // Call-ID: h<i>-<tenant>
                let id = call_id.split_once(':').map_or("", |(_, v)| v.trim());
                let tenant = id.split_once('-').map_or("", |(_, t)| t);
                let ack = format!(
                    "ACK sip:someone@{tenant}.example;opaque=app:voicemail SIP/2.0\r\n{via}\r\n{from}\r\n{to}\r\n{call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = socket.send_to(ack.as_bytes(), ("127.0.0.1", PROXY));
            }
        }
    })
}

struct Phase {
    name: &'static str,
    calls: u64,
    failed: u64,
    hostile_calls: u64,
    p50_us: f64,
    p99_us: f64,
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u32>().ok());
    let rate = args.next().flatten().unwrap_or(200);
    let seconds = args.next().flatten().unwrap_or(20);
    let hostile_rate = args.next().flatten().unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    harness::on_premises_deployment(d, &["uac.xml", "uas.xml"], USERS, UM, None);
    let mut config = format!(
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:{PROXY}\"\ntransports = [\"udp\"]\n\
         [probes]\nenabled = false\n[admin]\naddress = \"127.0.0.1:{ADMIN}\"\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\nrecord_route = true\n"
    );
    for (tenant, mode) in HOSTILE {
        config.push_str(&format!(
            "[[tenant]]\nid = \"{tenant}\"\ndomains = [\"{tenant}.example\"]\npolicy = {:?}\npolicy_config = \"{mode}\"\n\
             fallback = 480\nlimits = {{ quarantine_after = 1000000000 }}\n",
            exum_router_tests::components::HOSTILE
        ));
    }
    std::fs::write(d.join("router.toml"), config).expect("write");
    let uas = Command::new("sipp")
        .args(["-sf", "uas.xml", "-i", "127.0.0.1", "-p", &UM.to_string(), "-nostdin", "-buff_size", "4194304"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp UAS");
    assert!(bound(UM), "sipp UAS did not bind {UM}");
    let router = serve_in(d);
    assert!(bound(PROXY), "the router did not bind {PROXY}");
    let mut phases = Vec::new();
    for (name, hostile) in [("baseline: sipp load alone", false), ("with the hostile tenants called", true)] {
        let (stop_driver, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let driver = hostile.then(|| hostile_driver(hostile_rate, stop_driver.clone(), sent.clone()));
        let before = buckets(&metrics(), "contoso");
        let stats = d.join("uac.csv");
        let _ = std::fs::remove_file(&stats);
        let calls = u64::from(rate) * u64::from(seconds);
        let _ = Command::new("sipp")
            .arg(format!("127.0.0.1:{PROXY}"))
            .args(["-sf", "uac.xml", "-inf", "users.csv", "-i", "127.0.0.1", "-p", &UAC.to_string()])
            .args(["-m", &calls.to_string(), "-r", &rate.to_string(), "-nostdin", "-buff_size", "4194304"])
            .args(["-timeout", "300s", "-trace_stat", "-stf", "uac.csv", "-fd", "1"])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let after = buckets(&metrics(), "contoso");
        stop_driver.store(true, Ordering::Relaxed);
        if let Some(d) = driver {
            let _ = d.join();
        }
        let failed = stat(&stats, "FailedCall(C)") + calls.saturating_sub(stat(&stats, "SuccessfulCall(C)"));
        let (p50_us, p99_us) = (quantile(&before, &after, 0.5), quantile(&before, &after, 0.99));
        let hostile_calls = sent.load(Ordering::Relaxed);
        eprintln!(
            "{name}: {calls} calls, {failed} failed, hostile calls {hostile_calls}, decision p50 {p50_us:.1} µs p99 {p99_us:.1} µs"
        );
        phases.push(Phase { name, calls, failed, hostile_calls, p50_us, p99_us });
    }
    let text = metrics();
    let faults: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("exum_policy_faults_total{") && !l.ends_with(" 0"))
        .map(str::to_owned)
        .collect();
    stop(router);
    stop(uas);
    let mut md = format!(
        "Well-behaved tenant `contoso` (standard policy) under sipp load at {rate} calls/s for {seconds} s; \
         {} hostile tenants each called {hostile_rate} times a second in the second phase, quarantine off.\n\n\
         | phase | contoso calls | failed | hostile calls | contoso decision p50 µs | p99 µs |\n|---|---:|---:|---:|---:|---:|\n",
        HOSTILE.len()
    );
    for p in &phases {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.1} |\n",
            p.name, p.calls, p.failed, p.hostile_calls, p.p50_us, p.p99_us
        ));
    }
    let ratio = phases.get(1).map_or(f64::NAN, |h| h.p99_us) / phases.first().map_or(f64::NAN, |b| b.p99_us);
    md.push_str(&format!("\nRatio of the p99s (with hostile tenants / baseline): {ratio:.2} (target ≤ 2).\n\nFaults of the hostile tenants' policies:\n\n"));
    for f in &faults {
        md.push_str(&format!("    {f}\n"));
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let _ = std::fs::create_dir_all(&out);
    std::fs::write(out.join("hostile-tenants.md"), &md).expect("write");
    let json = serde_json::json!({
        "rate": rate, "seconds": seconds, "hostile_rate_per_tenant": hostile_rate, "p99_ratio": ratio,
        "phases": phases.iter().map(|p| serde_json::json!({"phase": p.name, "calls": p.calls, "failed": p.failed,
            "hostile_calls": p.hostile_calls, "p50_us": p.p50_us, "p99_us": p.p99_us})).collect::<Vec<_>>(),
        "faults": faults,
    });
    std::fs::write(out.join("hostile-tenants.json"), serde_json::to_string_pretty(&json).unwrap_or_default())
        .expect("write");
    print!("{md}");
}
