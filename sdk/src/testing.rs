//! An in-memory stand-in for the router, so a policy crate is unit-tested natively
//! with plain `cargo test`: build a [`TestHost`] with the tenant's users, contacts,
//! hosted voice-mail policies, dial plans, rerouting, down targets and clock,
//! [`install`](TestHost::install) it on the test's thread, and call the policy.
//! [`invite`] builds requests.

use std::cell::RefCell;

use crate::bindings::exum::policy::types::{Request as WireRequest, Span};
use crate::{
    ContactKind, Datetime, DialPlan, HostedVoicemailPolicy, IpAddress, Level, PolicyScope, Request, Rerouting, Source,
    TenantSettings, Transport, UmContact, UmServer, User, Voicemail,
};
#[cfg(not(target_arch = "wasm32"))]
use crate::{DialPlanOf, HostedRoute, normalize_number, parse_uri};

thread_local! {
    static HOST: RefCell<Option<TestHost>> = const { RefCell::new(None) };
}

/// Runs `f` against the test host of this thread.
///
/// # Panics
///
/// When no [`TestHost`] is installed on this thread: a policy's native test must
/// install one first.
pub(crate) fn with_host<R>(f: impl FnOnce(&TestHost) -> R) -> R {
    HOST.with(|h| {
        let host = h.borrow();
        f(host.as_ref().expect("no TestHost installed on this thread: call TestHost::install() first"))
    })
}

/// The data the router would answer a policy's imports with, for one tenant.
#[derive(Debug, Clone)]
pub struct TestHost {
    /// The tenant's settings (what `host::settings()` answers).
    pub tenant: TenantSettings,
    /// The users.
    pub users: Vec<User>,
    /// The Exchange UM contacts.
    pub contacts: Vec<UmContact>,
    /// Contacts of an on-premises dial plan: SIP address and dial plan key.
    pub contact_dial_plans: Vec<(String, String)>,
    /// Hosted voice-mail policies with their scope.
    pub hosted_policies: Vec<(PolicyScope, HostedVoicemailPolicy)>,
    /// On-premises dial plans.
    pub dial_plans: Vec<DialPlan>,
    /// The tenant's rerouting settings.
    pub rerouting: Rerouting,
    /// Per-site rerouting settings.
    pub site_rerouting: Vec<(String, Rerouting)>,
    /// Targets marked down.
    pub down: Vec<String>,
    /// What `host::now()` answers.
    pub now: Datetime,
    /// What the policy logged.
    pub logs: RefCell<Vec<(Level, String)>>,
}

impl TestHost {
    /// An empty directory for tenant `id` owning the domain `<id>.com`, at
    /// 2026-01-05 10:00 UTC (a Monday).
    pub fn new(id: &str) -> Self {
        TestHost {
            tenant: TenantSettings {
                id: id.to_owned(),
                domains: vec![format!("{id}.com")],
                edge: None,
                default_next_hop: None,
            },
            users: Vec::new(),
            contacts: Vec::new(),
            contact_dial_plans: Vec::new(),
            hosted_policies: Vec::new(),
            dial_plans: Vec::new(),
            rerouting: Rerouting { enabled: false, auto_attendant: None, subscriber_access: None, pstn_gateway: None },
            site_rerouting: Vec::new(),
            down: Vec::new(),
            now: Datetime { unix_seconds: 1_767_607_200, utc_offset_minutes: 0 },
            logs: RefCell::new(Vec::new()),
        }
    }

    /// Sets the tenant's edge next hop.
    pub fn edge(mut self, uri: &str) -> Self {
        self.tenant.edge = Some(uri.to_owned());
        self
    }

    /// Sets where requests that are not voice-mail-bound go.
    pub fn default_next_hop(mut self, uri: &str) -> Self {
        self.tenant.default_next_hop = Some(uri.to_owned());
        self
    }

    /// Sets the tenant's SIP domains.
    pub fn domains(mut self, domains: &[&str]) -> Self {
        self.tenant.domains = domains.iter().map(|d| (*d).to_owned()).collect();
        self
    }

    /// Adds a user whose mailbox is hosted, with an optional granted policy and site.
    pub fn hosted_user(mut self, sip: &str, granted: Option<&str>, site: Option<&str>) -> Self {
        self.users.push(User {
            voicemail: Voicemail::Hosted,
            hosted_voicemail_policy: granted.map(str::to_owned),
            site: site.map(str::to_owned),
            ..user(sip)
        });
        self
    }

    /// Adds a user with an on-premises mailbox on the dial plan named by `eum`'s
    /// phone-context (`eum:alice@contoso.com;phone-context=DP1.contoso.com`).
    pub fn on_premises_user(mut self, sip: &str, eum: &str) -> Self {
        self.users.push(User { voicemail: Voicemail::OnPremises, eum_address: Some(eum.to_owned()), ..user(sip) });
        self
    }

    /// Adds a user as given.
    pub fn user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    /// Adds an Exchange UM contact.
    pub fn contact(mut self, sip: &str, number: &str, kind: ContactKind, granted: Option<&str>) -> Self {
        self.contacts.push(UmContact {
            sip_address: sip.to_owned(),
            number: number.to_owned(),
            kind,
            site: None,
            hosted_voicemail_policy: granted.map(str::to_owned),
        });
        self
    }

    /// Adds an Exchange UM contact of the on-premises dial plan `plan` (its name
    /// or phone-context).
    pub fn on_premises_contact(self, sip: &str, number: &str, kind: ContactKind, plan: &str) -> Self {
        let mut host = self.contact(sip, number, kind, None);
        host.contact_dial_plans.push((sip.to_owned(), plan.to_owned()));
        host
    }

    /// Adds a hosted voice-mail policy with a scope.
    pub fn hosted_policy(mut self, scope: PolicyScope, destination: Option<&str>, organizations: &[&str]) -> Self {
        let name = match &scope {
            PolicyScope::Global => "global".to_owned(),
            PolicyScope::Site(s) => format!("site:{s}"),
            PolicyScope::Named(n) => n.clone(),
        };
        let policy = HostedVoicemailPolicy {
            name,
            destination: destination.map(str::to_owned),
            organizations: organizations.iter().map(|s| (*s).to_owned()).collect(),
        };
        self.hosted_policies.push((scope, policy));
        self
    }

    /// Adds a dial plan with its UM servers (URI, timeout in ms) in order.
    pub fn dial_plan(mut self, name: &str, phone_context: &str, servers: &[(&str, u32)]) -> Self {
        self.dial_plans.push(DialPlan {
            name: name.to_owned(),
            phone_context: phone_context.to_owned(),
            servers: servers.iter().map(|(u, t)| UmServer { uri: (*u).to_owned(), timeout_ms: *t }).collect(),
        });
        self
    }

    /// Enables tenant-wide voice-mail rerouting.
    pub fn rerouting(mut self, gateway: &str, auto_attendant: &str, subscriber_access: &str) -> Self {
        self.rerouting = Rerouting {
            enabled: true,
            auto_attendant: Some(auto_attendant.to_owned()),
            subscriber_access: Some(subscriber_access.to_owned()),
            pstn_gateway: Some(gateway.to_owned()),
        };
        self
    }

    /// Enables voice-mail rerouting for one site (its own gateway and numbers),
    /// used for that site's users and contacts instead of the tenant's.
    pub fn site_rerouting(mut self, site: &str, gateway: &str, auto_attendant: &str, subscriber_access: &str) -> Self {
        self.site_rerouting.retain(|(s, _)| s != site);
        self.site_rerouting.push((
            site.to_owned(),
            Rerouting {
                enabled: true,
                auto_attendant: Some(auto_attendant.to_owned()),
                subscriber_access: Some(subscriber_access.to_owned()),
                pstn_gateway: Some(gateway.to_owned()),
            },
        ));
        self
    }

    /// Puts the contact added before with SIP address `sip` in `site`.
    ///
    /// # Panics
    ///
    /// When no such contact was added: a test's mistake.
    pub fn contact_site(mut self, sip: &str, site: &str) -> Self {
        let contact = self.contacts.iter_mut().find(|c| c.sip_address == sip);
        contact.unwrap_or_else(|| panic!("no contact {sip} added before contact_site")).site = Some(site.to_owned());
        self
    }

    /// Marks a target down, as failed health probes would.
    pub fn down(mut self, uri: &str) -> Self {
        self.down.push(uri.to_owned());
        self
    }

    /// Sets the clock.
    pub fn at(mut self, unix_seconds: i64, utc_offset_minutes: i32) -> Self {
        self.now = Datetime { unix_seconds, utc_offset_minutes };
        self
    }

    /// Makes this the host the current thread's policy calls see.
    pub fn install(self) {
        HOST.with(|h| *h.borrow_mut() = Some(self));
    }

    /// What the policy logged on this thread so far.
    pub fn logged() -> Vec<(Level, String)> {
        with_host(|h| h.logs.borrow().clone())
    }
}

/// The lookups the imports answer with natively (in a component, the router answers).
#[cfg(not(target_arch = "wasm32"))]
impl TestHost {
    pub(crate) fn find_user(&self, address: &str) -> Option<User> {
        match directory_key(address) {
            Key::Sip(key) => self.users.iter().find(|u| key_of(&u.sip_address) == key).cloned(),
            Key::Number(n) => self.users.iter().find(|u| u.number.as_deref() == Some(n.as_str())).cloned(),
            Key::Invalid => None,
        }
    }

    pub(crate) fn find_contact(&self, address: &str) -> Option<UmContact> {
        match directory_key(address) {
            Key::Sip(key) => self.contacts.iter().find(|c| key_of(&c.sip_address) == key).cloned(),
            Key::Number(n) => {
                self.contacts.iter().find(|c| normalize_number(&c.number).as_deref() == Some(n.as_str())).cloned()
            }
            Key::Invalid => None,
        }
    }

    pub(crate) fn find_contact_dial_plan(&self, address: &str) -> Option<DialPlan> {
        let contact = self.find_contact(address)?;
        let (_, plan) = self.contact_dial_plans.iter().find(|(sip, _)| *sip == contact.sip_address)?;
        self.find_dial_plan(plan)
    }

    pub(crate) fn find_hosted_policy(&self, scope: &PolicyScope) -> Option<HostedVoicemailPolicy> {
        self.hosted_policies.iter().find(|(s, _)| s == scope).map(|(_, p)| p.clone())
    }

    pub(crate) fn find_dial_plan(&self, key: &str) -> Option<DialPlan> {
        self.dial_plans
            .iter()
            .find(|d| d.phone_context.eq_ignore_ascii_case(key) || d.name.eq_ignore_ascii_case(key))
            .cloned()
    }

    pub(crate) fn find_hosted_route(&self, granted: Option<&str>, site: Option<&str>) -> Option<HostedRoute> {
        let policy = granted
            .and_then(|n| self.find_hosted_policy(&PolicyScope::Named(n.to_owned())))
            .or_else(|| site.and_then(|s| self.find_hosted_policy(&PolicyScope::Site(s.to_owned()))))
            .or_else(|| self.find_hosted_policy(&PolicyScope::Global))?;
        let next_hop = self.tenant.edge.clone();
        Some(HostedRoute {
            destination: policy.destination,
            organization: policy.organizations.into_iter().next(),
            next_hop_healthy: next_hop.as_deref().is_some_and(|h| !self.is_down(h)),
            next_hop,
        })
    }

    pub(crate) fn find_healthy_um_servers(&self, of: &DialPlanOf) -> Option<Vec<UmServer>> {
        let plan = match of {
            DialPlanOf::Key(key) => self.find_dial_plan(key),
            DialPlanOf::Contact(address) => self.find_contact_dial_plan(address),
        }?;
        Some(plan.servers.into_iter().filter(|s| !self.is_down(&s.uri)).collect())
    }

    pub(crate) fn is_down(&self, uri: &str) -> bool {
        self.down.iter().any(|d| d == uri)
    }

    pub(crate) fn find_rerouting(&self, site: Option<&str>) -> Rerouting {
        site.and_then(|s| self.site_rerouting.iter().find(|(n, _)| n == s))
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| self.rerouting.clone())
    }
}

#[cfg(not(target_arch = "wasm32"))]
enum Key {
    Sip(String),
    Number(String),
    Invalid,
}

#[cfg(not(target_arch = "wasm32"))]
fn directory_key(address: &str) -> Key {
    if let Some(n) = normalize_number(address) {
        return Key::Number(n);
    }
    match parse_uri(address) {
        Some(uri) if uri.scheme == "tel" => uri.number().map_or(Key::Invalid, Key::Number),
        Some(uri) => Key::Sip(sip_key(uri.address())),
        None => Key::Invalid,
    }
}

/// `sips:alice@...` is the same address as `sip:alice@...`, as in the router's
/// directory.
#[cfg(not(target_arch = "wasm32"))]
fn sip_key(address: String) -> String {
    match address.strip_prefix("sips:") {
        Some(rest) => format!("sip:{rest}"),
        None => address,
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn key_of(sip: &str) -> String {
    parse_uri(sip).map(|u| sip_key(u.address())).unwrap_or_default()
}

/// A user with voice-mail setting `none` and nothing else set; fill in the rest with
/// struct update syntax: `User { voicemail: Voicemail::Hosted, ..user("sip:a@b.com") }`.
pub fn user(sip: &str) -> User {
    User {
        sip_address: sip.to_owned(),
        line_uri: None,
        number: None,
        site: None,
        voicemail: Voicemail::None,
        hosted_voicemail_policy: None,
        eum_address: None,
    }
}

/// Starts building an INVITE to `request_uri`.
pub fn invite(request_uri: &str) -> RequestBuilder {
    RequestBuilder::new("INVITE", request_uri)
}

/// Builds a [`Request`] for a test: the head is written out as the router would
/// receive it, with the spans the router would send.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: String,
    request_uri: String,
    from: String,
    to: String,
    headers: Vec<(String, String)>,
    source: Source,
}

impl RequestBuilder {
    /// A request with `method` to `request_uri`, from `sip:caller@example.com`,
    /// over UDP from 192.0.2.10:5060.
    pub fn new(method: &str, request_uri: &str) -> Self {
        RequestBuilder {
            method: method.to_owned(),
            request_uri: request_uri.to_owned(),
            from: "sip:caller@example.com".to_owned(),
            to: request_uri.split(';').next().unwrap_or(request_uri).to_owned(),
            headers: Vec::new(),
            source: Source {
                address: IpAddress::Ipv4((192, 0, 2, 10)),
                port: 5060,
                transport: Transport::Udp,
                tls_peer_name: None,
            },
        }
    }

    /// Sets the From URI.
    pub fn from(mut self, uri: &str) -> Self {
        uri.clone_into(&mut self.from);
        self
    }

    /// Sets the To URI.
    pub fn to(mut self, uri: &str) -> Self {
        uri.clone_into(&mut self.to);
        self
    }

    /// Adds a header field (a value may hold CRLF and whitespace to fold it).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets where the request comes from.
    pub fn source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// The request.
    pub fn build(self) -> Request {
        let mut head = String::with_capacity(512);
        let span = |head: &mut String, text: &str| {
            let start = head.len() as u32;
            head.push_str(text);
            Span { start, len: text.len() as u32 }
        };
        let method = span(&mut head, &self.method);
        head.push(' ');
        let request_uri = span(&mut head, &self.request_uri);
        head.push_str(
            " SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9\r\nMax-Forwards: 70\r\nFrom: <",
        );
        let from_uri = span(&mut head, &self.from);
        head.push_str(">;tag=");
        let from_tag = span(&mut head, "1928301774");
        head.push_str("\r\nTo: <");
        let to_uri = span(&mut head, &self.to);
        head.push_str(">\r\nCall-ID: ");
        let call_id = span(&mut head, "a84b4c76e66710@pc33.example.com");
        head.push_str("\r\nCSeq: 1 ");
        head.push_str(&self.method);
        head.push_str("\r\n");
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        Request::from_wire(WireRequest {
            head,
            method,
            request_uri,
            from_uri,
            from_tag: Some(from_tag),
            to_uri,
            to_tag: None,
            call_id,
            cseq: 1,
            source: self.source,
        })
    }
}
