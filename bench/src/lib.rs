//! Shared fixtures of exum-router's benchmarks: the same two calls (a hosted user,
//! an on-premises user) as the router's request view and as the SDK's, with the
//! same directory data behind the engine and behind the native test host.

use std::sync::Arc;

pub mod attack;
pub mod harness;

use exum_policy_sdk::testing::{TestHost, invite};
use exum_policy_sdk::{PolicyScope, User, Voicemail};
use exum_router::control::health::HealthTable;
use exum_router::control::{Tenant, Tenants};
use exum_router::model::wire;
use exum_router::model::{Source, Transport};
use exum_router::policy::contract::Request;
use exum_router::policy::{PolicyEngine, PolicyRegistry, TenantPolicy, view};

/// The two benchmarked calls: (name, Request-URI).
pub const CALLS: [(&str, &str); 2] = [
    ("hosted", "sip:alice@contoso.com;opaque=app:voicemail"),
    ("on_premises", "sip:bob@contoso.com;opaque=app:voicemail"),
];

/// A typical INVITE from a Lync front end to `ruri` (about 900 bytes).
pub fn invite_bytes(ruri: &str) -> String {
    let to = ruri.split(';').next().unwrap_or(ruri);
    format!(
        "INVITE {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK5a7c2e1f0b;ms-received-port=5061;ms-received-cid=2A00\r\n\
         Max-Forwards: 69\r\n\
         From: \"Zoe Caller\" <sip:zoe@fabrikam.com>;tag=5f3a9c1d22;epid=8b1e4c2a7d\r\n\
         To: <{to}>\r\n\
         Call-ID: 7c2d1e9f4b3a4f0e8d6c5b4a39281706\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:zoe@fabrikam.com;opaque=user:epid:8b1e4c2a7d;gruu>\r\n\
         User-Agent: UCCAPI/15.0.4569.1503 OC/15.0.4569.1506 (Microsoft Lync)\r\n\
         Supported: ms-dialog-route-set-update, timer, histinfo, ms-safe-transfer, ms-sender, ms-early-media\r\n\
         Allow: INVITE, BYE, ACK, CANCEL, INFO, UPDATE, REFER, NOTIFY, BENOTIFY, OPTIONS\r\n\
         ms-keep-alive: UAC;hop-hop=yes\r\n\
         Diversion: <sip:someone@contoso.com>;reason=unconditional\r\n\
         History-Info: <sip:alice@contoso.com>;index=1\r\n\
         ms-conversation-id: AdRkcTA2ZWFjZDgzZTEyNGE5Njc4ZWI=\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The example deployment's policy plane.
pub struct EnginePlane {
    /// Tenants.
    pub tenants: Tenants,
    /// Registry.
    pub registry: PolicyRegistry,
}

impl EnginePlane {
    /// Loads `examples/deployment`.
    pub fn deployment() -> EnginePlane {
        EnginePlane::deployment_with(Arc::new(PolicyEngine::new().expect("engine")))
    }

    /// Loads `examples/deployment` on `engine`.
    pub fn deployment_with(engine: Arc<PolicyEngine>) -> EnginePlane {
        let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deployment/router.toml");
        let (_, tenants) = Tenants::load(&config).expect("the example deployment loads");
        let registry =
            PolicyRegistry::new(engine, Arc::new(HealthTable::default()), Default::default()).expect("standard policy");
        registry.install_all(&tenants);
        EnginePlane { tenants, registry }
    }

    /// The tenant, its policy and the request view for `ruri`.
    pub fn call(&self, ruri: &str) -> (Arc<Tenant>, Arc<TenantPolicy>, Request) {
        let bytes = invite_bytes(ruri);
        let sip = wire::Message::parse(bytes.into_bytes(), false, wire::DEFAULT_MAX_MESSAGE).expect("parses");
        let tenant = self
            .tenants
            .by_domain(&exum_router::model::uri::Uri::parse(sip.request_uri().unwrap_or_default()).expect("ruri").host)
            .expect("tenant")
            .clone();
        let source = Source {
            addr: ([192, 0, 2, 10], 5061).into(),
            transport: Transport::Tls,
            tls_peer_name: None,
            local: None,
        };
        let req = view::request_view(&sip, &source).expect("view");
        let policy = self.registry.get(&tenant);
        (tenant, policy, req)
    }
}

/// Installs, on this thread, a test host holding what the deployment holds for
/// the benchmarked users.
pub fn install_native_host() {
    TestHost::new("contoso")
        .edge("sip:edge.contoso.com:5061;transport=tls")
        .user(User {
            sip_address: "sip:alice@contoso.com".into(),
            line_uri: Some("tel:+14255550100;ext=100".into()),
            number: Some("+14255550100".into()),
            site: Some("redmond".into()),
            voicemail: Voicemail::Hosted,
            hosted_voicemail_policy: None,
            eum_address: None,
        })
        .on_premises_user("sip:bob@contoso.com", "eum:bob@contoso.com;phone-context=DP-Redmond.contoso.com")
        .hosted_policy(PolicyScope::Global, Some("exap.um.outlook.com"), &["contoso.onmicrosoft.com"])
        .hosted_policy(
            PolicyScope::Site("redmond".into()),
            Some("exap.um.outlook.com"),
            &["contoso-redmond.onmicrosoft.com"],
        )
        .dial_plan(
            "DP-Redmond",
            "DP-Redmond.contoso.com",
            &[
                ("sip:um1.redmond.contoso.com:5061;transport=tls", 3000),
                ("sip:um2.redmond.contoso.com:5061;transport=tls", 3000),
            ],
        )
        .install();
}

/// The standard policy's decision on `wire`, natively, as the component
/// makes it: on a request made from its record on this call (the head copied,
/// as the engine copies it into the guest), its fields parsed on first use. A
/// `Request` reused across calls would keep its parsed fields, which no
/// component call can.
pub fn native_route(wire: &exum_policy_sdk::bindings::exum::policy::types::Request) -> exum_policy_sdk::Decision {
    exum_policy_standard::route(&exum_policy_sdk::Request::from_wire(wire.clone()))
}

/// The SDK's request for `ruri`, with the same headers as [`invite_bytes`].
pub fn native_request(ruri: &str) -> exum_policy_sdk::Request {
    let mut b = invite(ruri).from("sip:zoe@fabrikam.com");
    for (name, value) in [
        ("Contact", "<sip:zoe@fabrikam.com;opaque=user:epid:8b1e4c2a7d;gruu>"),
        ("User-Agent", "UCCAPI/15.0.4569.1503 OC/15.0.4569.1506 (Microsoft Lync)"),
        ("Supported", "ms-dialog-route-set-update, timer, histinfo, ms-safe-transfer, ms-sender, ms-early-media"),
        ("Allow", "INVITE, BYE, ACK, CANCEL, INFO, UPDATE, REFER, NOTIFY, BENOTIFY, OPTIONS"),
        ("ms-keep-alive", "UAC;hop-hop=yes"),
        ("Diversion", "<sip:someone@contoso.com>;reason=unconditional"),
        ("History-Info", "<sip:alice@contoso.com>;index=1"),
        ("ms-conversation-id", "AdRkcTA2ZWFjZDgzZTEyNGE5Njc4ZWI="),
        ("Content-Type", "application/sdp"),
    ] {
        b = b.header(name, value);
    }
    b.build()
}
