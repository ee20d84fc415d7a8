//! The systemd unit in `packaging/`: `systemd-analyze verify` accepts it (with
//! `ExecStart` pointing at the binary this build made), and it keeps the
//! settings the router relies on.

use std::path::Path;
use std::process::Command;

fn unit() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/exum-router.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let found = Command::new("systemd-analyze").arg("--version").output();
    assert!(found.is_ok(), "systemd-analyze is not installed: `apt-get install -y systemd` (scripts/test.sh does it)");
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit().replace("/usr/bin/exum-router", env!("CARGO_BIN_EXE_exum-router"));
    let path = dir.path().join("exum-router.service");
    std::fs::write(&path, unit).expect("write");
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output().expect("runs");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("exum-router.service"), "warnings about the unit: {said}");
}

#[test]
fn the_unit_is_a_notify_service_that_reloads_with_sighup_and_is_hardened() {
    let unit = unit();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
        "User=exum-router",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "LimitNOFILE=",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "the unit has no `{line}`");
    }
    // The policy engine writes machine code at run time.
    assert!(!unit.lines().any(|l| l.starts_with("MemoryDenyWriteExecute")), "W^X would stop the policy engine");
}
