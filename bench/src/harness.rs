//! What the sipp benchmarks (`compare`, `overload`, `hostile-tenants`) share:
//! readiness by port, an orderly stop, and the files of a one-tenant deployment;
//! and the TLS files of the TLS benchmarks (`compare ... tls`, `tls-idle`).

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

/// Stops a process the way an operator would (SIGTERM: Kamailio takes its
/// children down with it), then SIGKILL if it lingers.
pub fn stop(mut child: Child) {
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

/// The release router's binary (`EXUM_ROUTER`, else `target/release/exum-router`), absolute.
pub fn router_exe() -> std::path::PathBuf {
    let exe = std::env::var("EXUM_ROUTER").unwrap_or_else(|_| "target/release/exum-router".into());
    std::fs::canonicalize(&exe).expect("exum-router built (cargo build --release)")
}

/// Starts the release router on `router.toml` in `dir`, logging errors only,
/// its output discarded.
pub fn serve_in(dir: &Path) -> Child {
    Command::new(router_exe())
        .args(["serve", "--config", "router.toml"])
        .env("RUST_LOG", "error")
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the router starts")
}

/// Whether something holds UDP 127.0.0.1:`port`, polled for up to 10 s (sipp
/// and the router say nothing when they are ready), read from the kernel's
/// socket table rather than probed by binding the port.
pub fn bound(port: u16) -> bool {
    bound_within(port, Duration::from_secs(10))
}

/// Whether something holds UDP 127.0.0.1:`port` within `wait`.
pub fn bound_within(port: u16, wait: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < wait {
        if exum_router_tests::sipp::udp_bound(std::net::SocketAddr::from(([127, 0, 0, 1], port))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Writes into `dir` the sipp `scenarios` (from `bench/sipp/`), `users.csv` with
/// `users` users of contoso.com, and `directory.toml` putting all of them
/// on-premises behind one UM server at 127.0.0.1:`um` (per-server timer
/// `um_timeout_ms`, when given).
pub fn on_premises_deployment(dir: &Path, scenarios: &[&str], users: usize, um: u16, um_timeout_ms: Option<u32>) {
    let sipp = Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp");
    for f in scenarios {
        std::fs::copy(sipp.join(f), dir.join(f)).expect("scenario");
    }
    let mut list = String::from("SEQUENTIAL\n");
    let mut directory = String::new();
    for i in 0..users {
        list.push_str(&format!("user{i};contoso.com\n"));
        directory.push_str(&format!(
            "[[tenants.contoso.users]]\nsip = \"sip:user{i}@contoso.com\"\neum = \"eum:user{i}@contoso.com;phone-context=DP1\"\n"
        ));
    }
    let timeout = um_timeout_ms.map_or(String::new(), |ms| format!(", timeout_ms = {ms}"));
    directory.push_str(&format!(
        "[[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:127.0.0.1:{um}\"{timeout} }}]\n"
    ));
    std::fs::write(dir.join("users.csv"), list).expect("write");
    std::fs::write(dir.join("directory.toml"), directory).expect("write");
}

/// The resident set of process `pid`, in MiB (0 when unreadable).
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// A free TCP port on loopback (released for the caller to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

/// Runs `exum-router serve --config <config>` (`EXUM_ROUTER`, or the release
/// build) until its admin API at `admin` answers `/ready` with 200; when
/// `expect` is given, `/directory` must contain it. Returns the time to ready
/// and the RSS half a second later, and stops the router.
pub fn serve_until_ready(
    config: &Path,
    admin: std::net::SocketAddr,
    expect: Option<&str>,
) -> (std::time::Duration, f64) {
    use std::io::{Read as _, Write as _};
    use std::time::{Duration, Instant};
    let get = |path: &str| -> Option<String> {
        let mut s = std::net::TcpStream::connect(admin).ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    };
    let exe = std::env::var("EXUM_ROUTER").unwrap_or_else(|_| "target/release/exum-router".into());
    let start = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("exum-router (cargo build --release -p exum-router)");
    while !get("/ready").is_some_and(|b| b.starts_with("HTTP/1.1 200")) {
        assert!(start.elapsed() < Duration::from_secs(600), "not ready within 600 s");
        assert!(child.try_wait().expect("try_wait").is_none(), "the router exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    if let Some(expect) = expect {
        let body = get("/directory").unwrap_or_default();
        assert!(body.contains(expect), "the router read its directory: {body}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss = rss_mib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    (took, rss)
}

/// Memory of `pid` and its children: the sum of their proportional set sizes
/// (`Pss` in /proc/*/smaps_rollup), so memory Kamailio's processes share is
/// counted once, not once per process as summing their RSS would.
pub fn pss_mib(pid: u32) -> f64 {
    let mut pids = vec![pid];
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        pids.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|s| s.lines().find_map(|l| l.strip_prefix("Pss:")).map(str::to_owned))
        .filter_map(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
        / 1024.0
}

/// A CA and a certificate for 127.0.0.1 (and `localhost`) it signed, in PEM,
/// generated per run.
pub struct LoopbackPki {
    /// The CA certificate.
    pub ca_pem: String,
    /// The CA certificate, DER, for a client's roots.
    pub ca_der: rustls::pki_types::CertificateDer<'static>,
    /// The server certificate.
    pub cert_pem: String,
    /// Its key.
    pub key_pem: String,
}

impl LoopbackPki {
    /// A new CA and server certificate.
    pub fn new() -> LoopbackPki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        leaf.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
        let key = KeyPair::generate().expect("key");
        let cert = leaf.signed_by(&key, &ca).expect("signed");
        LoopbackPki { ca_pem: ca.pem(), ca_der: ca.der().clone(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// Writes `ca.pem`, `cert.pem`, `key.pem` in `dir`, and Kamailio's TLS
    /// profile `tls.cfg` with them: no client certificate asked for, servers'
    /// certificates not checked (exum-router checks them against the CA).
    pub fn write(&self, dir: &Path) {
        for (file, text) in [("ca.pem", &self.ca_pem), ("cert.pem", &self.cert_pem), ("key.pem", &self.key_pem)] {
            std::fs::write(dir.join(file), text).expect("write");
        }
        std::fs::write(
            dir.join("tls.cfg"),
            format!(
                "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
                 private_key = {0}/key.pem\ncertificate = {0}/cert.pem\n\
                 [client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n",
                dir.display()
            ),
        )
        .expect("write");
    }
}

impl Default for LoopbackPki {
    fn default() -> Self {
        LoopbackPki::new()
    }
}
