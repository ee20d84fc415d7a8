//! The side-by-side comparison: sipp straight to sipp (the generator's ceiling),
//! Kamailio 5.6 (tm, rr, maxfwd, htable of the users) and exum-router (the
//! standard policy, and the pilot-group example policy) doing the same job with
//! the same 10,000 users and the same sipp scenario, alternating the systems at
//! every step of a rate ladder. Reports, per system and rate: failed calls,
//! INVITE→200 response time p50/p99, CPU seconds per 1,000 calls (from /proc of
//! the proxy's processes) and resident memory. Writes Markdown and JSON to
//! `bench/results/`.
//!
//! Every rate is run for every system, `repeats` times (3), whatever the
//! earlier steps lost: a system is left out of higher rates only once it
//! collapsed (kept up less than half the rate, or failed half its calls). For
//! a step that lost calls, sipp's error log is kept and the kernel's UDP error
//! counters (`/proc/net/snmp`: receive-buffer and send-buffer errors) before
//! and after are reported, to tell which side lost what. The summary gives
//! each system's highest rate with 0 lost calls in every repetition.
//!
//! Run with `bench/compare.sh` (it installs sipp and Kamailio and builds release).
//! `compare [calls-per-step] [rates,comma,separated] [systems: direct,kamailio,standard,standard1,standardhep,standardotel,example] [repeats] [udp|tcp|tls]`
//!
//! With `tcp`, every SIP hop of the calls is TCP (sipp `-t t1`: one connection
//! from the caller, one per UAS from the proxy; the URIs of the UAS carry
//! `transport=tcp`); the proxies listen on UDP too, for the readiness and
//! latency probes (which measure the UDP path).
//!
//! With `tls`, the proxies receive and send every call over TLS: sipp has no
//! TLS in Debian's build, so stunnel carries the UAC's TCP connection into TLS
//! towards the proxy's TLS listener, and terminates the proxy's TLS connection
//! to each UAS (whose Contact names stunnel's TLS side, so ACK and BYE come
//! over TLS too). stunnel's CPU is not counted; the direct step stays sipp →
//! sipp over TCP (the generator's ceiling).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use exum_bench::harness::{LoopbackPki, bound, pss_mib, stop};
use exum_router_tests::sipp::stat;

const USERS: usize = 10_000;
const PROXY: u16 = 15060;
const UM: u16 = 15080;
const EDGE: u16 = 15090;
const UAC: u16 = 15100;

/// The transport of the calls: `udp`, `tcp` or `tls`.
static TRANSPORT: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

fn transport() -> &'static str {
    TRANSPORT.get().copied().unwrap_or("udp")
}

/// sipp's transport mode for [`transport`].
fn sipp_mode() -> &'static str {
    if transport() == "udp" { "u1" } else { "t1" }
}

/// With `tls`, the proxy's TLS listener, and where stunnel takes the UAC's TCP
/// into TLS towards it.
const PROXY_TLS: u16 = 15061;
const UAC_TLS_ENTRY: u16 = 15062;

/// The port a proxy sends to for a UAS listening on `port`: with `tls`,
/// stunnel's TLS side in front of it (`port + 1`).
fn uas_entry(port: u16) -> u16 {
    if transport() == "tls" { port + 1 } else { port }
}

/// The URI parameter of the UAS's transport.
fn uri_param() -> &'static str {
    match transport() {
        "tcp" => ";transport=tcp",
        "tls" => ";transport=tls",
        _ => "",
    }
}

/// stunnel (with `tls`): TLS to the proxy for the UAC, TLS from the proxy for
/// each UAS, with the run's certificate.
fn stunnel(dir: &Path) -> Option<Child> {
    if transport() != "tls" {
        return None;
    }
    let d = dir.display();
    let conf = format!(
        "foreground = yes\npid =\ndebug = 3\noutput = {d}/stunnel.log\n\
         [uac]\nclient = yes\naccept = 127.0.0.1:{UAC_TLS_ENTRY}\nconnect = 127.0.0.1:{PROXY_TLS}\n\
         [um]\naccept = 127.0.0.1:{um_tls}\nconnect = 127.0.0.1:{UM}\ncert = {d}/cert.pem\nkey = {d}/key.pem\n\
         [edge]\naccept = 127.0.0.1:{edge_tls}\nconnect = 127.0.0.1:{EDGE}\ncert = {d}/cert.pem\nkey = {d}/key.pem\n",
        um_tls = uas_entry(UM),
        edge_tls = uas_entry(EDGE)
    );
    std::fs::write(dir.join("stunnel.conf"), conf).expect("write");
    let child = Command::new("stunnel")
        .arg(dir.join("stunnel.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("stunnel");
    assert!(listening_tcp(UAC_TLS_ENTRY), "stunnel did not listen");
    Some(child)
}

/// A HEP collector for the `standardhep` system: reads and counts every
/// packet sent to 127.0.0.1:15070 (a thread of the bench's, not counted in the
/// router's CPU).
fn hep_collector() {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
    // As large as the router's SIP sockets' (the kernel caps it at rmem_max).
    let _ = socket.set_recv_buffer_size(4 << 20);
    let at: std::net::SocketAddr = "127.0.0.1:15070".parse().expect("address");
    socket.bind(&at.into()).expect("HEP collector binds 127.0.0.1:15070");
    let socket: std::net::UdpSocket = socket.into();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut n = 0u64;
        while socket.recv(&mut buf).is_ok() {
            n += 1;
            if n.is_multiple_of(100_000) {
                eprintln!("HEP collector: {n} packets");
            }
        }
    });
}

/// An OTLP/HTTP collector for the `standardotel` system on 127.0.0.1:15071:
/// reads every export and answers 200 (threads of the bench's, not counted in
/// the router's CPU; the spans are not decoded).
fn otlp_collector() {
    use std::io::{BufRead as _, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:15071").expect("OTLP collector binds 127.0.0.1:15071");
    static EXPORTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(read) = stream.try_clone() else { return };
                let (mut reader, mut writer) = (std::io::BufReader::new(read), stream);
                let mut line = String::new();
                loop {
                    let mut length = 0usize;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; length];
                    let n = EXPORTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if n.is_multiple_of(50) {
                        eprintln!("OTLP collector: {n} exports");
                    }
                    if reader.read_exact(&mut body).is_err()
                        || writer
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
                            )
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Direct,
    Kamailio,
    ExumStandard,
    /// The standard policy on one runtime thread (`[sip] worker_threads = 1`).
    ExumStandardOneThread,
    /// The standard policy with every message and decision captured to HEP
    /// (a collector in this process reads and counts them).
    ExumStandardHep,
    /// The standard policy with every call's spans exported over OTLP/HTTP
    /// (a collector in this process reads and answers the exports).
    ExumStandardOtel,
    ExumExample,
}

impl System {
    /// Whether it is one of the router's configurations.
    fn is_exum(self) -> bool {
        !matches!(self, System::Direct | System::Kamailio)
    }

    fn name(self) -> &'static str {
        match self {
            System::Direct => "sipp → sipp (ceiling)",
            System::Kamailio => "Kamailio 5.6",
            System::ExumStandard => "exum-router, standard policy",
            System::ExumStandardOneThread => "exum-router, standard policy, 1 thread",
            System::ExumStandardHep => "exum-router, standard policy, HEP capture on",
            System::ExumStandardOtel => "exum-router, standard policy, OpenTelemetry traces on",
            System::ExumExample => "exum-router, pilot-group policy",
        }
    }
}

struct Step {
    system: System,
    rate: u32,
    /// Which repetition of the rate (from 1).
    rep: u32,
    /// UDP receive-buffer and send-buffer errors of the whole host during the
    /// step (`/proc/net/snmp` `Udp: RcvbufErrors`, `SndbufErrors`).
    udp_rcvbuf_errors: u64,
    udp_sndbuf_errors: u64,
    /// sipp's error log of the step, kept when calls failed.
    errors_log: Option<PathBuf>,
    calls: u64,
    ok: u64,
    failed: u64,
    /// Calls per second sipp achieved.
    achieved: f64,
    /// Calls placed by the latency probe, and how many of them failed.
    probe_calls: u64,
    probe_failed: u64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_s_per_1000: f64,
    idle_mib: f64,
    loaded_mib: f64,
}

impl Step {
    /// The step fell apart: sipp kept up less than half the rate, or half the
    /// calls failed. Higher rates are not tried for the system.
    fn collapsed(&self) -> bool {
        self.achieved < 0.5 * self.rate as f64 || self.failed * 2 >= self.calls
    }

    /// Every call of the step succeeded, sipp's and the probe's, and sipp kept
    /// up the rate (within 10%: its start-up counts against it).
    fn clean(&self) -> bool {
        self.failed == 0 && self.ok == self.calls && self.probe_failed == 0 && self.achieved >= 0.9 * self.rate as f64
    }
}

/// The kernel's UDP counters `RcvbufErrors` and `SndbufErrors` (`/proc/net/snmp`).
fn udp_errors() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else { return (0, 0) };
    let field = |name: &str| {
        let i = names.split_whitespace().position(|n| n == name)?;
        values.split_whitespace().nth(i)?.parse::<u64>().ok()
    };
    (field("RcvbufErrors").unwrap_or(0), field("SndbufErrors").unwrap_or(0))
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

/// sipp's files (scenarios, user list, statistics, traces) live apart from the
/// router's configuration, so the router's watcher of its configuration
/// directory does not see sipp writing its traces.
fn sipp_dir(dir: &Path) -> PathBuf {
    dir.join("sipp")
}

fn uas(dir: &Path, port: u16) -> Child {
    // With `tls`, the UAS's Contact names stunnel's TLS side, so in-dialog
    // requests reach it over TLS too.
    let scenario = if transport() == "tls" {
        let name = format!("uas-{port}.xml");
        let xml = std::fs::read_to_string(sipp_dir(dir).join("uas.xml")).expect("uas.xml").replace(
            "<sip:[local_ip]:[local_port];transport=[transport]>",
            &format!("<sip:[local_ip]:{};transport=tls>", uas_entry(port)),
        );
        std::fs::write(sipp_dir(dir).join(&name), xml).expect("write");
        name
    } else {
        "uas.xml".to_owned()
    };
    let mut child = Command::new("sipp")
        .args(["-sf", &scenario, "-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin", "-buff_size", "4194304"])
        .args(["-t", sipp_mode()])
        .current_dir(sipp_dir(dir))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp UAS");
    let up = if transport() == "udp" { bound(port) } else { listening_tcp(port) };
    if up {
        return child;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("sipp UAS did not bind 127.0.0.1:{port}");
}

/// Waits (up to 10 s) until something accepts TCP connections on 127.0.0.1:`port`.
fn listening_tcp(port: u16) -> bool {
    for _ in 0..1000 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn start_system(dir: &Path, system: System) -> Option<Child> {
    let child = match system {
        System::Direct => return None,
        System::Kamailio => Command::new("kamailio")
            .args(["-f", "kamailio.cfg", "-DD", "-E", "-m", "2048", "-M", "16"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("kamailio.log")).map_or_else(|_| Stdio::null(), Stdio::from))
            .spawn()
            .expect("kamailio"),
        System::ExumStandard
        | System::ExumStandardOneThread
        | System::ExumStandardHep
        | System::ExumStandardOtel
        | System::ExumExample => {
            let config = match system {
                System::ExumStandard => "exum-standard.toml",
                System::ExumStandardOneThread => "exum-standard-1.toml",
                System::ExumStandardHep => "exum-standard-hep.toml",
                System::ExumStandardOtel => "exum-standard-otel.toml",
                _ => "exum-example.toml",
            };
            let exe = std::env::var("EXUM_ROUTER").unwrap_or_else(|_| "target/release/exum-router".into());
            let exe = std::fs::canonicalize(&exe).unwrap_or(PathBuf::from(exe));
            // EXUM_BENCH_WRAP="perf record -g -o /tmp/perf.data --" profiles the router's steps.
            let wrap = std::env::var("EXUM_BENCH_WRAP").unwrap_or_default();
            let mut wrap = wrap.split_whitespace();
            let mut command = match wrap.next() {
                Some(program) => {
                    let mut c = Command::new(program);
                    c.args(wrap).arg(exe);
                    c
                }
                None => Command::new(exe),
            };
            command
                .args(["serve", "--config", config])
                .env("RUST_LOG", "warn")
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("exum-router")
        }
    };
    let mut child = child;
    if answers_options(PROXY) {
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "{} exited: something else answers on port {PROXY}",
            system.name()
        );
        return Some(child);
    }
    let log = std::fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default();
    panic!(
        "{} did not come up\n{}",
        system.name(),
        log.lines().filter(|l| !l.contains(" INFO")).take(20).collect::<Vec<_>>().join("\n")
    );
}

/// Waits (up to 20 s) for an answer to an OPTIONS sent to 127.0.0.1:`port`.
fn answers_options(port: u16) -> bool {
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    probe.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let me = probe.local_addr().expect("addr");
    for i in 0..200 {
        let options = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ready{i}\r\nMax-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=r\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: ready{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = probe.send_to(options.as_bytes(), ("127.0.0.1", port));
        let mut buf = [0u8; 2048];
        if probe.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

/// Memory of exum-router idle on the shipped example deployment (`exum-router`
/// with no arguments, from the workspace root), once it answers.
fn example_deployment_idle_mib() -> f64 {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let exe = std::env::var("EXUM_ROUTER").unwrap_or_else(|_| "target/release/exum-router".into());
    let exe = std::fs::canonicalize(&exe).unwrap_or(PathBuf::from(exe));
    let child = Command::new(exe)
        .env("RUST_LOG", "warn")
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("exum-router");
    let mib = if answers_options(5060) { pss_mib(child.id()) } else { f64::NAN };
    stop(child);
    mib
}

/// Calls placed by the harness alongside sipp's load, timed with the monotonic
/// clock (sipp's own response times have a resolution of one millisecond).
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// One header's values in a response, in order (comma-joined values split).
fn header_values<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect()
}

/// Places a call every [`PROBE_INTERVAL`] through 127.0.0.1:`target` until
/// `stop`, each one INVITE → 200, ACK and BYE along the Record-Route set → 200,
/// and returns each call's INVITE→200 time in milliseconds (failed calls as NaN).
fn latency_probe(target: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<f64>> {
    std::thread::spawn(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let me = socket.local_addr().expect("addr");
        let to = ("127.0.0.1", target);
        let mut times = Vec::new();
        let started = Instant::now();
        let mut buf = vec![0u8; 65536];
        // Receives until a final response to `method` of `call_id` (provisional ones skipped).
        let mut final_response = |call_id: &str, method: &str| -> Option<String> {
            loop {
                let (n, _) = socket.recv_from(&mut buf).ok()?;
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let cseq = header_values(&text, "CSeq").first().map(|c| c.ends_with(method)).unwrap_or(false);
                let same_call = header_values(&text, "Call-ID").first() == Some(&call_id);
                if text.starts_with("SIP/2.0 ") && same_call && cseq && !text.starts_with("SIP/2.0 1") {
                    return Some(text);
                }
            }
        };
        for i in 0u64.. {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if let Some(wait) = (started + PROBE_INTERVAL * (i as u32)).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait); // pacing the calls, not waiting for an event
            }
            let user = format!("user{}@contoso.com", (i as usize * 7) % USERS);
            let call_id = format!("probe-{i}-{}", std::process::id());
            let from = format!("<sip:probe@fabrikam.com>;tag=p{i}");
            let invite = format!(
                "INVITE sip:{user};opaque=app:voicemail SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-pi{i}\r\nFrom: {from}\r\nTo: <sip:{user}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:probe@{me}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            let t0 = Instant::now();
            let _ = socket.send_to(invite.as_bytes(), to);
            let Some(ok) = final_response(&call_id, "INVITE") else {
                times.push(f64::NAN);
                continue;
            };
            let elapsed = t0.elapsed().as_secs_f64() * 1000.0;
            if !ok.starts_with("SIP/2.0 200") {
                times.push(f64::NAN);
                continue;
            }
            times.push(elapsed);
            let to_header = header_values(&ok, "To").first().map(|t| t.to_string()).unwrap_or_default();
            let contact = header_values(&ok, "Contact").first().map(|c| c.trim_matches(['<', '>']).to_string());
            let contact = contact.unwrap_or_else(|| format!("sip:{user}"));
            let routes: String =
                header_values(&ok, "Record-Route").iter().rev().map(|r| format!("Route: {r}\r\n")).collect();
            for (method, cseq, branch) in [("ACK", 1, "pa"), ("BYE", 2, "pb")] {
                let request = format!(
                    "{method} {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{branch}{i}\r\nFrom: {from}\r\nTo: {to_header}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{routes}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = socket.send_to(request.as_bytes(), to);
                if method == "ACK" {
                    // A short hold, as the UAC scenario's, so the BYE cannot
                    // overtake the ACK on the way to a UAS over TCP (sipp's UAS
                    // drops a call whose BYE comes first).
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let _ = final_response(&call_id, "BYE");
        }
        times
    })
}

fn run_step(dir: &Path, system: System, rate: u32, rep: u32, calls: u64) -> Step {
    let um = uas(dir, UM);
    let edge = uas(dir, EDGE);
    let tunnel = stunnel(dir);
    let proxy = start_system(dir, system);
    let target = match (system, transport()) {
        (System::Direct, _) => UM,
        (_, "tls") => UAC_TLS_ENTRY,
        _ => PROXY,
    };
    let probe_target = if system == System::Direct { UM } else { PROXY };
    let pid = proxy.as_ref().map(Child::id);
    let idle = pid.map_or(0.0, pss_mib);
    let cpu0 = pid.map_or(0.0, cpu_seconds);
    let stats = sipp_dir(dir).join(format!("uac-{rate}-{system:?}.csv"));
    let _ = std::fs::remove_file(&stats);
    let stop_probe = Arc::new(AtomicBool::new(false));
    // The probe speaks UDP: sipp's UAS listens on TCP alone in tcp mode.
    let probe =
        (system != System::Direct || transport() == "udp").then(|| latency_probe(probe_target, stop_probe.clone()));
    let udp0 = udp_errors();
    // sipp's error log (`uac_<pid>_errors.log`) of this step alone.
    for entry in std::fs::read_dir(sipp_dir(dir)).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().ends_with("_errors.log") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
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
            "-t",
            sipp_mode(),
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
        .args(["-trace_stat", "-stf", stats.to_str().expect("utf8"), "-fd", "1", "-trace_err"])
        .current_dir(sipp_dir(dir))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp UAC");
    let _ = status; // sipp's exit status counts failed calls too: read from its statistics below
    // The rate sipp achieved: its calls over its run, less the last call's hold.
    let achieved = calls as f64 / started.elapsed().saturating_sub(Duration::from_millis(50)).as_secs_f64();
    stop_probe.store(true, Ordering::Relaxed);
    let mut times = probe.map(|p| p.join().unwrap_or_default()).unwrap_or_default();
    let cpu = pid.map_or(0.0, cpu_seconds) - cpu0;
    let loaded = pid.map_or(0.0, pss_mib);
    let ok = stat(&stats, "SuccessfulCall(C)");
    let failed = stat(&stats, "FailedCall(C)");
    let udp1 = udp_errors();
    let errors_log = std::fs::read_dir(sipp_dir(dir))
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .filter(|_| failed > 0)
        .and_then(|e| {
            let kept = sipp_dir(dir).join(format!("errors-{rate}-{system:?}-{rep}.log"));
            std::fs::rename(e.path(), &kept).ok().map(|()| kept)
        });
    let probe_calls = times.len() as u64;
    let probe_failed = times.iter().filter(|t| t.is_nan()).count() as u64;
    times.retain(|t| !t.is_nan());
    times.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if times.is_empty() { f64::NAN } else { times[((times.len() as f64 * q) as usize).min(times.len() - 1)] }
    };
    for c in [Some(um), Some(edge), proxy, tunnel].into_iter().flatten() {
        stop(c);
    }
    Step {
        system,
        rate,
        rep,
        udp_rcvbuf_errors: udp1.0.saturating_sub(udp0.0),
        udp_sndbuf_errors: udp1.1.saturating_sub(udp0.1),
        errors_log,
        calls,
        ok,
        failed,
        achieved,
        probe_calls,
        probe_failed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        cpu_s_per_1000: if system == System::Direct { f64::NAN } else { cpu / ((calls + probe_calls) as f64) * 1000.0 },
        idle_mib: idle,
        loaded_mib: loaded,
    }
}

fn setup(dir: &Path, pilot_component: &str) {
    std::fs::create_dir_all(sipp_dir(dir)).expect("mkdir");
    for file in ["uac.xml", "uas.xml"] {
        std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp").join(file), sipp_dir(dir).join(file))
            .expect("sipp scenario");
    }
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
         [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:127.0.0.1:{um}{param}\", timeout_ms = 5000 }}]\n",
        um = uas_entry(UM),
        param = uri_param()
    ));
    std::fs::write(sipp_dir(dir).join("users.csv"), users).expect("write");
    std::fs::write(dir.join("directory.toml"), directory).expect("write");
    for (file, policy, sip) in [
        ("exum-standard.toml", String::new(), ""),
        ("exum-standard-1.toml", String::new(), "[sip]\nworker_threads = 1\n"),
        ("exum-standard-hep.toml", String::new(), "[hep]\naddress = \"127.0.0.1:15070\"\n"),
        ("exum-standard-otel.toml", String::new(), "[otel]\nendpoint = \"http://127.0.0.1:15071/v1/traces\"\n"),
        ("exum-example.toml", format!("policy = {pilot_component:?}\npolicy_config = \"sip:user0@contoso.com\"\n"), ""),
    ] {
        std::fs::write(
            dir.join(file),
            format!(
                "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:{PROXY}\"\ntransports = [{transports}]\n{tls}[probes]\nenabled = false\n\
                 [overload]\nper_source_requests = 0\n{sip}\
                 [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\", \"127.0.0.1\"]\nedge = \"sip:127.0.0.1:{edge}{param}\"\nrecord_route = true\n{policy}",
                transports = if transport() == "tcp" { "\"udp\", \"tcp\"" } else { "\"udp\"" },
                tls = if transport() == "tls" {
                    format!(
                        "[[listen]]\naddress = \"127.0.0.1:{PROXY_TLS}\"\ntransports = [\"tls\"]\n\
                         [tls]\ncertificate = \"cert.pem\"\nkey = \"key.pem\"\nca = \"ca.pem\"\n"
                    )
                } else {
                    String::new()
                },
                edge = uas_entry(EDGE),
                param = uri_param()
            ),
        )
        .expect("write");
    }
    let cfg = include_str!("../../sipp/kamailio.cfg.in")
        .replace(
            "@LISTENERS@",
            &match transport() {
                "tcp" => {
                    format!(
                        "listen=udp:127.0.0.1:{PROXY}\nlisten=tcp:127.0.0.1:{PROXY}\ndisable_tcp=no\ntcp_children=2"
                    )
                }
                "tls" => format!(
                    "listen=udp:127.0.0.1:{PROXY}\nlisten=tls:127.0.0.1:{PROXY_TLS}\ndisable_tcp=no\ntcp_children=2\n\
                     enable_tls=yes\nloadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}/tls.cfg\")",
                    dir.display()
                ),
                _ => format!("listen=udp:127.0.0.1:{PROXY}\ndisable_tcp=yes"),
            },
        )
        .replace("@PARAM@", uri_param())
        .replace("@UM@", &format!("127.0.0.1:{}", uas_entry(UM)))
        .replace("@EDGE@", &format!("127.0.0.1:{}", uas_entry(EDGE)))
        .replace("@DBDIR@", dir.join("db").to_str().expect("utf8"));
    std::fs::write(dir.join("kamailio.cfg"), cfg).expect("write");
    if transport() == "tls" {
        // The proxies' and stunnel's certificate, and Kamailio's TLS profile.
        LoopbackPki::new().write(dir);
    }
    std::fs::create_dir_all(dir.join("db")).expect("mkdir");
    std::fs::write(dir.join("db/users"), htable).expect("write");
    std::fs::write(dir.join("db/version"), "table_name(str) table_version(int)\nusers:2\n").expect("write");
}

fn main() {
    // The transport (the fifth argument) shapes the configurations: first.
    let _ = TRANSPORT.set(match std::env::args().nth(5).as_deref() {
        Some("tcp") => "tcp",
        Some("tls") => "tls",
        _ => "udp",
    });
    eprintln!("calls over {}", transport());
    let mut args = std::env::args().skip(1);
    let calls: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rates: Vec<u32> = args
        .next()
        .unwrap_or_else(|| "1000,2000,4000,6000,8000,10000,12000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    // EXUM_BENCH_KEEP=1 keeps the run's files (configurations, sipp statistics, Kamailio's log).
    let temp = tempfile::tempdir().expect("tempdir");
    let (dir, _temp) = if std::env::var_os("EXUM_BENCH_KEEP").is_some() {
        let kept = temp.keep();
        eprintln!("files kept in {}", kept.display());
        (kept, None)
    } else {
        (temp.path().to_owned(), Some(temp))
    };
    setup(&dir, exum_router_tests::components::PILOT_GROUP);
    let only = args.next().unwrap_or_else(|| "direct,kamailio,standard,example".into());
    let systems: Vec<System> = [
        ("direct", System::Direct),
        ("kamailio", System::Kamailio),
        ("standard", System::ExumStandard),
        ("standard1", System::ExumStandardOneThread),
        ("standardhep", System::ExumStandardHep),
        ("standardotel", System::ExumStandardOtel),
        ("example", System::ExumExample),
    ]
    .into_iter()
    .filter(|(name, _)| only.split(',').any(|o| o.trim() == *name))
    .map(|(_, s)| s)
    .collect();
    if systems.contains(&System::ExumStandardHep) {
        hep_collector();
    }
    if systems.contains(&System::ExumStandardOtel) {
        otlp_collector();
    }
    let example_idle = systems.iter().any(|s| s.is_exum()).then(example_deployment_idle_mib);
    if let Some(mib) = example_idle {
        eprintln!("exum-router idle on the example deployment: {mib:.1} MiB");
    }
    let repeats: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3).max(1);

    let mut steps: Vec<Step> = Vec::new();
    for &rate in &rates {
        for rep in 1..=repeats {
            for &system in &systems {
                if steps.iter().any(|s| s.system == system && s.rate < rate && s.collapsed()) {
                    continue; // it fell apart at a lower rate
                }
                let s = run_step(&dir, system, rate, rep, calls);
                eprintln!(
                    "{:>32} {:>5}/s #{rep} (achieved {:.0}/s): {} ok, {} failed, probe {}/{} failed, p50 {:.3} ms, p99 {:.3} ms, {:.3} CPU-s/1000 calls, {:.0} -> {:.0} MiB, UDP rcvbuf errors {}",
                    system.name(),
                    rate,
                    s.achieved,
                    s.ok,
                    s.failed,
                    s.probe_failed,
                    s.probe_calls,
                    s.p50_ms,
                    s.p99_ms,
                    s.cpu_s_per_1000,
                    s.idle_mib,
                    s.loaded_mib,
                    s.udp_rcvbuf_errors
                );
                steps.push(s);
            }
        }
    }
    let mut md = String::from(
        "| system | rate/s | # | achieved/s | calls | failed | probe calls (failed) | INVITE→200 p50 ms | p99 ms | CPU s / 1000 calls | memory idle MiB | memory after the step MiB | UDP rcvbuf / sndbuf errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let mut json = Vec::new();
    for s in &steps {
        md.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} ({}) | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} | {} / {} |\n",
            s.system.name(),
            s.rate,
            s.rep,
            s.achieved,
            s.calls,
            s.failed,
            s.probe_calls,
            s.probe_failed,
            s.p50_ms,
            s.p99_ms,
            s.cpu_s_per_1000,
            s.idle_mib,
            s.loaded_mib,
            s.udp_rcvbuf_errors,
            s.udp_sndbuf_errors
        ));
        json.push(serde_json::json!({"system": s.system.name(), "rate": s.rate, "rep": s.rep,
            "udp_rcvbuf_errors": s.udp_rcvbuf_errors, "udp_sndbuf_errors": s.udp_sndbuf_errors,
            "errors_log": s.errors_log.as_ref().map(|p| p.display().to_string()), "achieved_rate": s.achieved, "calls": s.calls, "ok": s.ok, "failed": s.failed,
            "probe_calls": s.probe_calls, "probe_failed": s.probe_failed,
            "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "cpu_s_per_1000_calls": s.cpu_s_per_1000,
            "idle_mib": s.idle_mib, "loaded_mib": s.loaded_mib}));
    }
    let lost: Vec<&Step> = steps.iter().filter(|s| s.failed > 0 || s.probe_failed > 0).collect();
    if !lost.is_empty() {
        md.push_str("\n## Steps that lost calls\n\n| system | rate/s | # | failed | probe failed | UDP rcvbuf errors | sipp's errors (first lines) |\n|---|---:|---:|---:|---:|---:|---|\n");
        for s in lost {
            let head = s.errors_log.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).map_or(String::new(), |t| {
                t.lines().filter(|l| !l.trim().is_empty()).take(3).collect::<Vec<_>>().join(" / ").replace('|', "/")
            });
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                s.system.name(),
                s.rate,
                s.rep,
                s.failed,
                s.probe_failed,
                s.udp_rcvbuf_errors,
                head
            ));
        }
    }
    let (summary_md, summary) = summary(&systems, &steps, rates.iter().copied().max().unwrap_or(0));
    md.push_str(&summary_md);
    if let Some(mib) = example_idle {
        md.push_str(&format!(
            "\nexum-router idle on the shipped example deployment (`exum-router`, no arguments): {mib:.1} MiB\n"
        ));
    }
    let json = serde_json::json!({"steps": json, "summary": summary, "exum_idle_example_deployment_mib": example_idle});
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let _ = std::fs::create_dir_all(&out);
    let name = if transport() == "udp" { "compare".to_owned() } else { format!("compare-{}", transport()) };
    std::fs::write(out.join(format!("{name}.md")), &md).expect("write");
    std::fs::write(out.join(format!("{name}.json")), serde_json::to_string_pretty(&json).unwrap_or_default())
        .expect("write");
    let _ = std::io::stdout().write_all(md.as_bytes());
}

/// The summary: each system's highest clean rate; latency, CPU and memory at the
/// common rate (the highest rate every proxy ran clean); the ratios
/// exum-router / Kamailio against the targets.
fn summary(systems: &[System], steps: &[Step], top: u32) -> (String, serde_json::Value) {
    // A rate is clean for a system when every repetition of it was.
    let clean_at = |system: System, rate: u32| {
        let reps: Vec<&Step> = steps.iter().filter(|s| s.system == system && s.rate == rate).collect();
        !reps.is_empty() && reps.iter().all(|s| s.clean())
    };
    let clean_rate =
        |system: System| steps.iter().filter(|s| s.system == system && clean_at(system, s.rate)).map(|s| s.rate).max();
    let proxies: Vec<System> = systems.iter().copied().filter(|s| *s != System::Direct).collect();
    let common = steps.iter().map(|s| s.rate).filter(|&r| proxies.iter().all(|&p| clean_at(p, r))).max();
    let at = |system: System| common.and_then(|r| steps.iter().find(|s| s.system == system && s.rate == r));
    let ceiling = clean_rate(System::Direct);
    let mut md = String::from("\n## Summary\n\n");
    match common {
        Some(r) => md.push_str(&format!(
            "Common rate (the highest every proxy ran with 0 failed calls in every repetition): {r}/s.\n\n"
        )),
        None => md.push_str("No rate at which every proxy ran with 0 failed calls.\n\n"),
    }
    md.push_str("| system | highest clean rate/s | p50 ms | p99 ms | CPU s / 1000 calls | memory idle MiB | memory after the step MiB |\n|---|---:|---:|---:|---:|---:|---:|\n");
    let mut rows = Vec::new();
    for &system in systems {
        let rate = clean_rate(system);
        let shown = match rate {
            Some(r) if r == top => format!("≥ {r}"),
            Some(r) => r.to_string(),
            None => "none".into(),
        };
        let s = at(system);
        let f = |v: Option<f64>, digits: usize| {
            v.filter(|v| v.is_finite()).map_or("–".into(), |v| format!("{v:.digits$}"))
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            system.name(),
            shown,
            f(s.map(|s| s.p50_ms), 3),
            f(s.map(|s| s.p99_ms), 3),
            f(s.map(|s| s.cpu_s_per_1000), 3),
            f(s.filter(|_| system != System::Direct).map(|s| s.idle_mib), 0),
            f(s.filter(|_| system != System::Direct).map(|s| s.loaded_mib), 0),
        ));
        rows.push(serde_json::json!({"system": system.name(), "highest_clean_rate": rate, "highest_rate_tried": top,
            "at_common_rate": s.map(|s| serde_json::json!({"p50_ms": s.p50_ms, "p99_ms": s.p99_ms,
                "cpu_s_per_1000_calls": s.cpu_s_per_1000, "idle_mib": s.idle_mib, "loaded_mib": s.loaded_mib}))}));
    }
    let mut ratios = Vec::new();
    if let Some(k) = at(System::Kamailio) {
        md.push_str("\nRatios exum-router / Kamailio (targets: clean rate ≥ 1.5 or the generator's ceiling, CPU per call ≤ 0.5, p99 ≤ 1):\n\n| system | clean rate | CPU per call | p99 at the common rate |\n|---|---:|---:|---:|\n");
        for &system in systems.iter().filter(|s| s.is_exum()) {
            let Some(e) = at(system) else { continue };
            let rate_ratio = match (clean_rate(system), clean_rate(System::Kamailio)) {
                (Some(a), Some(b)) => a as f64 / b as f64,
                _ => f64::NAN,
            };
            let at_ceiling = clean_rate(system).is_some() && clean_rate(system) == ceiling;
            let (cpu, p99) = (e.cpu_s_per_1000 / k.cpu_s_per_1000, e.p99_ms / k.p99_ms);
            let mark = |ok: bool| if ok { "met" } else { "not met" };
            md.push_str(&format!(
                "| {} | {:.2}{} ({}) | {:.2} ({}) | {:.2} ({}) |\n",
                system.name(),
                rate_ratio,
                if at_ceiling { ", generator's ceiling" } else { "" },
                mark(rate_ratio >= 1.5 || at_ceiling),
                cpu,
                mark(cpu <= 0.5),
                p99,
                mark(p99 <= 1.0)
            ));
            ratios.push(serde_json::json!({"system": system.name(), "clean_rate_ratio": rate_ratio,
                "at_generator_ceiling": at_ceiling, "cpu_per_call_ratio": cpu, "p99_ratio": p99}));
        }
    }
    if let Some(c) = ceiling {
        md.push_str(&format!(
            "\nThe generator alone (sipp → sipp) ran clean up to {}{c}/s.\n",
            if c == top { "at least " } else { "" }
        ));
    }
    (md, serde_json::json!({"common_rate": common, "systems": rows, "ratios": ratios, "generator_ceiling": ceiling}))
}
