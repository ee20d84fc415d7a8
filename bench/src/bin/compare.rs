//! The side-by-side comparison: sipp straight to sipp (the generator's ceiling),
//! Kamailio 5.6 (tm, rr, maxfwd, htable of the users) and exum-router (the
//! standard policy, and the pilot-group example policy) doing the same job with
//! the same 10,000 users and the same sipp scenario, alternating the systems at
//! every step of a rate ladder. Reports, per system and rate: failed calls,
//! INVITE→200 response time p50/p99, CPU seconds per 1,000 calls (from /proc of
//! the proxy's processes) and resident memory. Writes Markdown and JSON to
//! `bench/results/`.
//!
//! Run with `bench/compare.sh` (it installs sipp and Kamailio and builds release).
//! `compare [calls-per-step] [rates,comma,separated]`

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use exum_router_tests::sipp::stat;

const USERS: usize = 10_000;
const PROXY: u16 = 15060;
const UM: u16 = 15080;
const EDGE: u16 = 15090;
const UAC: u16 = 15100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Direct,
    Kamailio,
    ExumStandard,
    ExumExample,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Direct => "sipp → sipp (ceiling)",
            System::Kamailio => "Kamailio 5.6",
            System::ExumStandard => "exum-router, standard policy",
            System::ExumExample => "exum-router, pilot-group policy",
        }
    }
}

struct Step {
    system: System,
    rate: u32,
    calls: u64,
    ok: u64,
    failed: u64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_s_per_1000: f64,
    rss_mib: f64,
}

/// CPU seconds (user + system) of `pid` and its children processes.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = 100.0; // sysconf(_SC_CLK_TCK) on Linux
    let mut total = 0.0;
    let mut pids = vec![pid];
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        pids.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    for p in pids {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = after.split_whitespace().collect();
            let (u, s) = (f.get(11).and_then(|v| v.parse::<f64>().ok()), f.get(12).and_then(|v| v.parse::<f64>().ok()));
            total += (u.unwrap_or(0.0) + s.unwrap_or(0.0)) / ticks;
        }
    }
    total
}

fn rss_mib(pid: u32) -> f64 {
    let mut pids = vec![pid];
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        pids.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")).map(str::to_owned))
        .filter_map(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
        / 1024.0
}

/// Stops a process the way an operator would (SIGTERM: Kamailio takes its
/// children down with it), then SIGKILL if it lingers.
fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    for _ in 0..100 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn uas(dir: &Path, port: u16) -> Child {
    Command::new("sipp")
        .args(["-sf", "uas.xml", "-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin", "-buff_size", "4194304"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp UAS")
}

fn start_system(dir: &Path, system: System) -> Option<Child> {
    let child = match system {
        System::Direct => return None,
        System::Kamailio => Command::new("kamailio")
            .args(["-f", "kamailio.cfg", "-DD", "-E", "-m", "256", "-M", "16"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("kamailio.log")).map_or_else(|_| Stdio::null(), Stdio::from))
            .spawn()
            .expect("kamailio"),
        System::ExumStandard | System::ExumExample => {
            let config = if system == System::ExumStandard { "exum-standard.toml" } else { "exum-example.toml" };
            let exe = std::env::var("EXUM_ROUTER").unwrap_or_else(|_| "target/release/exum-router".into());
            Command::new(std::fs::canonicalize(&exe).unwrap_or(PathBuf::from(exe)))
                .args(["serve", "--config", config])
                .env("RUST_LOG", "warn")
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("exum-router")
        }
    };
    // Ready when it answers an OPTIONS.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    probe.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let me = probe.local_addr().expect("addr");
    for i in 0..200 {
        let options = format!(
            "OPTIONS sip:127.0.0.1:{PROXY} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ready{i}\r\nMax-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=r\r\nTo: <sip:127.0.0.1:{PROXY}>\r\nCall-ID: ready{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = probe.send_to(options.as_bytes(), ("127.0.0.1", PROXY));
        let mut buf = [0u8; 2048];
        if probe.recv_from(&mut buf).is_ok() {
            let mut child = child;
            assert!(
                matches!(child.try_wait(), Ok(None)),
                "{} exited: something else answers on port {PROXY}",
                system.name()
            );
            return Some(child);
        }
    }
    let log = std::fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default();
    panic!(
        "{} did not come up\n{}",
        system.name(),
        log.lines().filter(|l| !l.contains(" INFO")).take(20).collect::<Vec<_>>().join("\n")
    );
}

fn run_step(dir: &Path, system: System, rate: u32, calls: u64) -> Step {
    let um = uas(dir, UM);
    let edge = uas(dir, EDGE);
    let proxy = start_system(dir, system);
    let target = if system == System::Direct { UM } else { PROXY };
    let pid = proxy.as_ref().map(Child::id);
    let cpu0 = pid.map_or(0.0, cpu_seconds);
    let stats = dir.join(format!("uac-{rate}-{system:?}.csv"));
    let _ = std::fs::remove_file(&stats);
    let started = Instant::now();
    let status = Command::new("sipp")
        .args([
            &format!("127.0.0.1:{target}"),
            "-sf",
            "uac.xml",
            "-inf",
            "users.csv",
            "-i",
            "127.0.0.1",
            "-p",
            &UAC.to_string(),
        ])
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-nostdin",
            "-buff_size",
            "4194304",
            "-timeout",
            "600s",
        ])
        .args(["-trace_stat", "-stf", stats.to_str().expect("utf8"), "-fd", "1", "-trace_rtt", "-rtt_freq", "1"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp UAC");
    let _ = (status, started);
    let cpu = pid.map_or(0.0, cpu_seconds) - cpu0;
    let rss = pid.map_or(0.0, rss_mib);
    let ok = stat(&stats, "SuccessfulCall(C)");
    let failed = stat(&stats, "FailedCall(C)");
    // Response times of every call (INVITE to 200), from the rtt trace.
    let mut rtts: Vec<f64> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("uac_") && name.ends_with("_rtt.csv") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                rtts.extend(
                    text.lines()
                        .skip(1)
                        .filter_map(|l| l.split(';').nth(1))
                        .filter_map(|v| v.trim().parse::<f64>().ok()),
                );
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    rtts.sort_by(f64::total_cmp);
    let at =
        |q: f64| if rtts.is_empty() { f64::NAN } else { rtts[((rtts.len() as f64 * q) as usize).min(rtts.len() - 1)] };
    for c in [Some(um), Some(edge), proxy].into_iter().flatten() {
        stop(c);
    }
    Step {
        system,
        rate,
        calls,
        ok,
        failed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        cpu_s_per_1000: if system == System::Direct { f64::NAN } else { cpu / (calls as f64) * 1000.0 },
        rss_mib: rss,
    }
}

fn setup(dir: &Path, pilot_component: &str) {
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp/uac.xml"), dir.join("uac.xml")).expect("uac");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp/uas.xml"), dir.join("uas.xml")).expect("uas");
    let mut users = String::from("SEQUENTIAL\n");
    let mut directory = String::new();
    let mut htable =
        String::from("id(int,auto) key_name(str) key_type(int) value_type(int) key_value(str) expires(int)\n");
    for i in 0..USERS {
        users.push_str(&format!("user{i};contoso.com\n"));
        if i % 2 == 0 {
            directory.push_str(&format!(
                "[[tenants.contoso.users]]\nsip = \"sip:user{i}@contoso.com\"\nhosted_voicemail = true\n"
            ));
            htable.push_str(&format!("{i}:user{i}:0:0:hosted:0\n"));
        } else {
            directory.push_str(&format!(
                "[[tenants.contoso.users]]\nsip = \"sip:user{i}@contoso.com\"\neum = \"eum:user{i}@contoso.com;phone-context=DP1\"\n"
            ));
            htable.push_str(&format!("{i}:user{i}:0:0:onprem:0\n"));
        }
    }
    directory.push_str(&format!(
        "[[tenants.contoso.hosted_voicemail_policies]]\nscope = \"global\"\ndestination = \"exap.um.outlook.com\"\n\
         [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:127.0.0.1:{UM}\", timeout_ms = 5000 }}]\n"
    ));
    std::fs::write(dir.join("users.csv"), users).expect("write");
    std::fs::write(dir.join("directory.toml"), directory).expect("write");
    for (file, policy) in [
        ("exum-standard.toml", String::new()),
        ("exum-example.toml", format!("policy = {pilot_component:?}\npolicy_config = \"sip:user0@contoso.com\"\n")),
    ] {
        std::fs::write(
            dir.join(file),
            format!(
                "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:{PROXY}\"\ntransports = [\"udp\"]\n[probes]\nenabled = false\n\
                 [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\", \"127.0.0.1\"]\nedge = \"sip:127.0.0.1:{EDGE}\"\nrecord_route = true\n{policy}"
            ),
        )
        .expect("write");
    }
    let cfg = include_str!("../../sipp/kamailio.cfg.in")
        .replace("@LISTEN@", &format!("127.0.0.1:{PROXY}"))
        .replace("@UM@", &format!("127.0.0.1:{UM}"))
        .replace("@EDGE@", &format!("127.0.0.1:{EDGE}"))
        .replace("@DBDIR@", dir.join("db").to_str().expect("utf8"));
    std::fs::write(dir.join("kamailio.cfg"), cfg).expect("write");
    std::fs::create_dir_all(dir.join("db")).expect("mkdir");
    std::fs::write(dir.join("db/users"), htable).expect("write");
    std::fs::write(dir.join("db/version"), "table_name(str) table_version(int)\nusers:2\n").expect("write");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rates: Vec<u32> = args
        .next()
        .unwrap_or_else(|| "250,500,1000,1500,2000,2500,3000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path(), exum_router_tests::components::PILOT_GROUP);
    let systems = [System::Direct, System::Kamailio, System::ExumStandard, System::ExumExample];
    let mut steps: Vec<Step> = Vec::new();
    for &rate in &rates {
        for system in systems {
            if steps.iter().any(|s| s.system == system && s.failed > 0) {
                continue; // past this system's clean rate
            }
            let s = run_step(dir.path(), system, rate, calls);
            eprintln!(
                "{:>32} {:>5}/s: {} ok, {} failed, p50 {:.1} ms, p99 {:.1} ms, {:.3} CPU-s/1000 calls, {:.0} MiB",
                system.name(),
                rate,
                s.ok,
                s.failed,
                s.p50_ms,
                s.p99_ms,
                s.cpu_s_per_1000,
                s.rss_mib
            );
            steps.push(s);
        }
    }
    let mut md = String::from(
        "| system | rate/s | calls | failed | p50 ms | p99 ms | CPU s / 1000 calls | RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut json = Vec::new();
    for s in &steps {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.3} | {:.0} |\n",
            s.system.name(),
            s.rate,
            s.calls,
            s.failed,
            s.p50_ms,
            s.p99_ms,
            s.cpu_s_per_1000,
            s.rss_mib
        ));
        json.push(serde_json::json!({"system": s.system.name(), "rate": s.rate, "calls": s.calls, "ok": s.ok, "failed": s.failed,
            "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "cpu_s_per_1000_calls": s.cpu_s_per_1000, "rss_mib": s.rss_mib}));
    }
    md.push_str("\nHighest rate with 0 failed calls:\n\n");
    for system in systems {
        let best =
            steps.iter().filter(|s| s.system == system && s.failed == 0 && s.ok == s.calls).map(|s| s.rate).max();
        md.push_str(&format!("- {}: {}\n", system.name(), best.map_or("none".into(), |r| format!("{r}/s"))));
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let _ = std::fs::create_dir_all(&out);
    std::fs::write(out.join("compare.md"), &md).expect("write");
    std::fs::write(out.join("compare.json"), serde_json::to_string_pretty(&json).unwrap_or_default()).expect("write");
    let _ = std::io::stdout().write_all(md.as_bytes());
}
