//! The `exum-router` binary's offline tools: output and exit codes on good and
//! bad input.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ is in the workspace").to_path_buf()
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_exum-router"))
        .args(args)
        .current_dir(workspace())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("the binary ends")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_the_standard_policy_and_refuses_junk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("standard.wasm");
    std::fs::write(&good, exum_router::policy::STANDARD_COMPONENT).expect("write");
    let out = run(&["check", good.to_str().expect("utf8")], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("contract   exum:policy@0.1.0"));

    let out = run(&["check", "Cargo.toml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Cargo.toml: not a WebAssembly component"), "{}", text(&out.stderr));

    let out = run(&["check", "missing.wasm"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing.wasm: cannot read"), "{}", text(&out.stderr));
}

#[test]
fn componentize_turns_a_core_module_into_a_checked_component() {
    // The core module the build compiled the standard policy to.
    let core = workspace().join("target/guests/wasm32-unknown-unknown/guest/exum_policy_standard.wasm");
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("standard.wasm");
    let out = run(&["componentize", core.to_str().expect("utf8"), out_path.to_str().expect("utf8")], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok: exports exum:policy/handler@0.1.0"));
    let out = run(&["componentize", out_path.to_str().expect("utf8"), "x.wasm"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already a component"), "{}", text(&out.stderr));
}

#[test]
fn simulate_reads_a_file_or_stdin() {
    let config = "examples/deployment/router.toml";
    let out = run(&["simulate", "--config", config, "examples/deployment/requests/alice-hosted.sip"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ms-destination=exap.um.outlook.com"));

    let request =
        std::fs::read(workspace().join("examples/deployment/requests/ivan-on-premises.sip")).expect("request");
    let out = run(&["simulate", "--config", config, "-"], Some(&request));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("sip:um1.litware.com;transport=tcp"));
}

#[test]
fn simulate_fails_clearly_on_bad_input() {
    let config = "examples/deployment/router.toml";
    let out = run(&["simulate", "--config", config, "-"], Some(b"INVITE nowhere\r\n\r\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("-: not a SIP request the router can route: malformed start line"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&["simulate", "--config", config, "no-such-request.sip"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no-such-request.sip: cannot read"));

    let out = run(
        &[
            "simulate",
            "--config",
            "examples/deployment/directory.toml",
            "examples/deployment/requests/alice-hosted.sip",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("directory.toml: "), "{}", text(&out.stderr));
}

/// `exum-router [extra] serve --config <config>` with its log (info) to read
/// line by line (standard error is a pipe, not a terminal).
fn serve(
    config: &std::path::Path,
    extra: &[&str],
) -> (std::process::Child, std::io::Lines<std::io::BufReader<std::process::ChildStderr>>) {
    let mut args = extra.to_vec();
    args.extend(["serve", "--config", config.to_str().expect("utf8")]);
    start_in(&workspace(), &args)
}

/// `exum-router <args>` started in `cwd`, with its log (info) to read line by line.
fn start_in(
    cwd: &Path,
    args: &[&str],
) -> (std::process::Child, std::io::Lines<std::io::BufReader<std::process::ChildStderr>>) {
    use std::io::BufRead as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_exum-router"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    (child, lines)
}

/// A deployment of one tenant, no users, listening on an ephemeral port.
fn one_tenant() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    let config = dir.path().join("router.toml");
    std::fs::write(
        &config,
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n[probes]\nenabled = false\n[[tenant]]\nid = \"t\"\ndomains = [\"t.test\"]\n",
    )
    .expect("write");
    (dir, config)
}

#[test]
fn serve_listens_reloads_on_sighup_and_directory_change_and_stops_cleanly_on_sigterm() {
    let (dir, config) = one_tenant();
    let (mut child, mut lines) = serve(&config, &[]);
    // The event: the router says it is listening.
    let before: Vec<String> = lines.by_ref().map_while(Result::ok).take_while(|l| !l.contains("listening")).collect();
    assert!(before.iter().any(|l| l.contains("tenant loaded")), "the router never said it was listening: {before:?}");
    // A log written to a pipe or a file carries no colour codes.
    assert!(before.iter().all(|l| !l.contains('\u{1b}')), "ANSI escapes in a log that is not a terminal: {before:?}");
    // SIGHUP reloads configuration and directory ...
    let status = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let reloaded = lines.by_ref().map_while(Result::ok).find(|l| l.contains("configuration and directory reloaded"));
    assert!(reloaded.is_some(), "SIGHUP did not reload");
    // ... and so does a change to the directory file.
    std::fs::write(dir.path().join("directory.toml"), "# changed\n").expect("write");
    let reloaded = lines.by_ref().map_while(Result::ok).find(|l| l.contains("configuration and directory reloaded"));
    assert!(reloaded.is_some(), "a directory change did not reload");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().expect("ends");
    assert!(exit.success(), "exit status {exit}; log: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopping")), "{rest:?}");
}

#[test]
fn serve_logs_one_json_object_per_line_with_log_format_json() {
    let (_dir, config) = one_tenant();
    let (mut child, mut lines) = serve(&config, &["--log-format", "json"]);
    let mut seen = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let json: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let message = json["fields"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(json["level"].is_string() && json["timestamp"].is_string(), "{line}");
        if message == "tenant loaded" {
            assert_eq!(json["fields"]["tenant"], "t", "structured fields: {line}");
        }
        seen.push(message.clone());
        if message == "listening" {
            break;
        }
    }
    assert!(seen.iter().any(|m| m == "listening"), "{seen:?}");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{rest:?}");
    assert!(child.wait().expect("ends").success(), "{rest:?}");
}

/// The next JSON log line whose message is `message` (lines before it skipped).
fn next_json_event(
    lines: &mut std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
    message: &str,
) -> serde_json::Value {
    let mut seen = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if json["fields"]["message"] == message {
            return json;
        }
        seen.push(line);
    }
    panic!("no `{message}` in the log: {seen:?}");
}

/// The names and fields of an event's spans, outermost first.
fn spans(event: &serde_json::Value) -> Vec<serde_json::Value> {
    event["spans"].as_array().cloned().unwrap_or_default()
}

#[test]
fn background_work_logs_in_spans_that_say_what_and_which_tenant() {
    let (dir, config) = one_tenant();
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, format!("policy_dir = \"policies\"\n{text}")).expect("write");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    let (mut child, mut lines) = serve(&config, &["--log-format", "json"]);
    next_json_event(&mut lines, "listening");
    // A reload by SIGHUP: its events are in a `reload` span naming the trigger.
    let status = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let reloaded = next_json_event(&mut lines, "configuration and directory reloaded");
    let reload = spans(&reloaded);
    assert!(reload.iter().any(|s| s["name"] == "reload" && s["trigger"] == "SIGHUP"), "{reloaded}");
    // A policy file that does not load, seen by the watcher: refused in the
    // watcher's span and the tenant's, which names the tenant (the event
    // itself does not).
    let file = dir.path().join("policies/t.wasm");
    std::fs::write(dir.path().join("policies/t.tmp"), b"not a component").expect("write");
    std::fs::rename(dir.path().join("policies/t.tmp"), &file).expect("rename");
    let refused = next_json_event(&mut lines, "reload refused, the previous version keeps serving");
    let names: Vec<String> = spans(&refused).iter().filter_map(|s| s["name"].as_str().map(str::to_owned)).collect();
    assert_eq!(names, ["watcher", "tenant"], "{refused}");
    assert_eq!(spans(&refused)[1]["tenant"], "t", "{refused}");
    assert!(refused["fields"].get("tenant").is_none(), "the span names the tenant, not the event: {refused}");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().expect("ends").success(), "{rest:?}");
}

#[test]
fn serve_tells_systemd_ready_reloading_stopping_and_pings_its_watchdog() {
    use std::io::BufRead as _;
    let (dir, config) = one_tenant();
    let path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("the notify socket");
    socket.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");
    let mut child = Command::new(env!("CARGO_BIN_EXE_exum-router"))
        .args(["serve", "--config", config.to_str().expect("utf8")])
        .current_dir(workspace())
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut log = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let next = |socket: &std::os::unix::net::UnixDatagram| {
        let mut buf = [0u8; 512];
        let len = socket.recv(&mut buf).expect("a notification within 30 s");
        String::from_utf8_lossy(&buf[..len]).into_owned()
    };
    // The state changes, watchdog pings left out (they come every 200 ms).
    let next_state = |socket: &std::os::unix::net::UnixDatagram| loop {
        let m = next(socket);
        if m != "WATCHDOG=1" {
            return m;
        }
    };
    assert_eq!(next_state(&socket), "READY=1");
    // Ready means listening: the UDP listener answers OPTIONS now.
    let addr = log
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.contains("listening").then(|| l.split("addr=").nth(1).map(|a| a.trim().to_owned())).flatten())
        .expect("the listening line");
    let sip = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sip.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let me = sip.local_addr().expect("addr");
    let options = format!(
        "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-notify\r\nMax-Forwards: 70\r\n\
         From: <sip:ops@127.0.0.1>;tag=1\r\nTo: <sip:{addr}>\r\nCall-ID: notify\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    sip.send_to(options.as_bytes(), &addr).expect("send");
    let mut buf = [0u8; 2048];
    let len = sip.recv(&mut buf).expect("an answer");
    assert!(buf[..len].starts_with(b"SIP/2.0 200"), "{}", String::from_utf8_lossy(&buf[..len]));
    // The watchdog is pinged while the router is well.
    let pinged = (0..10).map(|_| next(&socket)).any(|m| m == "WATCHDOG=1");
    assert!(pinged, "no WATCHDOG=1 with WatchdogSec 0.4 s");
    // SIGHUP: RELOADING=1 with the monotonic clock, then READY=1.
    let status = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let reloading = next_state(&socket);
    let (first, usec) = reloading.split_once('\n').expect("two lines");
    assert_eq!(first, "RELOADING=1");
    assert!(usec.strip_prefix("MONOTONIC_USEC=").and_then(|u| u.parse::<u64>().ok()).is_some(), "{reloading}");
    assert_eq!(next_state(&socket), "READY=1");
    // SIGTERM: STOPPING=1, and a clean exit.
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    assert_eq!(next_state(&socket), "STOPPING=1");
    let rest: Vec<String> = log.map_while(Result::ok).collect();
    assert!(child.wait().expect("ends").success(), "{rest:?}");
}

#[test]
fn version_names_the_release_the_commit_and_the_policy_contract() {
    let out = Command::new(env!("CARGO_BIN_EXE_exum-router")).arg("--version").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text.trim().strip_prefix(&format!("exum-router {} (commit ", env!("CARGO_PKG_VERSION"))).expect(&text);
    let (commit, contract) = rest.split_once(", ").expect(&text);
    assert!(commit == "unknown" || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())), "{text}");
    assert_eq!(contract, "policy contract exum:policy@0.1.0)", "{text}");
    // Built in a git checkout, it is that checkout's commit.
    let head = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(workspace()).output();
    if let Some(head) = head.ok().filter(|o| o.status.success()) {
        assert_eq!(commit, String::from_utf8_lossy(&head.stdout).trim(), "{text}");
    }
}

#[test]
fn serve_refuses_an_invalid_configuration_with_file_key_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("router.toml");
    std::fs::write(&config, "directory = \"d.toml\"\n[[listen]]\naddress = \"nowhere\"\n").expect("write");
    let out = run(&["serve", "--config", config.to_str().expect("utf8")], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("router.toml: listen[0].address: `nowhere` is not an IP address and port"), "{err}");
}

/// A certificate and key (PEM) for `name`, self-signed.
fn self_signed(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params").self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem())
}

#[test]
fn serve_reloads_a_renewed_tls_certificate_when_its_files_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    let (cert, key) = self_signed("router.test");
    std::fs::write(dir.path().join("router.pem"), cert).expect("write");
    std::fs::write(dir.path().join("router.key"), key).expect("write");
    let config = dir.path().join("router.toml");
    std::fs::write(
        &config,
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"tls\"]\n\
         [tls]\ncertificate = \"router.pem\"\nkey = \"router.key\"\n[probes]\nenabled = false\n",
    )
    .expect("write");
    let (mut child, mut lines) = serve(&config, &[]);
    let tls = lines.by_ref().map_while(Result::ok).find(|l| l.contains("listening") && l.contains("Tls"));
    assert!(tls.is_some(), "the router never said it was listening on TLS");
    // Renewed files: the key first, then the certificate (as a renewal tool
    // writes them); the router reloads once they match.
    let (cert, key) = self_signed("router.test");
    std::fs::write(dir.path().join("router.key"), key).expect("write");
    std::fs::write(dir.path().join("router.pem"), cert).expect("write");
    let reloaded = lines.by_ref().map_while(Result::ok).find(|l| l.contains("configuration and directory reloaded"));
    assert!(reloaded.is_some(), "a change of the TLS files did not reload them");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let _: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().expect("ends").success());
}

/// Decision records of the example deployment's standard policy (bob on
/// premises, alice hosted), written by the real engine into `dir`.
fn standard_records(dir: &Path) -> PathBuf {
    use exum_router::control::{Tenant, Tenants};
    use exum_router::policy::record::RecordSettings;
    use exum_router::policy::{PolicyRegistry, view};
    let (mut config, tenants) =
        Tenants::load(&workspace().join("examples/deployment/router.toml")).expect("the example deployment loads");
    config.policy_dir = None;
    config.records = Some(RecordSettings { dir: dir.to_path_buf(), max_bytes_per_tenant: 1 << 20 });
    let changes: Vec<(String, Option<Tenant>)> = tenants
        .iter()
        .map(|t| {
            let mut c = t.config.clone();
            c.record_decisions = 1.0;
            (c.id.clone(), Some(Tenant { config: c, directory: t.directory.clone() }))
        })
        .collect();
    let tenants = tenants.with_changes(changes);
    let health = std::sync::Arc::new(exum_router::control::health::HealthTable::default());
    let metrics = std::sync::Arc::new(exum_router::metrics::Metrics::new());
    let registry = PolicyRegistry::for_deployment(&config, &tenants, health, metrics).expect("the plane starts");
    let tenant = tenants.by_id("contoso").expect("contoso").clone();
    for (i, user) in ["bob", "alice"].iter().enumerate() {
        let sip = format!(
            "INVITE sip:{user}@contoso.com;opaque=app:voicemail SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:carol@fabrikam.com>;tag=a\r\nTo: <sip:{user}@contoso.com>\r\n\
             Call-ID: {i}@192.0.2.10\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let msg = exum_router::model::wire::Message::parse(sip.into_bytes(), false, usize::MAX).expect("parses");
        let source = exum_router::model::Source {
            addr: ([192, 0, 2, 10], 5060).into(),
            transport: exum_router::model::Transport::Udp,
            tls_peer_name: None,
            local: None,
        };
        let req = view::request_view(&msg, &source).expect("view");
        registry.get(&tenant).route(&tenant, &req);
    }
    registry.recorder().expect("a recorder").flush();
    dir.join("contoso/decisions.jsonl")
}

fn write_records(path: &Path, records: &[exum_router::policy::record::DecisionRecord]) {
    let lines: Vec<String> = records.iter().map(|r| serde_json::to_string(r).expect("a record serializes")).collect();
    std::fs::write(path, lines.join("\n") + "\n").expect("write");
}

#[test]
fn replay_exits_0_when_the_same_2_when_a_decision_differs_and_1_when_it_cannot_replay() {
    use exum_router::policy::record;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = standard_records(dir.path());
    let path = file.to_str().expect("utf8");
    let out = run(&["replay", path], None);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("2 replayed: 2 same"), "{}", text(&out.stdout));
    // The same twice: deterministic.
    assert_eq!(run(&["replay", path], None).stdout, out.stdout);

    let records = record::read(&file).expect("records");
    // A recorded output that is not what the policy decides: 2, with the difference.
    let mut changed = records.clone();
    changed[0].output = changed[1].output.clone();
    let differs = dir.path().join("contoso/differs.jsonl");
    write_records(&differs, &changed);
    let out = run(&["replay", differs.to_str().expect("utf8")], None);
    assert_eq!(out.status.code(), Some(2), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("differs from the recorded output"), "{}", text(&out.stdout));
    // A record without the answers the policy asks for: 1, naming the import.
    let mut bare = records;
    bare[0].imports.clear();
    let bare_path = dir.path().join("contoso/bare.jsonl");
    write_records(&bare_path, &bare);
    let out = run(&["replay", bare_path.to_str().expect("utf8")], None);
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("which the record does not hold"), "{}", text(&out.stdout));
    // Not a record at all.
    let out = run(&["replay", "Cargo.toml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Cargo.toml"), "{}", text(&out.stderr));
}

#[test]
fn keygen_and_sign_make_a_component_check_names_the_signer_of() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("tenant.key");
    let out = run(&["keygen", "--out", key.to_str().expect("utf8")], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let public = stdout
        .lines()
        .find_map(|l| l.strip_prefix("public key (for [tenant.signing] trusted_keys): "))
        .expect("the public key is printed")
        .to_owned();
    // An existing key is never overwritten.
    let out = run(&["keygen", "--out", key.to_str().expect("utf8")], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));

    let unsigned = dir.path().join("standard.wasm");
    std::fs::write(&unsigned, exum_router::policy::STANDARD_COMPONENT).expect("write");
    let signed = dir.path().join("signed.wasm");
    let (k, u, s) = (key.to_str().expect("utf8"), unsigned.to_str().expect("utf8"), signed.to_str().expect("utf8"));
    let out = run(&["sign", "--key", k, u, "--output", s], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&public), "{}", text(&out.stdout));
    let out = run(&["check", s], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("signed by  {public}")), "{}", text(&out.stdout));
    let out = run(&["check", u], None);
    assert!(text(&out.stdout).contains("signed by  nobody"), "{}", text(&out.stdout));
    // A key that is not a key: refused, the component untouched.
    let out = run(&["sign", "--key", u, s], None);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["check", s], None);
    assert!(text(&out.stdout).contains(&format!("signed by  {public}")), "{}", text(&out.stdout));
}

#[test]
fn serve_runs_on_one_runtime_thread_when_configured_and_refuses_zero() {
    let (dir, config) = one_tenant();
    let text_of = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, format!("{text_of}[sip]\nworker_threads = 1\n")).expect("write");
    let (mut child, mut lines) = serve(&config, &[]);
    let before: Vec<String> = lines.by_ref().map_while(Result::ok).take_while(|l| !l.contains("listening")).collect();
    assert!(before.iter().any(|l| l.contains("tenant loaded")), "one thread: never listening: {before:?}");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().expect("ends").success(), "{rest:?}");

    std::fs::write(&config, format!("{text_of}[sip]\nworker_threads = 0\n")).expect("write");
    let out = run(&["serve", "--config", config.to_str().expect("utf8")], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("router.toml: sip.worker_threads: 0: must be 1 to 256"), "{err}");
    drop(dir);
}

/// The value of `key=` in a text log line (up to the next space).
fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    line[at..].split_whitespace().next()
}

/// The admin API's address in the log of a starting router, read up to its
/// UDP listener.
fn admin_address(lines: &mut impl Iterator<Item = String>) -> String {
    let mut admin = None;
    for line in lines.by_ref() {
        if line.contains("admin API listening") {
            admin = log_field(&line, "address").map(str::to_owned);
        }
        if line.contains("listening") && line.contains("Udp") {
            break;
        }
    }
    admin.expect("the admin API's address in the log")
}

/// An HTTP GET of `path` from the admin API at `addr`: the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the admin API");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

/// The example deployment copied under `root` as `examples/deployment/`, its
/// SIP and admin ports ephemeral (the rest as shipped).
fn example_deployment_in(root: &Path) -> PathBuf {
    let from = workspace().join("examples/deployment");
    let to = root.join("examples/deployment");
    std::fs::create_dir_all(to.join("policies")).expect("mkdir");
    for name in ["router.toml", "directory.toml"] {
        let text = std::fs::read_to_string(from.join(name)).expect("read the example");
        let text = text.replace("127.0.0.1:5060", "127.0.0.1:0").replace("127.0.0.1:9060", "127.0.0.1:0");
        std::fs::write(to.join(name), text).expect("write");
    }
    to
}

/// Starts the binary with `args` in `cwd` (info log on standard error), and
/// checks what a newcomer relies on after the start: a policy component
/// renamed into `policy_dir` is loaded for its tenant, and an edit of the
/// directory file is applied.
fn hot_swaps_with(cwd: &Path, deployment: &Path, args: &[&str]) {
    let (child, lines) = start_in(cwd, args);
    let mut lines = lines.map_while(Result::ok);
    let admin = admin_address(&mut lines);
    let before: serde_json::Value = serde_json::from_str(&http_get(&admin, "/tenants/contoso")).expect("JSON");
    assert!(before["policy"].is_null(), "no policy file yet: {before}");

    // A policy deployed as tools do it: written aside, renamed into place.
    let staged = deployment.join("policies/.contoso.wasm.tmp");
    std::fs::write(&staged, exum_router::policy::STANDARD_COMPONENT).expect("write");
    std::fs::rename(&staged, deployment.join("policies/contoso.wasm")).expect("rename");
    // The tenant's state is read by polling: the API is what shows it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let after: serde_json::Value = serde_json::from_str(&http_get(&admin, "/tenants/contoso")).expect("JSON");
        if !after["policy"].is_null() && after["state"] == "active" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the renamed component was never loaded ({args:?}): {after}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // An edit of the directory file after the start is applied.
    let directory = deployment.join("directory.toml");
    let mut text = std::fs::read_to_string(&directory).expect("read");
    text.push_str("\n# edited after the start\n");
    std::fs::write(&directory, text).expect("write");
    let reloaded = lines.by_ref().find(|l| l.contains("configuration and directory reloaded"));
    assert!(reloaded.is_some(), "the directory edit was never applied ({args:?})");
    stop(child, lines);
}

#[test]
fn the_no_argument_start_hot_swaps_a_policy_and_applies_directory_edits() {
    let root = tempfile::tempdir().expect("tempdir");
    let deployment = example_deployment_in(root.path());
    hot_swaps_with(root.path(), &deployment, &[]);
}

#[test]
fn a_relative_config_path_hot_swaps_a_policy_and_applies_directory_edits() {
    let root = tempfile::tempdir().expect("tempdir");
    let deployment = example_deployment_in(root.path());
    hot_swaps_with(root.path(), &deployment, &["serve", "--config", "examples/deployment/router.toml"]);
    // From the deployment's own folder, `./router.toml`.
    std::fs::remove_file(deployment.join("policies/contoso.wasm")).expect("remove");
    hot_swaps_with(&deployment, &deployment, &["serve", "--config", "./router.toml"]);
}

/// A UM server on a thread of its own answering every INVITE with 488;
/// the text of each INVITE goes to `seen` when given. Its address.
fn um_488(seen: Option<std::sync::mpsc::Sender<String>>) -> std::net::SocketAddr {
    let um = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let um_addr = um.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 65_535];
        while let Ok((n, from)) = um.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("INVITE ") {
                continue;
            }
            let mut answer = String::from("SIP/2.0 488 Not Acceptable Here\r\n");
            for line in text.lines() {
                let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
                if ["via", "from", "call-id", "cseq"].contains(&name.as_str()) {
                    answer.push_str(line);
                    answer.push_str("\r\n");
                } else if name == "to" {
                    answer.push_str(&format!("{line};tag=um\r\n"));
                }
            }
            answer.push_str("Content-Length: 0\r\n\r\n");
            let _ = um.send_to(answer.as_bytes(), from);
            if let Some(seen) = &seen {
                let _ = seen.send(text);
            }
        }
    });
    um_addr
}

/// A deployment of tenant `t` whose user bob's one UM server answers every
/// INVITE 488 (and ignores the rest, OPTIONS probes included); `probes` is the
/// `[probes]` section's body.
fn um_answering_488(probes: &str) -> (tempfile::TempDir, PathBuf, std::net::SocketAddr) {
    let um_addr = um_488(None);
    let (dir, config) = bob_at(um_addr, &format!("[probes]\n{probes}\n"));
    (dir, config, um_addr)
}

/// A deployment of tenant `t` whose user bob's one UM server is `um_addr`,
/// with `sections` (TOML) in its configuration: its folder and configuration.
fn bob_at(um_addr: std::net::SocketAddr, sections: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("directory.toml"),
        format!(
            "[[tenants.t.users]]\nsip = \"sip:bob@t.test\"\neum = \"eum:bob@t.test;phone-context=DP\"\n\
             [[tenants.t.dial_plans]]\nname = \"DP\"\nphone_context = \"DP\"\nservers = [{{ uri = \"sip:{um_addr}\" }}]\n"
        ),
    )
    .expect("write");
    let config = dir.path().join("router.toml");
    std::fs::write(
        &config,
        format!(
            "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
             {sections}[[tenant]]\nid = \"t\"\ndomains = [\"t.test\"]\n"
        ),
    )
    .expect("write");
    (dir, config)
}

/// The address of the router's UDP listener, from its start-up log.
fn udp_listener_in(lines: &mut impl Iterator<Item = String>) -> String {
    lines
        .find(|l| l.contains("listening") && l.contains("Udp"))
        .and_then(|l| log_field(&l, "addr").map(str::to_owned))
        .expect("the UDP listener in the log")
}

/// Stops the router with SIGTERM: it must exit 0.
fn stop(mut child: std::process::Child, lines: impl Iterator<Item = String>) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let _: Vec<String> = lines.collect();
    assert!(child.wait().expect("ends").success());
}

/// Sends a voice-mail INVITE for bob to the router at `router` from a socket of its own.
fn call_bob(router: &str, call_id: &str) -> std::net::UdpSocket {
    let caller = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let me = caller.local_addr().expect("addr");
    let invite = format!(
        "INVITE sip:bob@t.test;opaque=app:voicemail SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@caller.test>;tag=1\r\nTo: <sip:bob@t.test>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(invite.as_bytes(), router).expect("send");
    caller
}

#[test]
fn a_call_every_um_server_failed_is_logged_once_with_its_targets_and_one_branch_per_span() {
    let (_dir, config, um_addr) = um_answering_488("enabled = false");
    let (child, lines) = serve(&config, &[]);
    let mut lines = lines.map_while(Result::ok);
    let router = udp_listener_in(&mut lines);
    let _caller = call_bob(&router, "logged");
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let done = line.contains("call routed");
        seen.push(line);
        if done {
            break;
        }
    }
    let routed =
        seen.last().filter(|l| l.contains("call routed")).unwrap_or_else(|| panic!("no call routed line: {seen:?}"));
    assert!(routed.contains(" INFO "), "{routed}");
    assert!(routed.contains(&format!("sip:{um_addr} 488 Not Acceptable Here")), "{routed}");
    assert!(routed.contains("code=480"), "{routed}");
    let failed = seen.iter().find(|l| l.contains("target failed")).expect("the failed target logged");
    assert!(!failed.contains("trying the next"), "the only target has no next: {failed}");
    for line in &seen {
        if let Some(span) = line.split("}:").next().filter(|s| s.contains("request{")) {
            assert_eq!(span.matches("branch=").count(), 1, "one branch in the request span: {line}");
        }
    }
    stop(child, lines);
}

#[test]
fn the_immediate_480_when_every_um_server_is_down_is_logged_at_info() {
    // The UM server never answers OPTIONS: one probe marks it down.
    let (_dir, config, um_addr) = um_answering_488("interval_ms = 100\ntimeout_ms = 50\ndown_after = 1");
    let (child, lines) = serve(&config, &[]);
    let mut lines = lines.map_while(Result::ok);
    let router = udp_listener_in(&mut lines);
    let down = lines.by_ref().find(|l| l.contains("target marked down"));
    assert!(down.is_some_and(|l| l.contains(&um_addr.to_string())), "the UM server was never marked down");
    let _caller = call_bob(&router, "all-down");
    let routed = lines.by_ref().find(|l| l.contains("call routed"));
    let routed = routed.expect("the call's outcome logged");
    assert!(routed.contains(" INFO ") && routed.contains("code=480"), "{routed}");
    assert!(routed.contains("call_id=\"all-down\""), "the call named: {routed}");
    stop(child, lines);
}

#[test]
fn serve_refuses_a_tenant_id_that_is_not_a_token_and_a_directory_over_its_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("router.toml");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    std::fs::write(
        &config,
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n[[tenant]]\nid = \"..\"\ndomains = [\"a.test\"]\n",
    )
    .expect("write");
    let out = run(&["serve", "--config", config.to_str().expect("utf8")], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("router.toml: tenant[0].id: `..` is not a tenant id"), "{}", text(&out.stderr));
    // A directory file of 2 MiB against a limit of 1.
    std::fs::write(
        &config,
        "directory = \"directory.toml\"\ndirectory_max_mib = 1\n[[listen]]\naddress = \"127.0.0.1:0\"\n\
         [[tenant]]\nid = \"t\"\ndomains = [\"t.test\"]\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("directory.toml"), format!("# {}\n", "x".repeat(2 << 20))).expect("write");
    let out = run(&["serve", "--config", config.to_str().expect("utf8")], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("directory.toml: 2097155 bytes: larger than directory_max_mib = 1 MiB"), "{err}");
}

/// The router (as its binary) with one tenant `t`, its admin API on an
/// ephemeral loopback port with a token, and `compile` as its `[compile]`
/// section: the child, its log, the admin API's address and the folder.
fn with_compile_settings(compile: &str) -> (Router, impl Iterator<Item = String>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    let config = dir.path().join("router.toml");
    std::fs::write(
        &config,
        format!(
            "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n[probes]\nenabled = false\n\
             [admin]\naddress = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n[compile]\n{compile}\n\
             [[tenant]]\nid = \"t\"\ndomains = [\"t.test\"]\n"
        ),
    )
    .expect("write");
    let (child, lines) = serve(&config, &[]);
    let mut lines = lines.map_while(Result::ok);
    let admin = admin_address(&mut lines);
    (Router(Some(child)), lines, admin, dir)
}

/// A router process, killed if the test ends without stopping it (a failed
/// assertion), so no router outlives its test.
struct Router(Option<std::process::Child>);

impl Router {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, std::process::Child::id)
    }

    /// Stops it with SIGTERM: it must exit 0.
    fn stop(mut self, lines: impl Iterator<Item = String>) {
        if let Some(child) = self.0.take() {
            stop(child, lines);
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const ADMIN_TOKEN: &str = "cli-test-admin-token";

/// The head of a POST of `body` to `path` with the admin token.
fn post_head(addr: &str, path: &str, body: &[u8]) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/wasm\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
}

/// A POST of `body` to `path`: the status and the body of the answer.
fn http_post(addr: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the admin API");
    s.write_all(post_head(addr, path, body).as_bytes()).and_then(|()| s.write_all(body)).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// A value of the process `pid`'s /proc status, in kB.
fn proc_status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the router's status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a value in kB")
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).ok().is_some_and(|stat| {
                // After the command name in parentheses: state, then the parent.
                stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok()) == Some(pid)
            })
        })
        .collect()
}

#[test]
fn a_compile_past_its_memory_cap_is_refused_in_a_child_and_the_router_never_holds_that_memory() {
    let (child, lines, admin, _dir) = with_compile_settings("memory_mib = 256");
    // Within every check made before compiling, but its compile takes about
    // 270 times its size in memory.
    let bomb = exum_router::policy::engine::component_with_nested_blocks(1 << 20);
    exum_router::policy::engine::precheck(&bomb).expect("passes the checks before compiling");
    let (status, body) = http_post(&admin, "/tenants/t/policy/candidate?mode=shadow", &bomb);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("memory_mib (256 MiB)"), "{body}");
    let peak_mib = proc_status_kb(child.id(), "VmHWM:") / 1024;
    assert!(peak_mib < 256, "the router itself peaked at {peak_mib} MiB");
    // A real policy (the standard one with a custom section: not compiled
    // yet) compiles in a child under the same cap and serves.
    let mut policy = exum_router::policy::STANDARD_COMPONENT.to_vec();
    policy.extend_from_slice(&[0, 8, 7, b'v', b'a', b'r', b'i', b'a', b'n', b't']);
    let (status, body) = http_post(&admin, "/tenants/t/policy/candidate?mode=canary&share=1", &policy);
    assert_eq!(status, 201, "{body}");
    let metrics = http_get(&admin, "/metrics");
    assert!(
        metrics.contains("exum_policy_compilations_total 3"),
        "the standard policy at the start, the bomb, the variant: {metrics}"
    );
    child.stop(lines);
}

#[test]
fn a_compile_nobody_waits_for_any_more_is_abandoned_and_its_process_killed() {
    let (child, lines, admin, _dir) = with_compile_settings("memory_mib = 16384\ncpu_s = 3600");
    // Seconds of compiling in a release build, minutes in a debug one.
    let bomb = exum_router::policy::engine::component_with_nested_blocks(7 << 20);
    {
        let mut s = std::net::TcpStream::connect(&admin).expect("connect to the admin API");
        let head = post_head(&admin, "/tenants/t/policy/candidate?mode=shadow", &bomb);
        s.write_all(head.as_bytes()).and_then(|()| s.write_all(&bomb)).expect("write");
        // The compile starts in a child of the router.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while children_of(child.id()).is_empty() {
            assert!(std::time::Instant::now() < deadline, "no compile started");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // The client gives up: its connection closes.
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if http_get(&admin, "/metrics").contains("exum_policy_compiles_abandoned_total 1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the compile was never abandoned");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(children_of(child.id()), Vec::<u32>::new(), "the compiler process was killed and reaped");
    let tenant = http_get(&admin, "/tenants/t");
    assert!(tenant.contains("\"candidate\":null"), "{tenant}");
    child.stop(lines);
}

#[test]
fn completions_and_manual_pages_come_from_the_command_line() {
    for (shell, marker) in
        [("bash", "complete -F _exum__router"), ("zsh", "#compdef exum-router"), ("fish", "complete -c exum-router")]
    {
        let out = run(&["completions", shell], None);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell} script: {}", &script[..script.len().min(300)]);
        assert!(script.contains("simulate") && script.contains("ldap-check"), "{shell}: the commands are completed");
    }
    let refused = run(&["completions", "tcsh"], None);
    assert!(!refused.status.success() && text(&refused.stderr).contains("tcsh"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["man", dir.path().to_str().expect("utf-8")], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for page in [
        "exum-router.1",
        "exum-router-serve.1",
        "exum-router-simulate.1",
        "exum-router-db.1",
        "exum-router-completions.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "{page} in {pages:?}");
    }
    assert!(
        !pages.iter().any(|p| p.contains("compile-worker") || p.contains("-man.")),
        "hidden commands have no page: {pages:?}"
    );
    let serve = std::fs::read_to_string(dir.path().join("exum-router-serve.1")).expect("page");
    assert!(serve.contains(".TH EXUM-ROUTER-SERVE 1") && serve.contains("\\-\\-config"), "{serve}");
}

/// An OTLP/HTTP receiver decoding with the official protobuf definitions
/// (`opentelemetry-proto`): every export request posted to it, in order.
fn otlp_receiver() -> (
    std::net::SocketAddr,
    std::sync::mpsc::Receiver<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
) {
    use std::io::{BufRead as _, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
                let mut writer = stream;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    let mut first = true;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if first {
                            assert!(line.starts_with("POST /v1/traces "), "an OTLP traces export: {line}");
                            first = false;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().expect("a length");
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; length];
                    reader.read_exact(&mut body).expect("the body");
                    let request = <opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest as prost::Message>::decode(&body[..])
                        .expect("an ExportTraceServiceRequest");
                    let _ = tx.send(request);
                    let _ = writer.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    (addr, rx)
}

/// Kills the process with this id when a test panics before stopping it.
struct KilledOnPanic(u32);

impl Drop for KilledOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("kill").args(["-9", &self.0.to_string()]).status();
        }
    }
}

/// A span's attribute as text (strings as they are, integers in decimal).
fn attribute(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()).and_then(|v| match &v.value {
        Some(Value::StringValue(s)) => Some(s.clone()),
        Some(Value::IntValue(i)) => Some(i.to_string()),
        Some(Value::BoolValue(b)) => Some(b.to_string()),
        _ => None,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn serve_exports_each_calls_span_tree_over_otlp_and_passes_trace_context_in_sip() {
    let (otlp, exports) = otlp_receiver();
    // The UM server: records the INVITEs it gets, answers 488.
    let (invites_tx, invites) = std::sync::mpsc::channel::<String>();
    let um_addr = um_488(Some(invites_tx));
    // Nothing sampled but what the caller's trace context says is.
    let (_dir, config) = bob_at(
        um_addr,
        &format!(
            "[probes]\nenabled = false\n\
             [otel]\nendpoint = \"http://{otlp}/v1/traces\"\nsample = 0.0\nsip_header = \"traceparent\"\n\
             instance = \"router-under-test\"\nexport_interval_ms = 50\n"
        ),
    );
    let (child, lines) = serve(&config, &[]);
    let _killed = KilledOnPanic(child.id());
    let mut lines = lines.map_while(Result::ok);
    let router = udp_listener_in(&mut lines);
    let final_of = |caller: &std::net::UdpSocket| {
        caller.set_read_timeout(Some(std::time::Duration::from_secs(20))).expect("timeout");
        let mut buf = [0u8; 65_535];
        loop {
            let n = caller.recv(&mut buf).expect("a response within 20 s");
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("SIP/2.0 1") {
                return text;
            }
        }
    };
    // A call without trace context: not sampled (sample = 0).
    let unsampled = call_bob(&router, "otel-unsampled");
    let answer = final_of(&unsampled);
    assert!(answer.starts_with("SIP/2.0 4"), "{answer}");
    invites.recv_timeout(std::time::Duration::from_secs(20)).expect("the first INVITE");
    // A call whose caller's trace is sampled.
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let caller = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let me = caller.local_addr().expect("addr");
    let invite = format!(
        "INVITE sip:bob@t.test;opaque=app:voicemail SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-traced;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@caller.test>;tag=1\r\nTo: <sip:bob@t.test>\r\nCall-ID: otel-traced\r\n\
         CSeq: 1 INVITE\r\ntraceparent: 00-{trace}-{parent}-01\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(invite.as_bytes(), &router).expect("send");
    let answer = final_of(&caller);
    assert!(answer.starts_with("SIP/2.0 4"), "{answer}");
    // The ACK ends the transaction (and its request span).
    let to = answer.lines().find(|l| l.starts_with("To:")).expect("To");
    let ack = format!(
        "ACK sip:bob@t.test;opaque=app:voicemail SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-traced;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@caller.test>;tag=1\r\n{to}\r\nCall-ID: otel-traced\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(ack.as_bytes(), &router).expect("send");
    let forwarded = invites.recv_timeout(std::time::Duration::from_secs(20)).expect("the traced INVITE");

    // Spans until the traced call's three have come.
    let mut spans = Vec::new();
    let mut resources = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !spans.iter().any(|s: &opentelemetry_proto::tonic::trace::v1::Span| s.name == "request") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let export = exports
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the traced call's spans within 30 s; got {spans:#?}"));
        for rs in export.resource_spans {
            resources.push(rs.resource.clone().unwrap_or_default());
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
    }
    assert!(spans.iter().all(|s| hex(&s.trace_id) == trace), "only the sampled call's spans: {spans:#?}");
    let named =
        |name: &str| spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("a {name} span: {spans:#?}"));
    let (request, policy, client) = (named("request"), named("policy"), named("client"));
    assert_eq!(hex(&request.parent_span_id), parent, "the request span joins the caller's trace");
    assert_eq!(attribute(request, "call_id").as_deref(), Some("otel-traced"));
    assert_eq!(attribute(request, "method").as_deref(), Some("INVITE"));
    assert_eq!(attribute(request, "tenant").as_deref(), Some("t"));
    assert_eq!(hex(&policy.parent_span_id), hex(&request.span_id), "policy under request");
    assert_eq!(attribute(policy, "policy").as_deref(), Some("standard"));
    assert_eq!(attribute(policy, "version").as_deref(), Some("0"));
    assert_eq!(hex(&client.parent_span_id), hex(&request.span_id), "client under request");
    assert_eq!(attribute(client, "target").as_deref(), Some(format!("sip:{um_addr}").as_str()));
    let resource = resources.first().expect("a resource");
    let text = |key: &str| {
        resource.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()).and_then(|v| match &v.value {
            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
    };
    assert_eq!(text("service.name").as_deref(), Some("exum-router"));
    assert_eq!(text("service.instance.id").as_deref(), Some("router-under-test"));
    // The UM server got the router's client span as its parent.
    let sent = forwarded.lines().find_map(|l| l.strip_prefix("traceparent: ")).expect("a traceparent forwarded");
    assert_eq!(sent.trim(), format!("00-{trace}-{}-01", hex(&client.span_id)));
    stop(child, lines);
}
