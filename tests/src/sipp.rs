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

/// The last value of column `name` in a sipp `-trace_stat` file (0 when absent).
pub fn stat(path: &Path, name: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return 0 };
    let Some(column) = header.split(';').position(|c| c == name) else { return 0 };
    lines.last().and_then(|l| l.split(';').nth(column)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}
