//! What the sipp benchmarks (`compare`, `overload`, `hostile-tenants`) share:
//! readiness by port, an orderly stop, and the files of a one-tenant deployment.

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
