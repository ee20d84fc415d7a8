//! Helpers for tests and benchmarks that drive sipp (Debian package
//! `sip-tester`): a free loopback port, the sipp command, and reading its
//! `-trace_stat` statistics.

use std::path::Path;
use std::process::{Command, Stdio};

/// A UDP port on 127.0.0.1 that was free a moment ago (for a sipp instance,
/// which must be given its port).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The `sipp` command (panics with the package to install when it is missing).
pub fn sipp() -> Command {
    let found = Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(found.is_ok(), "sipp is not installed: `apt-get install -y sip-tester` (scripts/test.sh does it)");
    Command::new("sipp")
}

/// sipp's built-in UAS on 127.0.0.1:`port`, quiet, working in `dir`; callers
/// add their own options and spawn it.
pub fn uas(dir: &Path, port: u16) -> Command {
    let mut cmd = sipp();
    cmd.args(["-sn", "uas", "-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
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

/// A sipp UAC running `tests/sipp/uac.xml` against `target` from `port`: `calls`
/// calls at `rate` per second, users from `users.csv` in `dir`, statistics every
/// second to `uac.csv` there. Callers add their own options and spawn it.
pub fn uac(dir: &Path, target: std::net::SocketAddr, port: u16, calls: u64, rate: u64) -> Command {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp/uac.xml");
    let mut cmd = sipp();
    cmd.arg(target.to_string())
        .arg("-sf")
        .arg(scenario)
        .args(["-inf", "users.csv", "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string(), "-nostdin", "-timeout", "120s"])
        .args(["-trace_stat", "-stf", "uac.csv", "-fd", "1"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}
