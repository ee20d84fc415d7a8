//! Processes of the sipp benchmarks (`compare`, `overload`, `hostile-tenants`):
//! readiness by port and an orderly stop.

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

/// Whether something holds UDP 127.0.0.1:`port`, polled for up to 10 s (sipp
/// and the router say nothing when they are ready).
pub fn bound(port: u16) -> bool {
    for _ in 0..1000 {
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
