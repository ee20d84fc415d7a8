//! Overload control measured with sipp beyond capacity: the router with a cap of
//! `max_transactions` transactions in progress in front of a UM server that takes
//! 200 ms to answer, so its capacity is about cap / 0.2 s calls per second. sipp
//! drives it below capacity, then far beyond, then below again. Per phase: calls
//! answered 200, refused 503 (with Retry-After), failed otherwise, and the rate
//! of answered calls. Expected: nothing fails; beyond capacity the router keeps
//! answering about its capacity and refuses the rest; afterwards every call is
//! answered again. Writes `bench/results/overload.{md,json}`.
//!
//! `overload [cap] [below-rate] [beyond-rate] [seconds-per-phase]` (100 300 2000 10)

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use exum_bench::harness::{self, bound, stop};
use exum_router_tests::sipp::stat;

const PROXY: u16 = 15260;
const UM: u16 = 15280;
const UAC: u16 = 15300;
const USERS: usize = 1000;

fn spawn_quiet(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn")
}

/// The count of one message of the scenario from sipp's `-trace_counts` file:
/// the column whose name contains `what` (e.g. `503_Recv`), summed over the file's last line.
fn message_count(dir: &Path, what: &str) -> u64 {
    let Some(file) = std::fs::read_dir(dir)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("_counts.csv"))
    else {
        return 0;
    };
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(';').collect();
    let last: Vec<&str> = lines.last().unwrap_or("").split(';').collect();
    header.iter().zip(&last).filter(|(h, _)| h.contains(what)).filter_map(|(_, v)| v.trim().parse::<u64>().ok()).sum()
}

struct Phase {
    name: &'static str,
    rate: u32,
    calls: u64,
    answered: u64,
    refused: u64,
    failed: u64,
    dead: u64,
    seconds: f64,
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u32>().ok());
    let cap = args.next().flatten().unwrap_or(100);
    let below = args.next().flatten().unwrap_or(300);
    let beyond = args.next().flatten().unwrap_or(2000);
    let seconds = args.next().flatten().unwrap_or(10);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    harness::on_premises_deployment(d, &["uac-overload.xml", "uas-slow.xml"], USERS, UM, Some(5000));
    std::fs::write(
        d.join("router.toml"),
        format!(
            "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:{PROXY}\"\ntransports = [\"udp\"]\n\
             [probes]\nenabled = false\n[overload]\nmax_transactions = {cap}\nper_source_requests = 0\nretry_after_s = 1\n\
             [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\nrecord_route = true\n"
        ),
    )
    .expect("write");
    let um = spawn_quiet(
        Command::new("sipp")
            .args(["-sf", "uas-slow.xml", "-i", "127.0.0.1", "-p", &UM.to_string(), "-nostdin"])
            .args(["-buff_size", "4194304"])
            .current_dir(d),
    );
    assert!(bound(UM), "sipp UAS did not bind {UM}");
    let exe = std::env::var("EXUM_ROUTER").unwrap_or_else(|_| "target/release/exum-router".into());
    let router = spawn_quiet(
        Command::new(std::fs::canonicalize(&exe).expect("exum-router built"))
            .args(["serve", "--config", "router.toml"])
            .env("RUST_LOG", "warn")
            .current_dir(d),
    );
    assert!(bound(PROXY), "the router did not bind {PROXY}");
    let mut phases = Vec::new();
    for (name, rate) in [("below capacity", below), ("beyond capacity", beyond), ("below again", below)] {
        let calls = u64::from(rate) * u64::from(seconds);
        let stats = d.join("uac.csv");
        let _ = std::fs::remove_file(&stats);
        let started = Instant::now();
        let _ = Command::new("sipp")
            .arg(format!("127.0.0.1:{PROXY}"))
            .args(["-sf", "uac-overload.xml", "-inf", "users.csv", "-i", "127.0.0.1", "-p", &UAC.to_string()])
            .args(["-m", &calls.to_string(), "-r", &rate.to_string(), "-nostdin", "-buff_size", "4194304"])
            .args(["-timeout", "300s", "-trace_stat", "-stf", "uac.csv", "-fd", "1", "-trace_counts"])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let seconds = started.elapsed().as_secs_f64();
        let failed = stat(&stats, "FailedCall(C)");
        // Messages for calls sipp had ended: a 503 retransmitted because its ACK
        // did not match would show here.
        let dead = stat(&stats, "DeadCallMsgs(C)");
        let refused = message_count(d, "503");
        let answered = stat(&stats, "SuccessfulCall(C)").saturating_sub(refused);
        eprintln!(
            "{name}: {rate}/s, {calls} calls: {answered} answered, {refused} refused (503), {failed} failed, {dead} messages after the end of their call, {seconds:.1} s"
        );
        phases.push(Phase { name, rate, calls, answered, refused, failed, dead, seconds });
    }
    stop(router);
    stop(um);
    let capacity = f64::from(cap) / 0.2;
    let mut md = format!(
        "Cap {cap} transactions in progress, UM server answering in 200 ms: capacity about {capacity:.0} calls/s.\n\n\
         | phase | offered calls/s | calls | answered (200) | refused (503) | failed | answered calls/s | messages after their call ended |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    let mut json = Vec::new();
    for p in &phases {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} |\n",
            p.name,
            p.rate,
            p.calls,
            p.answered,
            p.refused,
            p.failed,
            p.answered as f64 / p.seconds,
            p.dead
        ));
        json.push(
            serde_json::json!({"phase": p.name, "offered_rate": p.rate, "calls": p.calls, "answered": p.answered,
            "refused_503": p.refused, "failed": p.failed, "dead_call_messages": p.dead, "seconds": p.seconds}),
        );
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let _ = std::fs::create_dir_all(&out);
    std::fs::write(out.join("overload.md"), &md).expect("write");
    let json = serde_json::json!({"cap": cap, "capacity_calls_per_s": capacity, "phases": json});
    std::fs::write(out.join("overload.json"), serde_json::to_string_pretty(&json).unwrap_or_default()).expect("write");
    print!("{md}");
}
