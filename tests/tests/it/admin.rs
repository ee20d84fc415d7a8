//! The admin API and the Prometheus metrics, over HTTP on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use exum_router::model::Transport;
use exum_router::server::Server;
use exum_router_tests::peer::{UdpPeer, udp_request};
use exum_router_tests::{ADMIN_TOKEN, components};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request; the status code and body.
pub(crate) async fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}X-Uploaded-By: ops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out)).await.expect("answer").expect("read");
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

pub(crate) fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).expect("JSON")
}

/// The value of a sample in a Prometheus exposition, parsed by a real parser.
pub(crate) fn sample(exposition: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let scrape =
        prometheus_parse::Scrape::parse(exposition.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map_or(0.0, |s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
}

async fn start(extra_admin: &str, policy: Option<&str>) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    if let Some(p) = policy {
        std::fs::copy(p, dir.path().join("policies/contoso.wasm")).expect("copy");
    }
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    std::fs::write(
        dir.path().join("router.toml"),
        format!(
            "directory = \"directory.toml\"\npolicy_dir = \"policies\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
             [probes]\nenabled = false\n[admin]\naddress = \"127.0.0.1:0\"\n{extra_admin}\n\
             [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\npolicy_config = \"panic\"\nfallback = 503\nlimits = {{ quarantine_after = 2 }}\n"
        ),
    )
    .expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("starts");
    (dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_shows_tenants_errors_and_quarantine_and_the_metrics_move() {
    let (dir, server) = start(&format!("token = \"{ADMIN_TOKEN}\""), Some(components::HOSTILE)).await;
    let admin = server.admin_addr().expect("admin listens");
    assert_eq!(http(admin, "GET", "/health", None).await.0, 200);
    assert_eq!(http(admin, "GET", "/ready", None).await.0, 200);
    // What `exum-router --version` prints.
    let (status, body) = http(admin, "GET", "/version", None).await;
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(
        (v["version"].as_str(), v["contract"].as_str()),
        (Some(env!("CARGO_PKG_VERSION")), Some("exum:policy@0.1.0"))
    );
    assert_eq!(v["commit"].as_str(), Some(exum_router::release::COMMIT));
    let (status, body) = http(admin, "GET", "/tenants", None).await;
    assert_eq!(status, 200);
    let t = &json(&body)["tenants"][0];
    assert_eq!(t["id"], "contoso");
    assert_eq!(t["state"], "active");
    assert_eq!(t["policy"]["name"], "contoso.wasm");
    assert_eq!(t["policy"]["hash"].as_str().map(str::len), Some(64));

    // Three calls: the policy panics twice (503 fallback), then is quarantined.
    let caller = UdpPeer::bind().await;
    let router = server.local_addr(Transport::Udp).expect("udp");
    for i in 0..3 {
        let id = format!("q{i}");
        caller.send(router, &udp_request("INVITE", "sip:bob@contoso.com;opaque=app:voicemail", caller.addr, &id)).await;
        assert_eq!(caller.final_response().await.status(), Some(503));
    }
    let (_, body) = http(admin, "GET", "/tenants/contoso", None).await;
    let t = json(&body);
    assert_eq!(t["state"], "quarantined");
    assert_eq!(t["stats"]["faults"]["panic"], 2);
    assert_eq!(t["stats"]["fallbacks"], 3);

    let (status, metrics) = http(admin, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    assert_eq!(sample(&metrics, "exum_policy_faults_total", &[("tenant", "contoso"), ("kind", "panic")]), 2.0);
    assert_eq!(sample(&metrics, "exum_policy_quarantines_total", &[("tenant", "contoso")]), 1.0);
    assert_eq!(sample(&metrics, "exum_policy_fallbacks_total", &[("tenant", "contoso")]), 3.0);
    assert_eq!(sample(&metrics, "exum_sip_requests_total", &[("tenant", "contoso"), ("method", "INVITE")]), 3.0);
    assert_eq!(sample(&metrics, "exum_policy_decisions_total", &[("tenant", "contoso"), ("kind", "reject")]), 3.0);
    assert_eq!(sample(&metrics, "exum_policy_call_seconds_count", &[("tenant", "contoso")]), 3.0);

    // A broken replacement: the API shows the error, the version stays.
    let mut changes = server.policy.subscribe();
    changes.borrow_and_update();
    std::fs::write(dir.path().join("policies/contoso.wasm"), b"garbage").expect("write");
    tokio::time::timeout(Duration::from_secs(10), changes.changed()).await.expect("reacts").expect("open");
    let (_, body) = http(admin, "GET", "/tenants/contoso", None).await;
    let t = json(&body);
    assert!(t["last_error"].as_str().is_some_and(|e| e.contains("not WebAssembly")), "{t}");
    let (_, metrics) = http(admin, "GET", "/metrics", None).await;
    assert_eq!(sample(&metrics, "exum_policy_reloads_total", &[("tenant", "contoso"), ("kind", "failed")]), 1.0);
    // A reload through the API reports the same error, and the config reload works.
    let (status, body) = http(admin, "POST", "/tenants/contoso/reload", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(http(admin, "POST", "/reload", Some(ADMIN_TOKEN)).await.0, 200);
    assert_eq!(http(admin, "GET", "/tenants/nobody", None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required_for_changes() {
    let (_dir, server) = start("token = \"s3cret\"", None).await;
    let admin = server.admin_addr().expect("admin listens");
    // Reads on loopback are free (the status page in a browser).
    let (status, body) = http(admin, "GET", "/tenants", None).await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["tenants"][0]["state"], "standard");
    assert_eq!(http(admin, "POST", "/reload", None).await.0, 401);
    assert_eq!(http(admin, "POST", "/reload", Some("wrong")).await.0, 401);
    assert_eq!(http(admin, "POST", "/reload", Some("s3cret")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_api_only_reads_and_a_token_file_is_created_at_the_first_start() {
    let (_dir, server) = start("", None).await;
    let admin = server.admin_addr().expect("admin listens");
    assert_eq!(http(admin, "GET", "/tenants", None).await.0, 200);
    let (status, body) = http(admin, "POST", "/reload", None).await;
    assert_eq!(status, 403);
    assert!(body.contains("changes need an admin token"), "{body}");
    server.stop();
    let (dir, server) = start("token_file = \"admin.token\"", None).await;
    let admin = server.admin_addr().expect("admin listens");
    let file = dir.path().join("admin.token");
    let token = std::fs::read_to_string(&file).expect("created").trim().to_owned();
    assert_eq!(token.len(), 64, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777, 0o600, "its owner's only");
    assert_eq!(http(admin, "POST", "/reload", None).await.0, 401);
    assert_eq!(http(admin, "POST", "/reload", Some(&token)).await.0, 200);
    server.stop();
    // A restart keeps the token.
    let server = Server::start(&dir.path().join("router.toml")).await.expect("restarts");
    let admin = server.admin_addr().expect("admin listens");
    assert_eq!(http(admin, "POST", "/reload", Some(&token)).await.0, 200);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_admin_connections_are_capped_and_closed() {
    let (_dir, server) = start("", None).await;
    let admin = server.admin_addr().expect("admin");
    let mut idle = Vec::new();
    for _ in 0..exum_router::admin::MAX_CONNECTIONS {
        idle.push(tokio::net::TcpStream::connect(admin).await.expect("connect"));
    }
    // One more is closed as soon as it is accepted.
    let mut extra = tokio::net::TcpStream::connect(admin).await.expect("connect");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf)).await.expect("closed at once");
    assert!(matches!(read, Ok(0) | Err(_)));
    // The idle ones are closed for sending no request (the header timeout)...
    for mut c in idle {
        let wait = exum_router::admin::HEADER_TIMEOUT * 3;
        let read = tokio::time::timeout(wait, c.read(&mut buf)).await.expect("closed for idling");
        assert!(matches!(read, Ok(0) | Err(_)));
    }
    // ...and the API answers again.
    let (status, _) = http(admin, "GET", "/health", None).await;
    assert_eq!(status, 200);
    let (_, metrics) = http(admin, "GET", "/metrics", None).await;
    assert_eq!(sample(&metrics, "exum_sip_connections_refused_total", &[("reason", "admin")]), 1.0);
}

/// One HTTP/1.1 request written as given after its request line (headers
/// included); the status code.
async fn raw(addr: SocketAddr, request_line: &str, headers: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("{request_line}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out)).await.expect("answer").expect("read");
    out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_site_cannot_drive_the_api() {
    let (_dir, server) = start(&format!("names = [\"router1.ops.test\"]\ntoken = \"{ADMIN_TOKEN}\""), None).await;
    let admin = server.admin_addr().expect("admin listens");
    let host = format!("Host: {admin}\r\n");
    // What a browser sends for a page elsewhere: a simple POST (a form, or
    // fetch with mode no-cors), its Origin that page's.
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    assert_eq!(raw(admin, "POST /reload HTTP/1.1", &format!("{host}Origin: http://evil.example\r\n{form}")).await, 403);
    assert_eq!(raw(admin, "POST /reload HTTP/1.1", &format!("{host}Origin: null\r\n{form}")).await, 403);
    // No Origin, but nothing a browser could not send cross-site unasked.
    assert_eq!(raw(admin, "POST /reload HTTP/1.1", &format!("{host}{form}")).await, 403);
    assert_eq!(raw(admin, "POST /reload HTTP/1.1", &format!("{host}Content-Type: text/plain\r\n")).await, 403);
    assert_eq!(raw(admin, "DELETE /bans/127.0.0.9 HTTP/1.1", &host).await, 403);
    // DNS rebinding: a name that is not the API's.
    assert_eq!(raw(admin, "GET /tenants HTTP/1.1", "Host: attacker.example\r\n").await, 421);
    assert_eq!(raw(admin, "GET /tenants HTTP/1.1", &format!("Host: attacker.example:{}\r\n", admin.port())).await, 421);
    assert_eq!(raw(admin, "GET /tenants HTTP/1.1", "").await, 421, "no Host at all");
    // The API's own: its address, localhost, its configured names; the
    // status page from its own origin; a change that names who makes it.
    assert_eq!(raw(admin, "GET /tenants HTTP/1.1", &host).await, 200);
    assert_eq!(raw(admin, "GET /tenants HTTP/1.1", &format!("Host: localhost:{}\r\n", admin.port())).await, 200);
    assert_eq!(raw(admin, "GET /tenants HTTP/1.1", "Host: Router1.ops.test\r\n").await, 200);
    assert_eq!(raw(admin, "GET /status HTTP/1.1", &format!("{host}Origin: http://{admin}\r\n")).await, 200);
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    assert_eq!(raw(admin, "POST /reload HTTP/1.1", &format!("{host}{auth}X-Uploaded-By: ops\r\n")).await, 200);
    assert_eq!(
        raw(admin, "POST /reload HTTP/1.1", &format!("{host}{auth}Content-Type: application/json\r\n")).await,
        200
    );
    server.stop();
}
