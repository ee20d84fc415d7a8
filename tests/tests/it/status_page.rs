//! The operators' status page, loaded in a real browser (Debian's chromium,
//! headless) against a running router; and the Grafana dashboard shipped in
//! `docs/`, whose every metric the router exports.

use std::time::Duration;

use exum_router::model::Transport;
use exum_router::server::Server;
use exum_router_tests::peer::{UdpPeer, udp_request};
use exum_router_tests::{components, http, http_get, workspace};

/// The DOM of `url` after the page's scripts ran, from headless chromium.
async fn rendered(url: &str) -> String {
    let profile = tempfile::tempdir().expect("tempdir");
    let child = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chromium runs (apt-get install -y chromium; scripts/test.sh does it)");
    let pid = child.id();
    let waited =
        tokio::time::timeout(Duration::from_secs(90), tokio::task::spawn_blocking(move || child.wait_with_output()))
            .await;
    let Ok(out) = waited else {
        let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
        panic!("chromium did not render the page within 90 s");
    };
    let out = out.expect("join").expect("chromium's output");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element with `id`, tags stripped.
fn text_of(dom: &str, id: &str) -> String {
    let start = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let open = dom[..start].rfind('<').expect("tag");
    let tag: String = dom[open + 1..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let end = dom[start..].find(&format!("</{tag}>")).map_or(dom.len(), |e| start + e);
    strip_tags(&dom[open..end])
}

/// The text of an HTML fragment, tags stripped, white space collapsed.
fn strip_tags(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_tenants_versions_candidates_and_the_directory_in_a_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    std::fs::copy(components::PLAN_A, dir.path().join("policies/contoso.wasm")).expect("copy");
    std::fs::copy(components::PLAN_A, dir.path().join("policies/litware.wasm")).expect("copy");
    std::fs::write(
        dir.path().join("directory.toml"),
        "[[tenants.contoso.dial_plans]]\nname = \"A\"\nphone_context = \"A\"\nservers = [{ uri = \"sip:127.0.0.1:9\" }]\n\
         [[tenants.contoso.dial_plans]]\nname = \"B\"\nphone_context = \"B\"\nservers = [{ uri = \"sip:127.0.0.2:9\" }]\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\npolicy_dir = \"policies\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n\
         transports = [\"udp\"]\n[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"exum-test-admin-token\"\n[probes]\nenabled = false\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n\
         [[tenant]]\nid = \"fabrikam\"\ndomains = [\"fabrikam.com\"]\n\
         [[tenant]]\nid = \"litware\"\ndomains = [\"litware.com\"]\n",
    )
    .expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("router starts");
    let admin = server.admin_addr().expect("admin");
    let plan_b = std::fs::read(components::PLAN_B).expect("plan B");
    let r = http(admin, "POST", "/tenants/contoso/policy/candidate?mode=shadow", &plan_b).await;
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    let r = http(admin, "POST", "/tenants/litware/policy/candidate?mode=canary&share=0.25", &plan_b).await;
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    // One call, compared by the shadow (its target does not answer: the
    // router's 100 Trying is all this test waits for).
    let peer = UdpPeer::bind().await;
    let router = server.local_addr(Transport::Udp).expect("udp");
    peer.send(router, &udp_request("INVITE", "sip:someone@contoso.com", peer.addr, "status-1")).await;
    peer.expect_response(100).await;
    exum_router_tests::until("the shadow comparison", || {
        server
            .policy
            .current("contoso")
            .and_then(|p| p.candidate.clone())
            .is_some_and(|c| c.compared.load(std::sync::atomic::Ordering::Relaxed) >= 1)
    })
    .await;

    let dom = rendered(&format!("http://{admin}/status")).await;
    let contoso = text_of(&dom, "tenant-contoso");
    assert!(contoso.contains("contoso contoso.com active"), "{contoso}");
    assert!(contoso.contains("v1 exum-fixture-plan-a 0.1.0"), "{contoso}");
    assert!(contoso.contains("shadow running v2 exum-fixture-plan-b 0.1.0"), "{contoso}");
    assert!(contoso.contains("1 compared; diverged: action 0, targets 1, rewrite 0, headers 0"), "{contoso}");
    // The page's script ran: load times shown as ages, and the totals.
    assert!(contoso.contains(" s ago"), "{contoso}");
    assert_eq!(text_of(&dom, "totals"), "3 tenants, 0 faults in all");
    let fabrikam = text_of(&dom, "tenant-fabrikam");
    assert!(fabrikam.contains("standard 0.0 0 0 0 - "), "no traffic: {fabrikam}");
    assert!(fabrikam.contains("standard policy none 0"), "{fabrikam}");
    let litware = text_of(&dom, "tenant-litware");
    assert!(
        litware.contains(
            "canary running v2 exum-fixture-plan-b 0.1.0 share 25%: 0 decisions, 0 faults, 0 calls (0 failed)"
        ),
        "{litware}"
    );
    assert_eq!(text_of(&dom, "directory"), "source file");
    server.stop();
}

/// The value of attribute `name` in the first element carrying it after the
/// element with `id`.
fn attr_after(dom: &str, id: &str, name: &str) -> String {
    let start = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let at = dom[start..].find(&format!("{name}=\"")).map(|i| start + i + name.len() + 2).expect("attribute");
    dom[at..].split('"').next().unwrap_or_default().to_owned()
}

/// The text of the target row for `uri`.
fn target_row(dom: &str, uri: &str) -> String {
    let at = dom.find(&format!("data-uri=\"{uri}\"")).unwrap_or_else(|| panic!("no target {uri} in {dom}"));
    let start = at + dom[at..].find('>').expect("tag end") + 1;
    let end = start + dom[start..].find("</tr>").expect("row end");
    strip_tags(&dom[start..end])
}

/// Takes a screenshot of `url` with headless chromium into `path`.
async fn screenshot(url: &str, path: &std::path::Path) {
    let profile = tempfile::tempdir().expect("tempdir");
    let child = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"])
        .args(["--disable-background-networking", "--window-size=1600,1100"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", path.display()))
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chromium runs");
    let out =
        tokio::time::timeout(Duration::from_secs(90), tokio::task::spawn_blocking(move || child.wait_with_output()))
            .await
            .expect("chromium took its screenshot within 90 s")
            .expect("join")
            .expect("chromium's output");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sipp_run_the_status_page_shows_targets_and_each_tenants_traffic_as_the_metrics_count() {
    use exum_router_tests::sipp::{sipp, sipp_address, stat};
    let dir = tempfile::tempdir().expect("tempdir");
    let examples = workspace().join("examples/sipp");
    let (uas_at, uac_at) = (sipp_address(), sipp_address());
    std::fs::write(
        dir.path().join("directory.toml"),
        std::fs::read_to_string(examples.join("directory.toml"))
            .expect("example")
            .replace("127.0.0.1:5070", &uas_at.to_string())
            + "[[tenants.contoso.dial_plans]]\nname = \"Spare\"\nphone_context = \"Spare.contoso.com\"\n\
               servers = [{ uri = \"sip:127.0.0.2:9\" }]\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [admin]\naddress = \"127.0.0.1:0\"\n\
         [probes]\ninterval_ms = 200\ntimeout_ms = 150\ndown_after = 2\nup_after = 1\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\nrecord_route = true\npstn_gateway = \"sip:127.0.0.1:19\"\n\
         [[tenant]]\nid = \"fabrikam\"\ndomains = [\"fabrikam.com\"]\n",
    )
    .expect("write");
    let mut uas = sipp()
        .arg("-sf")
        .arg(examples.join("uas.xml"))
        .args(["-i", &uas_at.ip().to_string(), "-p", &uas_at.port().to_string(), "-nostdin", "-timeout", "120s"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp UAS starts");
    exum_router_tests::sipp::listening(&mut uas, uas_at).await;
    let server = Server::start(&dir.path().join("router.toml")).await.expect("router starts");
    let admin = server.admin_addr().expect("admin");
    let (up, dead_um, gateway) = (format!("sip:{uas_at}"), "sip:127.0.0.2:9", "sip:127.0.0.1:19");
    exum_router_tests::eventually(
        "the UAS up, the spare UM server and the gateway down",
        async || exum_router_tests::http_get(admin, "/metrics").await,
        |m: &String| {
            m.contains(&format!("exum_um_server_up{{server=\"{up}\"}} 1"))
                && m.contains(&format!("exum_um_server_up{{server=\"{dead_um}\"}} 0"))
                && m.contains(&format!("exum_um_server_up{{server=\"{gateway}\"}} 0"))
        },
    )
    .await;
    // 20 calls that the UAS answers, then 3 for nobody (404: failed calls).
    let calls = 20;
    let router = server.local_addr(Transport::Udp).expect("udp");
    let out = sipp()
        .arg(router.to_string())
        .arg("-sf")
        .arg(examples.join("uac.xml"))
        .arg("-inf")
        .arg(examples.join("calls.csv"))
        .args(["-i", &uac_at.ip().to_string(), "-p", &uac_at.port().to_string()])
        .args(["-m", &calls.to_string(), "-r", "20", "-nostdin", "-timeout", "60s"])
        .args(["-trace_stat", "-stf", "uac.csv", "-fd", "1"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .output()
        .expect("sipp UAC runs");
    assert!(out.status.success(), "UAC: {}", out.status);
    assert_eq!(stat(&dir.path().join("uac.csv"), "SuccessfulCall(C)"), calls);
    let peer = UdpPeer::bind().await;
    for i in 0..3 {
        peer.send(router, &udp_request("INVITE", "sip:nobody@contoso.com", peer.addr, &format!("nobody-{i}"))).await;
        assert_eq!(peer.final_response().await.status(), Some(404));
    }
    exum_router_tests::until("the failed calls counted", || server.metrics.calls_of("contoso", "failed") == 3).await;

    let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&png);
    screenshot(&format!("http://{admin}/status"), &png).await;
    let image = std::fs::read(&png).expect("the screenshot");
    assert!(image.starts_with(b"\x89PNG") && image.len() > 10_000, "a PNG of the page: {} bytes", image.len());
    println!("status page screenshot: {}", png.display());

    let dom = rendered(&format!("http://{admin}/status")).await;
    assert_eq!(text_of(&dom, "targets-summary"), "1 of 3 up");
    let uas_row = target_row(&dom, &up);
    assert!(uas_row.starts_with(&format!("{up} UM server up ")) && uas_row.contains(" s ago"), "{uas_row}");
    assert!(uas_row.ends_with(" ms"), "a round trip: {uas_row}");
    let dead = target_row(&dom, dead_um);
    assert!(dead.starts_with("sip:127.0.0.2:9 UM server down") && dead.ends_with("no answer"), "{dead}");
    assert!(target_row(&dom, gateway).starts_with("sip:127.0.0.1:19 gateway down"), "the PSTN gateway is probed");
    // The tenant's figures are the metrics' (everything happened within the minute).
    let m = &server.metrics;
    let invites = m.requests_of("contoso", "INVITE");
    assert_eq!(invites, calls + 3);
    assert_eq!(attr_after(&dom, "tenant-contoso", "data-calls"), invites.to_string());
    assert_eq!(attr_after(&dom, "tenant-contoso", "data-failed"), m.calls_of("contoso", "failed").to_string());
    assert_eq!(attr_after(&dom, "tenant-contoso", "data-fallbacks"), m.fallbacks_of("contoso").to_string());
    let p99: f64 = attr_after(&dom, "tenant-contoso", "data-p99").parse().expect("a p99");
    assert!(p99 > 0.0 && p99 < 0.2, "{p99}");
    let row = text_of(&dom, "tenant-contoso");
    assert!(row.contains(&format!(" {invites} 3 0 ≤ ")), "calls, failed, fallbacks, p99 shown: {row}");
    let svg_start = dom.find("id=\"tenant-contoso\"").expect("row");
    let svg = &dom[svg_start..];
    assert!(svg.find("<svg class=\"spark\"").is_some_and(|i| i < svg.find("</tr>").unwrap_or(0)), "a sparkline");
    assert!(text_of(&dom, "tenant-fabrikam").contains("standard 0.0 0 0 0 -"), "no traffic");
    server.stop();
    let _ = uas.kill();
    let _ = uas.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_grafana_dashboard_is_exported() {
    let dashboard = std::fs::read_to_string(workspace().join("docs/grafana-dashboard.json")).expect("dashboard");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(json["panels"].as_array().is_some_and(|p| p.len() >= 10), "panels");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [admin]\naddress = \"127.0.0.1:0\"\ntoken = \"exum-test-admin-token\"\n[probes]\nenabled = false\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n",
    )
    .expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("starts");
    // Families without samples yet are not in the exposition: the router's
    // list of what it registers is the reference, and those with samples
    // must be in the exposition too.
    let families = server.metrics.families().to_vec();
    let metrics = http_get(server.admin_addr().expect("admin"), "/metrics").await;
    for line in metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = line.split(' ').next().unwrap_or("");
        assert!(families.iter().any(|f| f == name), "{name} is exported but not listed");
    }
    let mut names: Vec<String> = Vec::new();
    let mut rest = dashboard.as_str();
    while let Some(i) = rest.find("exum_") {
        let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[i + name.len()..];
        names.push(name);
    }
    names.sort();
    names.dedup();
    assert!(names.len() >= 12, "{names:?}");
    for name in names {
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_owned();
        assert!(families.contains(&family), "{name} is not a metric of the router");
    }
    server.stop();
}
