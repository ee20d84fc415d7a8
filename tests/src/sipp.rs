//! Helpers for tests and benchmarks that drive sipp (Debian package
//! `sip-tester`): an address of its own for each sipp instance, the sipp
//! command, and reading its `-trace_stat` statistics.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};

/// Instances given an address by this process so far.
static SIPP_INSTANCES: AtomicU16 = AtomicU16::new(0);

/// A loopback address for one sipp instance that no other socket can hold:
/// sipp must be told where to listen, and a port found free, released and
/// then handed to sipp can be taken by anyone in between. Instead, each test
/// process gets loopback addresses of its own, `127.(128 + pid / 2^16).(pid /
/// 2^8 % 256).(pid % 256)`, which nothing else on the machine binds, and each
/// instance a port of its own from 5060 up, below the ephemeral range the
/// kernel hands out.
pub fn sipp_address() -> SocketAddr {
    let pid = std::process::id();
    let [_, high, mid, low] = pid.to_be_bytes();
    let ip = Ipv4Addr::new(127, 128 | (high & 0x3f), mid, low);
    let n = SIPP_INSTANCES.fetch_add(1, Ordering::Relaxed);
    assert!(n < 1000, "a test process runs at most 1000 sipp instances");
    SocketAddr::new(ip.into(), 5060 + n)
}

/// Whether a UDP socket on this machine is bound to `at`, from the kernel's
/// socket table (`/proc/net/udp`, `/proc/net/udp6`). Read, not probed: a probe
/// that binds `at` itself, however briefly, can take the address from under a
/// program starting on it (sipp then exits: address in use).
pub fn udp_bound(at: SocketAddr) -> bool {
    let (table, local) = match at {
        SocketAddr::V4(a) => ("/proc/net/udp", format!("{:08X}:{:04X}", u32::from_ne_bytes(a.ip().octets()), a.port())),
        SocketAddr::V6(a) => {
            let ip: String = a
                .ip()
                .octets()
                .chunks(4)
                .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
                .collect();
            ("/proc/net/udp6", format!("{ip}:{:04X}", a.port()))
        }
    };
    let text = std::fs::read_to_string(table).unwrap_or_else(|e| panic!("{table}: {e}"));
    text.lines().skip(1).any(|line| line.split_whitespace().nth(1) == Some(local.as_str()))
}

/// Waits until sipp (`child`) listens on `at`: panics if it exits first (with
/// its status) or after 20 s. sipp says nothing when it is ready.
pub async fn listening(child: &mut std::process::Child, at: SocketAddr) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !udp_bound(at) {
        if let Some(status) = child.try_wait().expect("sipp's status") {
            panic!("sipp exited ({status}) before it listened on {at}");
        }
        assert!(std::time::Instant::now() < deadline, "sipp did not listen on {at} within 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The `sipp` command (panics with the package to install when it is missing).
pub fn sipp() -> Command {
    let found = Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(found.is_ok(), "sipp is not installed: `apt-get install -y sip-tester` (scripts/test.sh does it)");
    Command::new("sipp")
}

/// sipp's built-in UAS on `at` (from [`sipp_address`]), quiet, working in
/// `dir`; callers add their own options and spawn it.
pub fn uas(dir: &Path, at: SocketAddr) -> Command {
    let mut cmd = sipp();
    cmd.args(["-sn", "uas", "-i", &at.ip().to_string(), "-p", &at.port().to_string(), "-nostdin"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The last value of column `name` in a sipp `-trace_stat` file (0 when absent).
pub fn stat(path: &Path, name: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return 0 };
    let Some(column) = header.split(';').position(|c| c == name) else { return 0 };
    lines.last().and_then(|l| l.split(';').nth(column)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// A sipp UAC running `tests/sipp/uac.xml` against `target` from `at` (from
/// [`sipp_address`]): `calls` calls at `rate` per second, users from
/// `users.csv` in `dir`, statistics every second to `uac.csv` there. Callers
/// add their own options and spawn it.
pub fn uac(dir: &Path, target: SocketAddr, at: SocketAddr, calls: u64, rate: u64) -> Command {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp/uac.xml");
    let mut cmd = sipp();
    cmd.arg(target.to_string())
        .arg("-sf")
        .arg(scenario)
        .args(["-inf", "users.csv", "-i", &at.ip().to_string(), "-p", &at.port().to_string()])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string(), "-nostdin", "-timeout", "120s"])
        .args(["-trace_stat", "-stf", "uac.csv", "-fd", "1"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[cfg(test)]
mod tests {
    use super::udp_bound;

    #[test]
    fn a_bound_socket_is_seen_in_the_kernels_table_and_a_closed_one_is_not() {
        for ip in ["127.0.0.1", "::1"] {
            let Ok(socket) = std::net::UdpSocket::bind((ip, 0)) else { continue };
            let at = socket.local_addr().expect("addr");
            assert!(udp_bound(at), "{at} bound");
            drop(socket);
            assert!(!udp_bound(at), "{at} closed");
        }
    }
}
