//! Shared pieces of exum-router's integration tests: the components built from
//! source by `build.rs`, the example deployment, and a harness that puts a policy
//! in front of the real engine.

pub mod dns;
pub mod lab;
pub mod peer;
pub mod postgres;
pub mod sipp;
pub mod slapd;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use exum_router::control::config::{Fallback, Limits, PolicySource, TenantConfig};
use exum_router::control::directory::TenantDirectory;
use exum_router::control::health::HealthTable;
use exum_router::control::{Tenant, Tenants};
use exum_router::model::wire;
use exum_router::model::{Source, Transport};
use exum_router::policy::contract::Request;
use exum_router::policy::{PolicyEngine, PolicyRegistry, TenantPolicy, view};
pub use lab::{Lab, LabBuilder};

/// Paths of the components built from source (`PILOT_GROUP`, `HOSTILE`, ...).
pub mod components {
    include!(concat!(env!("OUT_DIR"), "/components.rs"));
}

/// Paths of the policies in other languages built from source
/// (`tests/polyglot/`), or why they could not be built.
pub mod polyglot {
    include!(concat!(env!("OUT_DIR"), "/polyglot.rs"));

    /// The path of a component of [`self`]; panics saying why it is missing
    /// (its toolchain not installed: `scripts/test.sh` installs them).
    pub fn path(component: Result<&'static str, &'static str>) -> &'static str {
        match component {
            Ok(path) => path,
            Err(why) => panic!("a policy in another language could not be built: {why}"),
        }
    }
}

/// `component` with a custom section `name` holding `payload` appended.
pub fn with_custom_section(component: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name.as_bytes());
    section.extend_from_slice(payload);
    let mut out = component.to_vec();
    out.push(0); // custom section id
    let mut len = section.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        out.push(if len == 0 { byte } else { byte | 0x80 });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&section);
    out
}

/// The component with a custom section `exum-variant` holding `n`: valid, same
/// behaviour, different bytes.
pub fn component_variant(component: &[u8], n: usize) -> Vec<u8> {
    with_custom_section(component, "exum-variant", &n.to_le_bytes())
}

/// Waits until `condition` holds, checking every 10 ms; panics naming `what`
/// after 20 s. For state the router exposes only by polling (its counters).
pub async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "still waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Reads with `read` every 50 ms until `holds` is true of what it read, and
/// returns that; panics naming `what` and the last value after 20 s. For state
/// read over the network (the admin API).
pub async fn eventually<T: std::fmt::Debug>(
    what: &str,
    mut read: impl AsyncFnMut() -> T,
    holds: impl Fn(&T) -> bool,
) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let value = read().await;
        if holds(&value) {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "still waiting for {what}: {value:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until `ready` says the server `child` (named `what`) answers:
/// checked every 50 ms; panics if the server exits first (with its status)
/// or after 30 s. The start of the servers the tests run themselves
/// (PostgreSQL, slapd).
pub fn wait_until_serving(what: &str, child: &mut std::process::Child, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before it served: {status}");
        }
        assert!(std::time::Instant::now() < deadline, "{what} did not answer within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The admin token the tests' configurations give (`[admin] token`): changes
/// through the admin API need one.
pub const ADMIN_TOKEN: &str = "exum-test-admin-token";

/// An HTTP/1.1 request to the admin API at `addr` (`X-Uploaded-By: ops`, the
/// tests' [`ADMIN_TOKEN`]);
/// the whole response, head and body.
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nX-Uploaded-By: ops\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// The JSON body of an HTTP response (panics, naming the response, when it is not JSON).
pub fn json_body(response: &str) -> serde_json::Value {
    let json = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

/// The status code of an HTTP response (0 when it has none).
pub fn http_status(response: &str) -> u16 {
    response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// `GET path` from the admin API at `addr`.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    http(addr, "GET", path, b"").await
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// The example deployment's router configuration.
pub fn deployment_config() -> PathBuf {
    workspace().join("examples/deployment/router.toml")
}

/// The router's policy plane over a set of tenants, as `serve` builds it.
pub struct Plane {
    /// The tenants.
    pub tenants: Tenants,
    /// The registry with every tenant's policy installed.
    pub registry: PolicyRegistry,
    /// Target health.
    pub health: Arc<HealthTable>,
}

impl Plane {
    /// Loads the example deployment.
    pub fn deployment() -> Plane {
        let (_, tenants) = Tenants::load(&deployment_config()).expect("the example deployment loads");
        Plane::new(tenants)
    }

    /// Builds the plane for `tenants`.
    pub fn new(tenants: Tenants) -> Plane {
        let health = Arc::new(HealthTable::default());
        let engine = Arc::new(PolicyEngine::new().expect("engine"));
        let registry =
            PolicyRegistry::new(engine, health.clone(), Default::default()).expect("the standard policy loads");
        registry.install_all(&tenants);
        Plane { tenants, registry, health }
    }

    /// The tenant owning the Request-URI of `sip` and the request view.
    pub fn request(&self, sip: &str) -> (Arc<Tenant>, Request) {
        let parsed = wire::Message::parse(sip.as_bytes().to_vec(), false, wire::DEFAULT_MAX_MESSAGE)
            .expect("the test's request parses");
        let tenant = self
            .tenants
            .by_domain(
                &exum_router::model::uri::Uri::parse(parsed.request_uri().unwrap_or_default()).expect("ruri").host,
            )
            .expect("a tenant owns the domain")
            .clone();
        let view = view_of(sip);
        (tenant, view)
    }

    /// The installed policy of `tenant`.
    pub fn policy(&self, tenant: &Tenant) -> Arc<TenantPolicy> {
        self.registry.get(tenant)
    }
}

/// The request view of `sip`, from 192.0.2.10:5060 over UDP.
pub fn view_of(sip: &str) -> Request {
    let parsed = wire::Message::parse(sip.as_bytes().to_vec(), false, wire::DEFAULT_MAX_MESSAGE)
        .expect("the test's request parses");
    let source =
        Source { addr: ([192, 0, 2, 10], 5060).into(), transport: Transport::Udp, tls_peer_name: None, local: None };
    view::request_view(&parsed, &source).expect("view")
}

/// An INVITE to `ruri` from `from`, with one stale Diversion header.
pub fn invite(ruri: &str, from: &str) -> String {
    let to = ruri.split(';').next().unwrap_or(ruri);
    format!(
        "INVITE {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-test\r\n\
         Max-Forwards: 70\r\n\
         From: <{from}>;tag=abc\r\n\
         To: <{to}>\r\n\
         Call-ID: test@192.0.2.10\r\n\
         CSeq: 1 INVITE\r\n\
         Diversion: <sip:stale@contoso.com>;reason=unconditional\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// A tenant `id` owning `<id>.test` whose policy is the component at `path`.
pub fn tenant_with_policy(
    id: &str,
    path: &str,
    policy_config: &str,
    fallback: Fallback,
    limits: Limits,
) -> Arc<Tenant> {
    let config = TenantConfig {
        domains: vec![format!("{id}.test")],
        policy: PolicySource::File(PathBuf::from(path)),
        policy_config: policy_config.to_owned(),
        fallback,
        limits,
        ..TenantConfig::empty(id)
    };
    Arc::new(Tenant { config, directory: TenantDirectory::default() })
}
