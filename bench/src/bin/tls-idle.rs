//! Memory with many idle TLS connections: exum-router and Kamailio 5.6 (tls
//! module) each listen for TLS on loopback with the same certificate; this
//! process opens `connections` TLS connections to it (handshakes complete),
//! holds them idle, checks a sample still answers an OPTIONS, and reports the
//! proxy's memory (the sum of its processes' proportional set sizes) before and
//! after. Prints a Markdown table.
//!
//! `cargo run --release -p exum-bench --bin tls-idle [connections] [exum,kamailio]`
//! (exum-router from `EXUM_ROUTER`, else `target/release/exum-router`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exum_bench::harness::{LoopbackPki, pss_mib};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TLS_PORT: u16 = 15061;
const UDP_PORT: u16 = 15060;
/// Handshakes in flight at once (`EXUM_BENCH_CONCURRENCY`, 1: Kamailio 5.6.3's tls
/// module with Debian 12's OpenSSL 3 double-frees and crashes under concurrent
/// handshakes, kamailio/kamailio#3791).
fn concurrency() -> usize {
    std::env::var("EXUM_BENCH_CONCURRENCY").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

type Conn = tokio_rustls::client::TlsStream<TcpStream>;

fn start(dir: &Path, system: &str, connections: usize) -> Child {
    match system {
        "kamailio" => {
            let limit = connections + 1000;
            std::fs::write(
                dir.join("kamailio.cfg"),
                format!(
                    "#!KAMAILIO\ndebug=0\nlog_stderror=no\nchildren=2\ntcp_children=2\n\
                     listen=udp:127.0.0.1:{UDP_PORT}\nlisten=tls:127.0.0.1:{TLS_PORT}\nenable_tls=yes\n\
                     tcp_max_connections={limit}\ntls_max_connections={limit}\ntcp_connection_lifetime=3600\n\
                     auto_aliases=no\nloadmodule \"tls.so\"\nloadmodule \"sl.so\"\n\
                     modparam(\"tls\", \"config\", \"{}/tls.cfg\")\n\
                     request_route {{\n    sl_send_reply(\"200\", \"OK\");\n}}\n",
                    dir.display()
                ),
            )
            .expect("write");
            Command::new("kamailio")
                .args(["-f", "kamailio.cfg", "-DD", "-E", "-m", "2048", "-M", "16"])
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("kamailio.log")).map_or_else(|_| Stdio::null(), Stdio::from))
                .spawn()
                .expect("kamailio")
        }
        _ => {
            let limit = connections + 1000;
            std::fs::write(dir.join("directory.toml"), "").expect("write");
            std::fs::write(
                dir.join("router.toml"),
                format!(
                    "directory = \"directory.toml\"\n\
                     [[listen]]\naddress = \"127.0.0.1:{UDP_PORT}\"\ntransports = [\"udp\"]\n\
                     [[listen]]\naddress = \"127.0.0.1:{TLS_PORT}\"\ntransports = [\"tls\"]\n\
                     [tls]\ncertificate = \"cert.pem\"\nkey = \"key.pem\"\nca = \"ca.pem\"\n\
                     [probes]\nenabled = false\n[overload]\nper_source_requests = 0\n\
                     [sip]\nmax_connections = {limit}\nmax_connections_per_ip = {limit}\ntcp_idle_timeout_ms = 3600000\ntcp_first_message_timeout_ms = 3600000\n\
                     [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\", \"127.0.0.1\"]\n"
                ),
            )
            .expect("write");
            let exe = std::env::var("EXUM_ROUTER").unwrap_or_else(|_| "target/release/exum-router".into());
            let exe = std::fs::canonicalize(&exe).unwrap_or_else(|_| exe.into());
            Command::new(exe)
                .args(["serve", "--config", "router.toml"])
                .env("RUST_LOG", "warn")
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("router.log")).map_or_else(|_| Stdio::null(), Stdio::from))
                .spawn()
                .expect("exum-router")
        }
    }
}

async fn connect(connector: &tokio_rustls::TlsConnector, to: SocketAddr) -> std::io::Result<Conn> {
    let tcp = TcpStream::connect(to).await?;
    let name = ServerName::try_from("127.0.0.1").expect("name").to_owned();
    connector.connect(name, tcp).await
}

/// Sends an OPTIONS on `conn`: whether a response comes back on it.
async fn options(conn: &mut Conn, n: usize) -> bool {
    let local = conn.get_ref().0.local_addr().map_or_else(|_| "127.0.0.1:1".into(), |a| a.to_string());
    let msg = format!(
        "OPTIONS sip:127.0.0.1:{TLS_PORT};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bK-idle{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=i{n}\r\nTo: <sip:127.0.0.1>\r\nCall-ID: idle{n}\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    if conn.write_all(msg.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await;
    matches!(read, Ok(Ok(k)) if k > 0 && buf[..k].starts_with(b"SIP/2.0 "))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let systems = args.next().unwrap_or_else(|| "exum,kamailio".into());
    let pki = LoopbackPki::new();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let to: SocketAddr = ([127, 0, 0, 1], TLS_PORT).into();
    println!(
        "| system | connections | memory idle MiB | with the connections MiB | KiB per connection | handshakes/s | sample answering OPTIONS |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for system in systems.split(',') {
        let temp = tempfile::tempdir().expect("tempdir");
        // EXUM_BENCH_KEEP=1 keeps the files (configurations, logs).
        let kept = std::env::var_os("EXUM_BENCH_KEEP").is_some();
        if kept {
            eprintln!("{system}: files kept");
        }
        let (dir, _guard) = if kept { (temp.keep(), None) } else { (temp.path().to_owned(), Some(temp)) };
        pki.write(&dir);
        let mut child = start(dir.as_path(), system, n);
        let ready = Instant::now() + Duration::from_secs(20);
        while connect(&connector, to).await.is_err() {
            assert!(Instant::now() < ready, "{system} did not listen for TLS on {to}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = pss_mib(child.id());
        let started = Instant::now();
        let mut conns: Vec<Conn> = Vec::with_capacity(n);
        let mut failed = 0;
        let mut pending = tokio::task::JoinSet::new();
        let mut opened = 0;
        while opened < n || !pending.is_empty() {
            while opened < n && pending.len() < concurrency() {
                let c = connector.clone();
                pending.spawn(async move { connect(&c, to).await });
                opened += 1;
            }
            match pending.join_next().await {
                Some(Ok(Ok(conn))) => conns.push(conn),
                _ => failed += 1,
            }
        }
        let rate = conns.len() as f64 / started.elapsed().as_secs_f64();
        // Let the proxy settle, then read its memory.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let loaded = pss_mib(child.id());
        let mut answered = 0;
        let sample: Vec<usize> = (0..50).chain(conns.len().saturating_sub(50)..conns.len()).collect();
        for &i in &sample {
            if options(&mut conns[i], i).await {
                answered += 1;
            }
        }
        println!(
            "| {system} | {} ({failed} failed) | {idle:.1} | {loaded:.1} | {:.1} | {rate:.0} | {answered}/{} |",
            conns.len(),
            (loaded - idle) * 1024.0 / conns.len().max(1) as f64,
            sample.len()
        );
        drop(conns);
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
    }
}
