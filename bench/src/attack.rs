//! What the attack replays (`attacks`, `attacks-round3`) share: reading the
//! router process's memory and CPU, counting datagrams at a peer, a UM server
//! that answers at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use exum_router_tests::peer::{UdpPeer, request, response};

/// A value of the process's /proc status (`VmRSS:`, `VmHWM:` ...), in bytes.
pub fn status_bytes(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The process's CPU time (user and system), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<u64>().ok()).sum();
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    ticks as f64 / hz
}

/// Counts the datagrams arriving at `peer` (from a task of its own).
pub fn count_arrivals(peer: Arc<UdpPeer>) -> Arc<AtomicU64> {
    let n = Arc::new(AtomicU64::new(0));
    let counter = n.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while peer.socket.recv_from(&mut buf).await.is_ok() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    n
}

/// A UM server that answers every INVITE with 200 at once (from a task of its own).
pub fn answering_um(um: Arc<UdpPeer>) {
    tokio::spawn(async move {
        while let Some((m, from)) = um.recv_within(Duration::from_secs(3600)).await {
            if m.method() == Some("INVITE") {
                um.send(from, &response(&m, 200, "um", &format!("Contact: <sip:{}>\r\n", um.addr))).await;
            }
        }
    });
}

/// What the calls placed by [`place_calls`] got.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answers {
    /// 200s.
    pub ok: u64,
    /// 404s.
    pub not_found: u64,
    /// 503s.
    pub busy: u64,
}

/// Places `calls` voice-mail calls to user0@contoso.com at `router` from
/// `caller`, one every `every`: the final answers received until `quiet`
/// passes without one after the last.
pub async fn place_calls(
    router: std::net::SocketAddr,
    caller: &UdpPeer,
    calls: usize,
    every: Duration,
    quiet: Duration,
    tag: &str,
) -> Answers {
    let mut answers = Answers::default();
    let receive = async {
        while let Some((m, _)) = caller.recv_within(quiet).await {
            match m.status() {
                Some(200) => answers.ok += 1,
                Some(404) => answers.not_found += 1,
                Some(503) => answers.busy += 1,
                _ => {}
            }
        }
    };
    let send = async {
        for i in 0..calls {
            let id = format!("{tag}{i}");
            let text = request(
                "INVITE",
                "sip:user0@contoso.com;opaque=app:voicemail",
                caller.addr,
                "UDP",
                &id,
                &format!("z9hG4bK-{id}"),
            );
            caller.send(router, &text).await;
            tokio::time::sleep(every).await;
        }
    };
    tokio::join!(send, receive);
    answers
}
