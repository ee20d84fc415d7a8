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
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom[open..end].chars() {
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
    assert!(fabrikam.contains("standard standard policy none 0"), "{fabrikam}");
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
