//! The directory (TOML or JSON): per tenant, its users, Exchange UM contacts,
//! hosted voice-mail policies and on-premises UM dial plans, indexed for the
//! policies' lookups. Validated at load against the router configuration.
//!
//! ```toml
//! [[tenants.contoso.users]]
//! sip = "sip:alice@contoso.com"
//! line = "tel:+14255550100;ext=100"
//! site = "redmond"
//! hosted_voicemail = true                 # mailbox with a provider (wins over eum)
//! hosted_voicemail_policy = "pilot"       # granted per-user policy (optional)
//!
//! [[tenants.contoso.users]]
//! sip = "sip:bob@contoso.com"
//! eum = "eum:bob@contoso.com;phone-context=DP-Redmond.contoso.com"
//!
//! [[tenants.contoso.contacts]]
//! sip = "sip:sa@contoso.com"
//! number = "+14255550199"
//! kind = "subscriber-access"              # or "auto-attendant"
//!
//! [[tenants.contoso.hosted_voicemail_policies]]
//! scope = "global"                        # or "site:redmond", or "user:pilot"
//! destination = "exap.um.outlook.com"
//! organizations = ["contoso.onmicrosoft.com"]
//!
//! [[tenants.contoso.dial_plans]]
//! name = "DP-Redmond"
//! phone_context = "DP-Redmond.contoso.com"
//! servers = [{ uri = "sip:um1.contoso.com:5061;transport=tls", timeout_ms = 3000 }]
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use rustc_hash::FxHashMap;
use std::path::Path;

use serde::Deserialize;

use super::ConfigError;
use super::check_sip_uri;
use super::config::{RouterConfig, TenantConfig};
use crate::model::uri::{UriRef, extension, normalize_number, number_key};

/// An entry that fails: the whole tenant's error, or (with `refused`, lenient)
/// that entry refused alone and the loop goes on with the next.
macro_rules! refuse {
    ($refused:ident, $kind:expr, $i:expr, $e:expr) => {{
        let e = $e;
        match $refused.as_deref_mut() {
            Some(r) => {
                r.push(($kind, $i, e));
                continue;
            }
            None => return Err(e),
        }
    }};
}

/// Default per-server timeout of a UM server, in milliseconds.
pub const DEFAULT_UM_TIMEOUT_MS: u32 = 3000;

/// The voice-mail setting of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoicemailSetting {
    /// Mailbox with a provider.
    Hosted,
    /// Mailbox on an on-premises UM dial plan.
    OnPremises,
    /// Not enabled for UM.
    None,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// SIP address, as written in the directory.
    pub sip: String,
    /// Line URI, as written.
    pub line: Option<String>,
    /// The line URI's E.164 number.
    pub number: Option<String>,
    /// Site.
    pub site: Option<String>,
    /// The derived voice-mail setting.
    pub voicemail: VoicemailSetting,
    /// Granted hosted voice-mail policy name.
    pub hosted_voicemail_policy: Option<String>,
    /// On-premises UM (EUM) addresses, all in one dial plan; the first is the
    /// one policies see (`eum-address`).
    pub eum: Vec<String>,
}

/// Kind of an Exchange UM contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContactKind {
    /// Subscriber access.
    SubscriberAccess,
    /// Auto attendant.
    AutoAttendant,
}

/// An Exchange UM contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// SIP address.
    pub sip: String,
    /// E.164 number.
    pub number: String,
    /// SA or AA.
    pub kind: ContactKind,
    /// Site.
    pub site: Option<String>,
    /// Granted hosted voice-mail policy name.
    pub hosted_voicemail_policy: Option<String>,
    /// The on-premises dial plan it belongs to (its name, as configured); a
    /// hosted contact has none.
    pub dial_plan: Option<String>,
}

/// A hosted voice-mail policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedPolicy {
    /// `global`, `site:<name>` or the per-user name.
    pub name: String,
    /// Hosted UM FQDN.
    pub destination: Option<String>,
    /// Tenant routing FQDNs at the provider.
    pub organizations: Vec<String>,
}

/// A UM server of a dial plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UmServer {
    /// SIP URI.
    pub uri: String,
    /// Per-server timeout, ms.
    pub timeout_ms: u32,
    /// The Exchange major version (14: 2010, 15: 2013 and later), when given.
    pub version: Option<u32>,
}

/// How the UM servers of a dial plan are ordered for a call ([MS-EUMR]
/// 3.1.5 step 6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// In the order the dial plan lists them.
    #[default]
    Ordered,
    /// Starting at a server picked by the call's Call-ID, then in list order
    /// from there: calls spread over the servers, and one call (its
    /// retransmissions, its redirects) keeps one order.
    RoundRobin,
}

/// An on-premises UM dial plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialPlan {
    /// Name.
    pub name: String,
    /// Phone-context.
    pub phone_context: String,
    /// UM servers in order.
    pub servers: Vec<UmServer>,
    /// How a call's order of servers is chosen.
    pub selection: Selection,
}

impl DialPlan {
    /// The UM servers a call tries, in order ([MS-EUMR] 3.1.5 steps 6 and 7):
    /// only those of the highest Exchange version present (servers without
    /// a version rank below any with one), never a lower one, and of those
    /// the ones `usable` keeps (not marked down); in list order, or for
    /// [`Selection::RoundRobin`] rotated to start at the server `seed` (the
    /// call's) picks, so a server that is down spreads its share over the
    /// others rather than handing it to its neighbour.
    pub fn call_order(&self, seed: u64, usable: impl Fn(&UmServer) -> bool) -> Vec<&UmServer> {
        let top = self.servers.iter().map(|s| s.version).max().flatten();
        let mut order: Vec<&UmServer> =
            self.servers.iter().filter(|s| (s.version == top || top.is_none()) && usable(s)).collect();
        if self.selection == Selection::RoundRobin && !order.is_empty() {
            let start = (seed % order.len() as u64) as usize;
            order.rotate_left(start);
        }
        order
    }
}

/// The scope a hosted voice-mail policy applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Tenant-wide.
    Global,
    /// One site.
    Site(String),
    /// Granted per user or contact, by name.
    Named(String),
}

/// One tenant's directory, indexed.
#[derive(Debug, Clone, Default)]
pub struct TenantDirectory {
    users: Vec<User>,
    user_by_key: FxHashMap<String, usize>,
    contacts: Vec<Contact>,
    contact_by_key: FxHashMap<String, usize>,
    hosted_policies: FxHashMap<Scope, HostedPolicy>,
    dial_plans: Vec<DialPlan>,
    dial_plan_by_key: FxHashMap<String, usize>,
    /// Users by the main number of their line (extension dropped): `Some` when
    /// one user has it, `None` when several share it.
    user_by_main_number: FxHashMap<String, Option<usize>>,
    /// Users by dial plan and extension (their line's `;ext=`): `None` when
    /// several share it.
    user_by_extension: FxHashMap<(usize, String), Option<usize>>,
}

impl TenantDirectory {
    /// A user by SIP address (parameters ignored) or number. A number with an
    /// extension (`+14255550100;ext=101`, `tel:...;ext=101`, or the user part of
    /// a SIP URI) finds the user with that extension only; a main number
    /// without one finds the one user on it (none when several share it). A
    /// dialled extension with a phone-context (`sip:101;phone-context=DP1@...`)
    /// is looked up in the dial plan it names: the user of that plan with that
    /// extension, else the one whose number ends with those digits.
    pub fn user(&self, address: &str) -> Option<&User> {
        let key = lookup_key(address)?;
        if let Some(&i) = self.user_by_key.get(&key) {
            return Some(&self.users[i]);
        }
        let uri = UriRef::parse(address.trim()).ok();
        // A SIP URI whose user part is a number: by its number key.
        let number = uri.as_ref().filter(|u| u.is_sip()).and_then(UriRef::number_key);
        if let Some(number) = number.filter(|n| *n != key) {
            if let Some(&i) = self.user_by_key.get(&number) {
                return Some(&self.users[i]);
            }
            return self.by_main_number(&number);
        }
        if key.starts_with('+') {
            return self.by_main_number(&key);
        }
        self.by_dialled_extension(uri.as_ref()?)
    }

    /// The one user on main number `key` (no extension in it).
    fn by_main_number(&self, key: &str) -> Option<&User> {
        if key.contains(";ext=") {
            return None;
        }
        self.user_by_main_number.get(key).copied().flatten().map(|i| &self.users[i])
    }

    /// `101;phone-context=DP1` in the user part: the user of dial plan DP1 with
    /// extension 101, else the one whose number ends with 101.
    fn by_dialled_extension(&self, uri: &UriRef<'_>) -> Option<&User> {
        let (digits, context) = uri.user?.split_once(';')?;
        let context = context.split(';').find_map(|p| {
            let (n, v) = p.split_once('=')?;
            n.trim().eq_ignore_ascii_case("phone-context").then_some(v.trim())
        })?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let plan = *self.dial_plan_by_key.get(&context.to_ascii_lowercase())?;
        if let Some(found) = self.user_by_extension.get(&(plan, digits.to_owned())) {
            return found.map(|i| &self.users[i]);
        }
        let plan_key = |u: &User| {
            u.eum
                .first()
                .and_then(|e| eum_phone_context(e).ok())
                .and_then(|c| self.dial_plan_by_key.get(&c.to_ascii_lowercase()).copied())
        };
        let mut matches = self
            .users
            .iter()
            .filter(|u| plan_key(u) == Some(plan) && u.number.as_deref().is_some_and(|n| n.ends_with(digits)));
        match (matches.next(), matches.next()) {
            (Some(u), None) => Some(u),
            _ => None,
        }
    }

    /// A contact by SIP address or number.
    pub fn contact(&self, address: &str) -> Option<&Contact> {
        self.contact_by_key.get(&lookup_key(address)?).map(|&i| &self.contacts[i])
    }

    /// A hosted voice-mail policy by scope.
    pub fn hosted_policy(&self, scope: &Scope) -> Option<&HostedPolicy> {
        self.hosted_policies.get(scope)
    }

    /// A dial plan by phone-context or name (case-insensitive).
    pub fn dial_plan(&self, key: &str) -> Option<&DialPlan> {
        self.dial_plan_by_key.get(&key.to_ascii_lowercase()).map(|&i| &self.dial_plans[i])
    }

    /// The first user or contact with hosted voice mail, by SIP address.
    pub fn first_hosted(&self) -> Option<&str> {
        self.users
            .iter()
            .find(|u| u.voicemail == VoicemailSetting::Hosted)
            .map(|u| u.sip.as_str())
            .or_else(|| self.contacts.iter().find(|c| c.dial_plan.is_none()).map(|c| c.sip.as_str()))
    }

    /// Every UM server of every dial plan (for health probes).
    pub fn um_servers(&self) -> impl Iterator<Item = &UmServer> {
        self.dial_plans.iter().flat_map(|d| d.servers.iter())
    }

    /// Number of users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Number of contacts.
    pub fn contact_count(&self) -> usize {
        self.contacts.len()
    }

    /// The tenant's data as it would be written in a directory file's section
    /// (without settings), to validate again with other users or contacts.
    pub(crate) fn to_data(&self) -> TenantData {
        let mut policies: Vec<HostedPolicyFile> = self
            .hosted_policies
            .iter()
            .map(|(scope, p)| HostedPolicyFile {
                scope: match scope {
                    Scope::Global => "global".to_owned(),
                    Scope::Site(s) => format!("site:{s}"),
                    Scope::Named(n) => format!("user:{n}"),
                },
                destination: p.destination.clone(),
                organizations: p.organizations.clone(),
            })
            .collect();
        policies.sort_by(|a, b| a.scope.cmp(&b.scope));
        TenantData {
            users: self
                .users
                .iter()
                .map(|u| UserFile {
                    sip: u.sip.clone(),
                    line: u.line.clone(),
                    site: u.site.clone(),
                    hosted_voicemail: u.voicemail == VoicemailSetting::Hosted,
                    hosted_voicemail_policy: u.hosted_voicemail_policy.clone(),
                    eum: u.eum.clone(),
                })
                .collect(),
            contacts: self
                .contacts
                .iter()
                .map(|c| ContactFile {
                    sip: c.sip.clone(),
                    number: c.number.clone(),
                    kind: c.kind,
                    site: c.site.clone(),
                    hosted_voicemail_policy: c.hosted_voicemail_policy.clone(),
                    dial_plan: c.dial_plan.clone(),
                })
                .collect(),
            hosted_voicemail_policies: policies,
            dial_plans: self
                .dial_plans
                .iter()
                .map(|d| DialPlanFile {
                    name: d.name.clone(),
                    phone_context: d.phone_context.clone(),
                    servers: d
                        .servers
                        .iter()
                        .map(|s| UmServerFile {
                            uri: s.uri.clone(),
                            timeout_ms: Some(s.timeout_ms),
                            version: s.version,
                        })
                        .collect(),
                    selection: d.selection,
                })
                .collect(),
            settings: serde_json::Map::new(),
        }
    }
}

/// The whole directory: tenant id → its directory.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// Per tenant.
    pub tenants: HashMap<String, TenantDirectory>,
    /// The tenants defined in the directory file itself (a section with
    /// `domains` and the other keys of `[[tenant]]`), by id.
    pub defined: BTreeMap<String, TenantConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    #[serde(default)]
    tenants: BTreeMap<String, TenantData>,
}

/// One tenant's section (of the file, or read from the database): its data,
/// and, for a tenant defined here rather than in the configuration, its
/// settings (every other key).
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
pub(crate) struct TenantData {
    #[serde(default)]
    pub users: Vec<UserFile>,
    #[serde(default)]
    pub contacts: Vec<ContactFile>,
    #[serde(default)]
    pub hosted_voicemail_policies: Vec<HostedPolicyFile>,
    #[serde(default)]
    pub dial_plans: Vec<DialPlanFile>,
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// A user as a directory file (or another source) writes it, before validation.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserFile {
    /// SIP address.
    pub sip: String,
    /// Line URI.
    pub line: Option<String>,
    /// Site.
    pub site: Option<String>,
    /// Mailbox with a provider.
    #[serde(default)]
    pub hosted_voicemail: bool,
    /// Granted hosted voice-mail policy.
    pub hosted_voicemail_policy: Option<String>,
    /// On-premises UM (EUM) addresses: one (`eum = "eum:..."`) or several
    /// (`eum = ["eum:bob@contoso.com;phone-context=DP1", "eum:4102;phone-context=DP1"]`),
    /// all in one dial plan, as Exchange writes them (one with the SIP
    /// address, one with the extension or number).
    #[serde(default, deserialize_with = "one_or_many", serialize_with = "one_or_many_out")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub eum: Vec<String>,
}

/// `eum = "..."` or `eum = ["...", ...]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// One EUM address as a string, several as a list.
fn one_or_many_out<S: serde::Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    match v {
        [one] => s.serialize_str(one),
        many => serde::Serialize::serialize(many, s),
    }
}

/// A contact as a directory file (or another source) writes it, before validation.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContactFile {
    /// SIP address.
    pub sip: String,
    /// Number (E.164, or a tel: URI).
    pub number: String,
    /// SA or AA.
    pub kind: ContactKind,
    /// Site.
    pub site: Option<String>,
    /// Granted hosted voice-mail policy.
    pub hosted_voicemail_policy: Option<String>,
    /// The on-premises dial plan it belongs to.
    pub dial_plan: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostedPolicyFile {
    pub scope: String,
    pub destination: Option<String>,
    #[serde(default)]
    pub organizations: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DialPlanFile {
    pub name: String,
    pub phone_context: String,
    pub servers: Vec<UmServerFile>,
    #[serde(default, skip_serializing_if = "Selection::is_ordered")]
    pub selection: Selection,
}

impl Selection {
    fn is_ordered(&self) -> bool {
        *self == Selection::Ordered
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UmServerFile {
    pub uri: String,
    pub timeout_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// Which list an entry refused alone was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// `users`.
    User,
    /// `contacts`.
    Contact,
}

/// An entry refused alone by lenient validation: its list, its index there, why.
pub type RefusedEntry = (EntryKind, usize, ConfigError);

/// A directory read tenant by tenant: the tenants whose section is valid, and
/// the error of each section that is not.
#[derive(Debug, Default)]
pub struct PerTenant {
    /// The valid tenants' directories.
    pub directory: Directory,
    /// The refused sections: tenant id and why.
    pub refused: Vec<(String, ConfigError)>,
}

impl Directory {
    /// Reads and validates the directory file named by `config`; any invalid
    /// section refuses the whole file.
    pub fn load(config: &RouterConfig) -> Result<Directory, ConfigError> {
        Self::strict(Self::load_per_tenant(config)?)
    }

    /// Reads the directory file named by `config` tenant by tenant: an invalid
    /// section refuses that tenant's data alone. Only a file that cannot be read
    /// or parsed at all is an error.
    pub fn load_per_tenant(config: &RouterConfig) -> Result<PerTenant, ConfigError> {
        let text = read_bounded(config)?;
        Self::per_tenant(config, &text)
    }

    /// Validates `text` as the directory file of `config` would be (TOML, or
    /// JSON when that file's name ends in `.json`).
    pub fn from_text(config: &RouterConfig, text: &str) -> Result<Directory, ConfigError> {
        Self::strict(Self::per_tenant(config, text)?)
    }

    /// The sections of the directory file of `config`, as written (for
    /// `exum-router db import`); validate with [`Directory::load`] first.
    pub(crate) fn raw_sections(config: &RouterConfig) -> Result<Vec<(String, TenantData)>, ConfigError> {
        let text = read_bounded(config)?;
        sections(&config.directory, &text)?.into_iter().map(|(id, t)| t.map(|t| (id, t))).collect()
    }

    fn strict(read: PerTenant) -> Result<Directory, ConfigError> {
        match read.refused.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(read.directory),
        }
    }

    fn per_tenant(config: &RouterConfig, text: &str) -> Result<PerTenant, ConfigError> {
        let path = &config.directory;
        let mut out = PerTenant::default();
        let mut domains: HashSet<String> = config.tenants.iter().flat_map(|t| t.domains.iter().cloned()).collect();
        for (id, section) in sections(path, text)? {
            match section.and_then(|t| Self::section(config, path, &id, t, &mut domains)) {
                Ok((dir, defined)) => {
                    out.directory.tenants.insert(id.clone(), dir);
                    if let Some(c) = defined {
                        out.directory.defined.insert(id, c);
                    }
                }
                Err(e) => out.refused.push((id, e)),
            }
        }
        Ok(out)
    }

    /// Validates a tenant's data for `tenant` leniently: a user or contact that
    /// fails is refused alone (returned with its index and why) and the rest
    /// kept; anything else (a dial plan, a hosted policy) fails the whole.
    pub(crate) fn lenient(
        source: &Path,
        tenant: &TenantConfig,
        t: TenantData,
    ) -> Result<(TenantDirectory, Vec<RefusedEntry>), ConfigError> {
        let mut refused = Vec::new();
        let dir = Self::validate_tenant(source, tenant, &tenant.id, t, None, Some(&mut refused))?;
        Ok((dir, refused))
    }

    /// Validates one tenant's section read from `source` (the directory file, or
    /// the database): its settings when it defines the tenant, and its data
    /// against the tenant's settings. `domains` holds the domains other tenants
    /// own and gains this tenant's.
    pub(crate) fn section(
        config: &RouterConfig,
        source: &Path,
        id: &str,
        mut t: TenantData,
        domains: &mut HashSet<String>,
    ) -> Result<(TenantDirectory, Option<TenantConfig>), ConfigError> {
        let settings = std::mem::take(&mut t.settings);
        let defined = Self::defined_tenant(config, source, id, settings, domains)?;
        let tenant = match &defined {
            Some(c) => c,
            None => config.tenants.iter().find(|c| c.id == id).ok_or_else(|| {
                ConfigError::invalid(
                    source,
                    format!("tenants.{id}"),
                    format!("no tenant `{id}` in {}; define it there or here (with `domains`)", config.path.display()),
                )
            })?,
        };
        let dir = Self::validate_tenant(source, tenant, id, t, Some(config.sip.t1 * 64), None)?;
        Ok((dir, defined))
    }

    /// The settings of a tenant defined in the directory, when its section has
    /// any; a tenant of the configuration may have none here (it is defined in
    /// one place).
    fn defined_tenant(
        config: &RouterConfig,
        path: &Path,
        id: &str,
        settings: serde_json::Map<String, serde_json::Value>,
        domains: &mut HashSet<String>,
    ) -> Result<Option<TenantConfig>, ConfigError> {
        if settings.is_empty() {
            return Ok(None);
        }
        if config.tenants.iter().any(|c| c.id == id) {
            let keys: Vec<&str> = settings.keys().map(String::as_str).collect();
            return Err(ConfigError::invalid(
                path,
                format!("tenants.{id}.{}", keys[0]),
                format!(
                    "tenant `{id}` is defined in {}: its section here holds only users, contacts, \
                     hosted_voicemail_policies and dial_plans (found {})",
                    config.path.display(),
                    keys.join(", ")
                ),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let ctx = super::config::TenantContext {
            base,
            defaults: config.policy_defaults,
            providers: &config.hosting_providers,
        };
        super::config::tenant_from_value(id, settings, &format!("tenants.{id}"), &ctx, domains)
            .map(Some)
            .map_err(|(key, reason)| ConfigError::invalid(path, key, reason))
    }

    /// `timer_b` (64 × T1), when known, bounds a UM server's `timeout_ms`.
    fn validate_tenant(
        path: &Path,
        tenant: &TenantConfig,
        id: &str,
        t: TenantData,
        timer_b: Option<std::time::Duration>,
        mut refused: Option<&mut Vec<RefusedEntry>>,
    ) -> Result<TenantDirectory, ConfigError> {
        let invalid = |key: String, reason: String| ConfigError::invalid(path, format!("tenants.{id}.{key}"), reason);
        let mut dir = TenantDirectory::default();
        Self::hosted_policies(&mut dir, t.hosted_voicemail_policies, &invalid)?;
        Self::dial_plans(&mut dir, t.dial_plans, timer_b, &invalid)?;
        Self::users(&mut dir, t.users, &tenant.domains, &invalid, refused.as_deref_mut())?;
        Self::contacts(&mut dir, t.contacts, &tenant.domains, &invalid, refused)?;
        Ok(dir)
    }

    /// A tenant's `hosted_voicemail_policies`: scopes unique, destinations host names.
    fn hosted_policies(
        dir: &mut TenantDirectory,
        policies: Vec<HostedPolicyFile>,
        invalid: &Invalid<'_>,
    ) -> Result<(), ConfigError> {
        for (i, p) in policies.into_iter().enumerate() {
            let key = format!("hosted_voicemail_policies[{i}]");
            let (scope, name) = match p.scope.split_once(':') {
                None if p.scope == "global" => (Scope::Global, "global".to_owned()),
                Some(("site", s)) if !s.is_empty() => (Scope::Site(s.to_owned()), p.scope.clone()),
                Some(("user", n)) if !n.is_empty() => (Scope::Named(n.to_owned()), n.to_owned()),
                _ => {
                    return Err(invalid(
                        format!("{key}.scope"),
                        format!("`{}`: expected \"global\", \"site:NAME\" or \"user:NAME\"", p.scope),
                    ));
                }
            };
            if let Some(d) = &p.destination
                && (d.is_empty() || d.contains(|c: char| c.is_whitespace() || c == ';' || c == '@'))
            {
                return Err(invalid(format!("{key}.destination"), format!("`{d}` is not a host name")));
            }
            if dir.hosted_policies.contains_key(&scope) {
                return Err(invalid(format!("{key}.scope"), format!("`{}` is defined twice", p.scope)));
            }
            dir.hosted_policies
                .insert(scope, HostedPolicy { name, destination: p.destination, organizations: p.organizations });
        }

        Ok(())
    }

    /// A tenant's `dial_plans`: names and phone-contexts unique, each server's
    /// URI and timeout valid (`timer_b`, when known, bounds the timeout).
    fn dial_plans(
        dir: &mut TenantDirectory,
        plans: Vec<DialPlanFile>,
        timer_b: Option<std::time::Duration>,
        invalid: &Invalid<'_>,
    ) -> Result<(), ConfigError> {
        for (i, d) in plans.into_iter().enumerate() {
            let key = format!("dial_plans[{i}]");
            if d.name.is_empty() || d.phone_context.is_empty() {
                return Err(invalid(key, "a dial plan needs a name and a phone_context".into()));
            }
            if d.servers.is_empty() {
                return Err(invalid(format!("{key}.servers"), "a dial plan needs at least one UM server".into()));
            }
            let mut servers = Vec::with_capacity(d.servers.len());
            for (j, s) in d.servers.into_iter().enumerate() {
                check_sip_uri(&s.uri).map_err(|r| invalid(format!("{key}.servers[{j}].uri"), r))?;
                let timeout_ms = s.timeout_ms.unwrap_or(DEFAULT_UM_TIMEOUT_MS);
                if !(100..=120_000).contains(&timeout_ms) {
                    return Err(invalid(
                        format!("{key}.servers[{j}].timeout_ms"),
                        format!("{timeout_ms}: must be 100 to 120000"),
                    ));
                }
                // The time to the server's first response: Timer B ends it anyway.
                if let Some(b) = timer_b.filter(|b| u128::from(timeout_ms) > b.as_millis()) {
                    return Err(invalid(
                        format!("{key}.servers[{j}].timeout_ms"),
                        format!(
                            "{timeout_ms}: the time to the UM server's first response is at most 64 × [sip] t1_ms = {} \
                             (Timer B); a server that rings is waited for under [sip] timer_c_ms",
                            b.as_millis()
                        ),
                    ));
                }
                if let Some(v) = s.version.filter(|v| !(1..=99).contains(v)) {
                    return Err(invalid(
                        format!("{key}.servers[{j}].version"),
                        format!(
                            "{v}: an Exchange major version, 1 to 99 (14 for Exchange 2010, 15 for 2013 and later)"
                        ),
                    ));
                }
                servers.push(UmServer { uri: s.uri, timeout_ms, version: s.version });
            }
            let index = dir.dial_plans.len();
            for k in [d.name.to_ascii_lowercase(), d.phone_context.to_ascii_lowercase()] {
                if dir.dial_plan_by_key.insert(k.clone(), index).is_some_and(|other| other != index) {
                    return Err(invalid(
                        key.clone(),
                        format!("name or phone-context `{k}` is used by another dial plan"),
                    ));
                }
            }
            dir.dial_plans.push(DialPlan {
                name: d.name,
                phone_context: d.phone_context,
                servers,
                selection: d.selection,
            });
        }

        Ok(())
    }

    /// A tenant's `users`, after its policies and dial plans; a refused user is
    /// the tenant's error, or (with `refused`) that entry's alone.
    fn users(
        dir: &mut TenantDirectory,
        users: Vec<UserFile>,
        domains: &[String],
        invalid: &Invalid<'_>,
        mut refused: Option<&mut Vec<RefusedEntry>>,
    ) -> Result<(), ConfigError> {
        for (i, u) in users.into_iter().enumerate() {
            let key = format!("users[{i}]");
            let sip = match sip_address(&u.sip, domains) {
                Ok(s) => s,
                Err(r) => refuse!(refused, EntryKind::User, i, invalid(format!("{key}.sip"), r)),
            };
            let number = match &u.line {
                Some(line) => match normalize_number(line) {
                    Some(n) => Some(n),
                    None => refuse!(
                        refused,
                        EntryKind::User,
                        i,
                        invalid(format!("{key}.line"), format!("`{line}` has no E.164 number"))
                    ),
                },
                None => None,
            };
            // Users who share a main number are keyed by their extension.
            let number_key = u.line.as_deref().and_then(number_key);
            if !granted_exists(&dir.hosted_policies, &u.hosted_voicemail_policy) {
                refuse!(
                    refused,
                    EntryKind::User,
                    i,
                    invalid(
                        format!("{key}.hosted_voicemail_policy"),
                        format!(
                            "no hosted voice-mail policy with scope \"user:{}\"",
                            u.hosted_voicemail_policy.unwrap_or_default()
                        ),
                    )
                );
            }
            let eum_plan = match eum_plan(dir, &key, &u.eum, invalid) {
                Ok(plan) => plan,
                Err(e) => refuse!(refused, EntryKind::User, i, e),
            };
            let voicemail = if u.hosted_voicemail {
                VoicemailSetting::Hosted
            } else if !u.eum.is_empty() {
                VoicemailSetting::OnPremises
            } else {
                VoicemailSetting::None
            };
            let index = dir.users.len();
            let mut keys: Vec<String> = std::iter::once(sip.clone()).chain(number_key.clone()).collect();
            // An EUM address holding an E.164 number finds the user by it too.
            for n in u.eum.iter().filter_map(|e| eum_user(e)).filter(|n| n.starts_with('+')) {
                if let Some(n) = normalize_number(n)
                    && !keys.contains(&n)
                {
                    keys.push(n);
                }
            }
            if let Some(k) = keys.iter().find(|k| dir.user_by_key.contains_key(*k)) {
                refuse!(
                    refused,
                    EntryKind::User,
                    i,
                    invalid(key.clone(), format!("`{k}` belongs to another user already"))
                );
            }
            for k in keys {
                dir.user_by_key.insert(k, index);
            }
            if let Some(main) = &number {
                dir.user_by_main_number.entry(main.clone()).and_modify(|e| *e = None).or_insert(Some(index));
            }
            if let Some(plan) = eum_plan {
                // Its extensions in its dial plan: the line's, and any EUM
                // address that is an extension (`eum:4102;phone-context=...`).
                let from_eum =
                    u.eum.iter().filter_map(|e| eum_user(e)).filter(|x| x.bytes().all(|b| b.is_ascii_digit()));
                let mut extensions: Vec<String> = u.line.as_deref().and_then(extension).into_iter().collect();
                extensions.extend(from_eum.map(str::to_owned).filter(|x| !x.is_empty()));
                for ext in extensions {
                    // Another user's too: nobody's (as shared main numbers).
                    let entry = dir.user_by_extension.entry((plan, ext));
                    entry.and_modify(|e| *e = e.filter(|&other| other == index)).or_insert(Some(index));
                }
            }
            dir.users.push(User {
                sip: u.sip,
                line: u.line,
                number,
                site: u.site,
                voicemail,
                hosted_voicemail_policy: u.hosted_voicemail_policy,
                eum: u.eum,
            });
        }

        Ok(())
    }

    /// A tenant's `contacts`, after its users; refused as users are.
    fn contacts(
        dir: &mut TenantDirectory,
        contacts: Vec<ContactFile>,
        domains: &[String],
        invalid: &Invalid<'_>,
        mut refused: Option<&mut Vec<RefusedEntry>>,
    ) -> Result<(), ConfigError> {
        for (i, c) in contacts.into_iter().enumerate() {
            let key = format!("contacts[{i}]");
            let sip = match sip_address(&c.sip, domains) {
                Ok(s) => s,
                Err(r) => refuse!(refused, EntryKind::Contact, i, invalid(format!("{key}.sip"), r)),
            };
            let Some(number) = normalize_number(&c.number) else {
                refuse!(
                    refused,
                    EntryKind::Contact,
                    i,
                    invalid(format!("{key}.number"), format!("`{}` is not an E.164 number", c.number))
                );
            };
            if !granted_exists(&dir.hosted_policies, &c.hosted_voicemail_policy) {
                refuse!(
                    refused,
                    EntryKind::Contact,
                    i,
                    invalid(
                        format!("{key}.hosted_voicemail_policy"),
                        "no hosted voice-mail policy of that name".into()
                    )
                );
            }
            if let Some(plan) = &c.dial_plan
                && dir.dial_plan(plan).is_none()
            {
                refuse!(
                    refused,
                    EntryKind::Contact,
                    i,
                    invalid(format!("{key}.dial_plan"), format!("`{plan}` names no dial plan of the tenant"))
                );
            }
            if c.dial_plan.is_some() && c.hosted_voicemail_policy.is_some() {
                refuse!(
                    refused,
                    EntryKind::Contact,
                    i,
                    invalid(
                        format!("{key}.hosted_voicemail_policy"),
                        "an on-premises contact (with a dial_plan) has no hosted voice-mail policy".into(),
                    )
                );
            }
            let index = dir.contacts.len();
            let keys = [sip, number.clone()];
            if let Some(k) =
                keys.iter().find(|k| dir.user_by_key.contains_key(*k) || dir.contact_by_key.contains_key(*k))
            {
                refuse!(
                    refused,
                    EntryKind::Contact,
                    i,
                    invalid(key.clone(), format!("`{k}` belongs to another user or contact already"))
                );
            }
            for k in keys {
                dir.contact_by_key.insert(k, index);
            }
            dir.contacts.push(Contact {
                sip: c.sip,
                number,
                kind: c.kind,
                site: c.site,
                hosted_voicemail_policy: c.hosted_voicemail_policy,
                dial_plan: c.dial_plan,
            });
        }
        Ok(())
    }
}

/// Whether the hosted voice-mail policy a user or contact is granted (if
/// any) is defined among `policies`.
fn granted_exists(policies: &FxHashMap<Scope, HostedPolicy>, name: &Option<String>) -> bool {
    name.as_ref().is_none_or(|n| policies.contains_key(&Scope::Named(n.clone())))
}

/// How the validation of a tenant's entries makes an error of a key and a reason.
type Invalid<'a> = dyn Fn(String, String) -> ConfigError + 'a;

/// The tenant sections of a directory file, each parsed on its own: a section
/// with a wrong key or type is that tenant's error (keyed `tenants.ID...`),
/// not the file's. The whole file is parsed first, for errors with line
/// numbers; a file that does not parse at all is the file's error.
/// One tenant's section of the directory file: its id, and its parse.
type Section = (String, Result<TenantData, ConfigError>);

/// The directory file of `config`, refused before it is read when it is
/// larger than `directory_max_mib` (and, if it grew meanwhile, once read).
fn read_bounded(config: &RouterConfig) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let file = &config.directory;
    let read_error = |source| ConfigError::Read { file: file.clone(), source };
    let too_large = |bytes: u64| {
        ConfigError::invalid(
            file,
            String::new(),
            format!(
                "{bytes} bytes: larger than directory_max_mib = {} MiB in the configuration",
                config.directory_max_bytes >> 20
            ),
        )
    };
    let mut f = std::fs::File::open(file).map_err(read_error)?;
    let size = f.metadata().map_err(read_error)?.len();
    if size > config.directory_max_bytes {
        return Err(too_large(size));
    }
    let mut text = String::with_capacity(usize::try_from(size).unwrap_or(0));
    (&mut f).take(config.directory_max_bytes + 1).read_to_string(&mut text).map_err(read_error)?;
    if text.len() as u64 > config.directory_max_bytes {
        return Err(too_large(text.len() as u64));
    }
    Ok(text)
}

fn sections(path: &Path, text: &str) -> Result<Vec<Section>, ConfigError> {
    let whole_error = match super::parse_text::<DirectoryFile>(path, text) {
        Ok(file) => return Ok(file.tenants.into_iter().map(|(id, t)| (id, Ok(t))).collect()),
        Err(e) => e,
    };
    #[derive(Deserialize)]
    struct Loose {
        #[serde(default)]
        tenants: BTreeMap<String, serde_json::Value>,
    }
    let Ok(loose) = super::parse_text::<Loose>(path, text) else { return Err(whole_error) };
    Ok(loose
        .tenants
        .into_iter()
        .map(|(id, value)| {
            let parsed = serde_path_to_error::deserialize::<_, TenantData>(value).map_err(|e| {
                let key = format!("tenants.{id}.{}", e.path());
                ConfigError::invalid(path, key, e.into_inner().to_string())
            });
            (id, parsed)
        })
        .collect())
}

/// The directory key of a SIP address or number, or `None` if it is neither:
/// `+14255550100`, or `sip:alice@contoso.com` (lower-case, no port or parameters).
pub fn lookup_key(address: &str) -> Option<String> {
    lookup_key_cow(address).map(Cow::into_owned)
}

/// [`lookup_key`] without allocating when `address` already is a key (a
/// lower-case `sip:user@host`, as policies usually pass it).
fn lookup_key_cow(address: &str) -> Option<Cow<'_, str>> {
    let address = address.trim();
    let bytes = address.as_bytes();
    let is_number = matches!(bytes.first(), Some(b'+')) || address.starts_with("00") || address.starts_with("tel:");
    if is_number {
        return number_key(address).map(Cow::Owned);
    }
    // Fast path: `sip:user@host` with nothing after the host.
    let scheme_len = if bytes.starts_with(b"sip:") { 4 } else { 0 };
    if scheme_len > 0
        && let Some(at) = bytes.iter().position(|&b| b == b'@')
        && at > scheme_len
        && bytes[scheme_len..]
            .iter()
            .all(|&b| b > b' ' && !matches!(b, b';' | b'?' | b':' | b'<' | b'>' | b'"' | b'[' | 0x7f))
        && !bytes.iter().any(u8::is_ascii_uppercase)
    {
        return Some(Cow::Borrowed(address));
    }
    let uri = UriRef::parse(address).ok()?;
    if !uri.is_sip() {
        return uri.number_key().map(Cow::Owned);
    }
    // `sips:` names the same user as `sip:` (only the transport differs).
    let address = uri.address();
    Some(Cow::Owned(match address.strip_prefix("sips:") {
        Some(rest) => format!("sip:{rest}"),
        None => address,
    }))
}

fn sip_address(value: &str, domains: &[String]) -> Result<String, String> {
    let uri = check_sip_uri(value)?;
    if uri.user.is_none() {
        return Err(format!("`{value}` has no user part"));
    }
    if !domains.contains(&uri.host) {
        return Err(format!("`{value}` is not in the tenant's domains ({})", domains.join(", ")));
    }
    Ok(uri.address())
}

/// The dial plan (its index) that a user's EUM addresses name; all must name
/// the same one (a user is in one dial plan), each must have a phone-context
/// that names one of the tenant's.
fn eum_plan(
    dir: &TenantDirectory,
    key: &str,
    eums: &[String],
    invalid: &Invalid<'_>,
) -> Result<Option<usize>, ConfigError> {
    let mut plan: Option<usize> = None;
    for (n, eum) in eums.iter().enumerate() {
        let at = if eums.len() == 1 { format!("{key}.eum") } else { format!("{key}.eum[{n}]") };
        let context = eum_phone_context(eum).map_err(|r| invalid(at.clone(), r))?;
        let Some(this) = dir.dial_plan_by_key.get(&context.to_ascii_lowercase()).copied() else {
            return Err(invalid(at, format!("phone-context `{context}` names no dial plan of the tenant")));
        };
        if plan.is_some_and(|p| p != this) {
            return Err(invalid(
                at,
                format!(
                    "phone-context `{context}` names another dial plan than the first EUM address: a user is in one dial plan"
                ),
            ));
        }
        plan = Some(this);
    }
    Ok(plan)
}

/// The user part of an EUM address: `bob@contoso.com`, an extension `4102`,
/// or a number `+31205550103`.
fn eum_user(eum: &str) -> Option<&str> {
    let rest = eum_rest(eum)?;
    Some(rest.split(';').next().unwrap_or(rest).trim())
}

/// An EUM address without its `eum:` scheme (any case); none when it has another.
fn eum_rest(eum: &str) -> Option<&str> {
    eum.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("eum:")).then(|| &eum[4..])
}

/// The phone-context of an EUM address (`eum:bob@contoso.com;phone-context=DP1.contoso.com`).
pub fn eum_phone_context(eum: &str) -> Result<String, String> {
    let Some(rest) = eum_rest(eum) else { return Err(format!("`{eum}` is not an eum: address")) };
    rest.split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix("phone-context="))
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| format!("`{eum}` has no phone-context"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(dir_text: &str) -> Result<Directory, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("router.toml");
        std::fs::write(
            &config,
            "directory = \"dir.toml\"\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("dir.toml"), dir_text).expect("write");
        Directory::load(&RouterConfig::load(&config).expect("config"))
    }

    #[test]
    fn a_um_servers_timeout_is_the_time_to_its_first_response_within_timer_b() {
        let plan = |ms: u32| {
            let servers = format!("servers = [{{ uri = \"sip:um1.contoso.com\", timeout_ms = {ms} }}]");
            format!("[[tenants.contoso.dial_plans]]\nname = \"DP\"\nphone_context = \"DP\"\n{servers}\n")
        };
        assert!(load(&plan(32_000)).is_ok(), "64 × T1 with the default T1");
        let e = load(&plan(60_000)).expect_err("beyond Timer B").to_string();
        assert!(
            e.contains("dial_plans[0].servers[0].timeout_ms: 60000: the time to the UM server's first response"),
            "{e}"
        );
        assert!(e.contains("32000 (Timer B)"), "{e}");
    }

    const GOOD: &str = r#"
[[tenants.contoso.users]]
sip = "sip:Alice@contoso.com"
line = "tel:+1 425 555 0100;ext=100"
hosted_voicemail = true
eum = "eum:alice@contoso.com;phone-context=DP1.contoso.com"

[[tenants.contoso.contacts]]
sip = "sip:sa@contoso.com"
number = "+14255550199"
kind = "subscriber-access"

[[tenants.contoso.hosted_voicemail_policies]]
scope = "global"
destination = "exap.um.outlook.com"

[[tenants.contoso.dial_plans]]
name = "DP1"
phone_context = "DP1.contoso.com"
servers = [{ uri = "sip:um1.contoso.com" }]
"#;

    #[test]
    fn indexes_users_and_contacts_by_address_and_number() {
        let d = load(GOOD).expect("valid");
        let t = &d.tenants["contoso"];
        let alice = t.user("sip:alice@contoso.com;gruu;opaque=app:voicemail").expect("by sip");
        assert_eq!(alice.voicemail, VoicemailSetting::Hosted, "the hosted flag wins over eum");
        assert_eq!(t.user("tel:+14255550100").map(|u| &u.sip), Some(&alice.sip));
        assert_eq!(t.user("+14255550100").map(|u| &u.sip), Some(&alice.sip));
        assert_eq!(t.user("sip:alice@contoso.com").map(|u| &u.sip), Some(&alice.sip), "the borrowed fast path");
        assert_eq!(t.user("sip:alice@contoso.com:5060").map(|u| &u.sip), Some(&alice.sip));
        assert_eq!(t.user("sips:alice@contoso.com").map(|u| &u.sip), Some(&alice.sip), "sips: is the same user");
        assert_eq!(t.user("sips:Alice@Contoso.com;opaque=app:voicemail").map(|u| &u.sip), Some(&alice.sip));
        assert_eq!(t.contact("+1-425-555-0199").map(|c| c.kind), Some(ContactKind::SubscriberAccess));
        assert_eq!(t.dial_plan("dp1.contoso.com").map(|d| d.servers[0].timeout_ms), Some(DEFAULT_UM_TIMEOUT_MS));
        assert_eq!(t.hosted_policy(&Scope::Global).and_then(|p| p.destination.as_deref()), Some("exap.um.outlook.com"));
    }

    #[test]
    fn users_on_one_main_number_are_told_apart_by_their_extensions() {
        let text = r#"
[[tenants.contoso.users]]
sip = "sip:alice@contoso.com"
line = "tel:+14255550100;ext=100"
eum = "eum:alice@contoso.com;phone-context=DP1.contoso.com"
[[tenants.contoso.users]]
sip = "sip:henry@contoso.com"
line = "tel:+1 425 555 0100;ext=101"
eum = "eum:henry@contoso.com;phone-context=DP1.contoso.com"
[[tenants.contoso.users]]
sip = "sip:ida@contoso.com"
line = "tel:+14255550177"
eum = "eum:ida@contoso.com;phone-context=DP1.contoso.com"
[[tenants.contoso.users]]
sip = "sip:jo@contoso.com"
line = "tel:+14255550188;ext=5"
[[tenants.contoso.dial_plans]]
name = "DP1"
phone_context = "DP1.contoso.com"
servers = [{ uri = "sip:um1.contoso.com" }]
"#;
        let d = load(text).expect("a shared main number with two extensions");
        let t = &d.tenants["contoso"];
        let sip = |a: &str| t.user(a).map(|u| u.sip.as_str());
        assert_eq!(sip("tel:+14255550100;ext=101"), Some("sip:henry@contoso.com"));
        assert_eq!(sip("sip:+14255550100;ext=100@contoso.com;user=phone"), Some("sip:alice@contoso.com"));
        assert_eq!(sip("+1-425-555-0100;ext=101"), Some("sip:henry@contoso.com"));
        assert_eq!(sip("tel:+14255550100;ext=102"), None, "an extension nobody has");
        assert_eq!(sip("sip:+14255550100;ext=102@contoso.com;user=phone"), None);
        assert_eq!(sip("tel:+14255550100"), None, "the main number alone is shared: nobody");
        assert_eq!(sip("tel:+14255550188"), Some("sip:jo@contoso.com"), "a main number one user has");
        // Dialled extensions in a dial plan: by extension, else by the end of the number.
        assert_eq!(sip("sip:101;phone-context=DP1.contoso.com@contoso.com;user=phone"), Some("sip:henry@contoso.com"));
        assert_eq!(sip("sip:101;phone-context=dp1@contoso.com;user=phone"), Some("sip:henry@contoso.com"), "by name");
        assert_eq!(sip("sip:0177;phone-context=DP1.contoso.com@contoso.com;user=phone"), Some("sip:ida@contoso.com"));
        assert_eq!(sip("sip:999;phone-context=DP1.contoso.com@contoso.com;user=phone"), None, "unknown extension");
        assert_eq!(sip("sip:101;phone-context=DP9@contoso.com;user=phone"), None, "unknown dial plan");
        assert_eq!(sip("sip:5;phone-context=DP1.contoso.com@contoso.com;user=phone"), None, "jo is in no dial plan");
        let e = load(&text.replace("ext=101", "ext=100")).expect_err("one extension twice").to_string();
        assert!(e.contains("users[1]") && e.contains("`+14255550100;ext=100` belongs to another user already"), "{e}");
    }

    #[test]
    fn a_call_tries_only_the_highest_exchange_version_in_its_dial_plans_order() {
        let plan = |selection: &str, servers: &str| {
            format!(
                "[[tenants.contoso.dial_plans]]\nname = \"DP\"\nphone_context = \"DP\"\n{selection}servers = [{servers}]\n"
            )
        };
        let mixed = r#"{ uri = "sip:old@x", version = 14 }, { uri = "sip:a@x", version = 15 }, { uri = "sip:none@x" },
                       { uri = "sip:b@x", version = 15 }, { uri = "sip:c@x", version = 15 }"#;
        let uris = |d: &Directory, seed: u64| -> Vec<String> {
            let plan = d.tenants["contoso"].dial_plan("DP").expect("plan");
            plan.call_order(seed, |_| true).iter().map(|s| s.uri.clone()).collect()
        };
        // Ordered: the version-15 servers in list order, whatever the call.
        let d = load(&plan("", mixed)).expect("valid");
        for seed in 0..6 {
            assert_eq!(uris(&d, seed), ["sip:a@x", "sip:b@x", "sip:c@x"], "never a lower version, nor none");
        }
        // Round robin: each call starts at the server its seed picks, the
        // rest follow in list order; over calls every server comes first.
        let d = load(&plan("selection = \"round-robin\"\n", mixed)).expect("valid");
        assert_eq!(uris(&d, 0), ["sip:a@x", "sip:b@x", "sip:c@x"]);
        assert_eq!(uris(&d, 1), ["sip:b@x", "sip:c@x", "sip:a@x"]);
        assert_eq!(uris(&d, 5), ["sip:c@x", "sip:a@x", "sip:b@x"]);
        // A server down: the rotation runs over the others, each starting
        // calls in turn (b's share is not all handed to c).
        let dp = d.tenants["contoso"].dial_plan("DP").expect("plan");
        let firsts: Vec<String> =
            (0..4).map(|seed| dp.call_order(seed, |s| s.uri != "sip:b@x")[0].uri.clone()).collect();
        assert_eq!(firsts, ["sip:a@x", "sip:c@x", "sip:a@x", "sip:c@x"]);
        // No server has a version: all of them, as listed.
        let d = load(&plan("", r#"{ uri = "sip:a@x" }, { uri = "sip:b@x" }"#)).expect("valid");
        assert_eq!(uris(&d, 3), ["sip:a@x", "sip:b@x"]);
        // Refused: a version that is no Exchange version, an unknown selection.
        let e = load(&plan("", r#"{ uri = "sip:a@x", version = 0 }"#)).expect_err("version 0").to_string();
        assert!(e.contains("dial_plans[0].servers[0].version: 0: an Exchange major version"), "{e}");
        let e = load(&plan("selection = \"random\"\n", r#"{ uri = "sip:a@x" }"#)).expect_err("selection").to_string();
        assert!(e.contains("selection") && e.contains("round-robin"), "{e}");
    }

    #[test]
    fn a_user_with_exchange_s_two_eum_addresses_is_found_by_address_line_and_extension() {
        let text = r#"
[[tenants.contoso.users]]
sip = "sip:anna@contoso.com"
line = "tel:+31205550101"
eum = ["eum:anna@contoso.com;phone-context=DP-AMS.contoso.com", "EUM:4102;phone-context=DP-AMS.contoso.com"]
[[tenants.contoso.users]]
sip = "sip:bram@contoso.com"
eum = "eum:4103;phone-context=DP-AMS.contoso.com"
[[tenants.contoso.users]]
sip = "sip:cees@contoso.com"
eum = "eum:+31 20-555 0103;phone-context=DP-AMS.contoso.com"
[[tenants.contoso.users]]
sip = "sip:dirk@contoso.com"
line = "tel:+31205550104;ext=4104"
eum = ["eum:dirk@contoso.com;phone-context=DP-AMS.contoso.com", "eum:4104;phone-context=DP-AMS.contoso.com", "eum:4104;phone-context=DP-AMS.contoso.com"]
[[tenants.contoso.dial_plans]]
name = "DP-AMS"
phone_context = "DP-AMS.contoso.com"
servers = [{ uri = "sip:um1.contoso.com" }]
"#;
        let d = load(text).expect("valid");
        let t = &d.tenants["contoso"];
        let sip = |a: &str| t.user(a).map(|u| u.sip.as_str());
        let dialled = |ext: &str| format!("sip:{ext};phone-context=DP-AMS.contoso.com@contoso.com;user=phone");
        assert_eq!(sip("sip:anna@contoso.com"), Some("sip:anna@contoso.com"));
        assert_eq!(sip("tel:+31205550101"), Some("sip:anna@contoso.com"), "by line");
        assert_eq!(sip(&dialled("4102")), Some("sip:anna@contoso.com"), "by the extension of her second EUM");
        assert_eq!(sip(&dialled("4103")), Some("sip:bram@contoso.com"), "an extension-only EUM");
        assert_eq!(sip("tel:+31205550103"), Some("sip:cees@contoso.com"), "a number EUM finds its user by number");
        // The same extension from the line and twice from EUM addresses is
        // still one user's, not an ambiguous one.
        assert_eq!(sip(&dialled("4104")), Some("sip:dirk@contoso.com"));
        for user in ["sip:anna@contoso.com", "sip:bram@contoso.com", "sip:cees@contoso.com", "sip:dirk@contoso.com"] {
            let u = t.user(user).expect("user");
            assert_eq!(u.voicemail, VoicemailSetting::OnPremises, "{user} is routed by its dial plan");
        }
        assert_eq!(t.user("sip:anna@contoso.com").map(|u| u.eum.len()), Some(2));
        // Two EUM addresses in two dial plans: refused, naming the second.
        let two_plans = text
            .replace("\"EUM:4102;phone-context=DP-AMS.contoso.com\"", "\"eum:4102;phone-context=DP-X\"")
            + "[[tenants.contoso.dial_plans]]\nname = \"DP-X\"\nphone_context = \"DP-X\"\nservers = [{ uri = \"sip:um9.contoso.com\" }]\n";
        let e = load(&two_plans).expect_err("two dial plans").to_string();
        assert!(e.contains("users[0].eum[1]") && e.contains("another dial plan"), "{e}");
        // The directory as a source writes it back in the same forms.
        let written = serde_json::to_string(&t.to_data().users).unwrap_or_default();
        assert!(written.contains(r#""eum":["eum:anna"#) && written.contains(r#""eum":"eum:4103;"#), "{written}");
    }

    #[test]
    fn a_tenant_may_be_defined_in_the_directory_alone() {
        let text = r#"
[tenants.northwind]
domains = ["Northwind.com"]
default_next_hop = "sip:pool.northwind.com"
policy_config = "x"
[[tenants.northwind.users]]
sip = "sip:nina@northwind.com"
"#;
        let d = load(text).expect("a tenant defined here");
        let c = &d.defined["northwind"];
        assert_eq!((c.id.as_str(), c.domains.as_slice()), ("northwind", &["northwind.com".to_owned()][..]));
        assert_eq!(c.default_next_hop.as_deref(), Some("sip:pool.northwind.com"));
        assert_eq!(d.tenants["northwind"].user_count(), 1);
        // Its A/V Edge GRUU, as in router.toml, checked as a URI.
        let gruu = "av_edge_gruu = \"sip:av@northwind.com;gruu;opaque=srvr:MRAS:x\"\npolicy_config";
        let d = load(&text.replace("policy_config", gruu)).expect("with an A/V Edge");
        assert_eq!(
            d.defined["northwind"].av_edge_gruu.as_deref(),
            Some("sip:av@northwind.com;gruu;opaque=srvr:MRAS:x")
        );
        let e = load(&text.replace("policy_config", "av_edge_gruu = \"av.northwind.com\"\npolicy_config"))
            .expect_err("not a URI")
            .to_string();
        assert!(e.contains("tenants.northwind.av_edge_gruu"), "{e}");
        let e = load(&text.replace("domains = [\"Northwind.com\"]", "domains = [\"contoso.com\"]"))
            .expect_err("a domain of another tenant")
            .to_string();
        assert!(e.contains("tenants.northwind.domains[0]: domain `contoso.com` belongs to another tenant"), "{e}");
        let e = load(&text.replace("policy_config", "policy_confg")).expect_err("a typo").to_string();
        assert!(e.contains("tenants.northwind") && e.contains("policy_confg"), "{e}");
        // contoso is defined in the configuration: its section holds data only.
        let e = load("[tenants.contoso]\ndomains = [\"c2.com\"]\n").expect_err("two places").to_string();
        assert!(e.contains("tenants.contoso.domains: tenant `contoso` is defined in"), "{e}");
        // A section for a tenant defined nowhere says where to define it.
        let e = load("[[tenants.fabrikam.users]]\nsip = \"sip:a@fabrikam.com\"\n").expect_err("nowhere").to_string();
        assert!(e.contains("define it there or here (with `domains`)"), "{e}");
    }

    #[test]
    fn refuses_invalid_entries_with_key_and_reason() {
        let e =
            load("[[tenants.fabrikam.users]]\nsip = \"sip:a@fabrikam.com\"\n").expect_err("unknown tenant").to_string();
        assert!(e.contains("tenants.fabrikam: no tenant `fabrikam`"), "{e}");
        let e =
            load("[[tenants.contoso.users]]\nsip = \"sip:a@fabrikam.com\"\n").expect_err("foreign domain").to_string();
        assert!(e.contains("tenants.contoso.users[0].sip") && e.contains("not in the tenant's domains"), "{e}");
        let e = load(
            "[[tenants.contoso.users]]\nsip = \"sip:a@contoso.com\"\neum = \"eum:a@contoso.com;phone-context=nope\"\n",
        )
        .expect_err("unknown dial plan")
        .to_string();
        assert!(e.contains("users[0].eum") && e.contains("names no dial plan"), "{e}");
        let e = load("[[tenants.contoso.users]]\nsip = \"sip:a@contoso.com\"\n[[tenants.contoso.users]]\nsip = \"sip:A@contoso.com\"\n")
            .expect_err("duplicate")
            .to_string();
        assert!(e.contains("users[1]") && e.contains("belongs to another user"), "{e}");
        let e =
            load("[[tenants.contoso.contacts]]\nsip = \"sip:aa@contoso.com\"\nnumber = \"+1\"\nkind = \"operator\"\n")
                .expect_err("bad kind")
                .to_string();
        assert!(e.contains("tenants.contoso.contacts[0].kind"), "{e}");
    }

    #[test]
    fn reads_json_directories_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("router.toml");
        std::fs::write(
            &config,
            "directory = \"dir.json\"\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n",
        )
        .expect("write");
        let json =
            r#"{"tenants": {"contoso": {"users": [{"sip": "sip:alice@contoso.com", "hosted_voicemail": true}]}}}"#;
        std::fs::write(dir.path().join("dir.json"), json).expect("write");
        let d = Directory::load(&RouterConfig::load(&config).expect("config")).expect("valid JSON");
        assert_eq!(
            d.tenants["contoso"].user("sip:alice@contoso.com").map(|u| u.voicemail),
            Some(VoicemailSetting::Hosted)
        );
        std::fs::write(dir.path().join("dir.json"), r#"{"tenants": {"contoso": {"users": [{"sip": 7}]}}}"#)
            .expect("write");
        let e = Directory::load(&RouterConfig::load(&config).expect("config")).expect_err("bad type").to_string();
        assert!(e.contains("dir.json: tenants.contoso.users[0].sip: invalid type"), "{e}");
    }

    #[test]
    fn normalizes_numbers_like_the_sdk() {
        assert_eq!(normalize_number("tel:+1 (425) 555-0100;ext=1").as_deref(), Some("+14255550100"));
        assert_eq!(normalize_number("0044 20"), Some("+4420".into()));
        assert_eq!(normalize_number("5550100"), None);
        assert_eq!(normalize_number("+"), None);
    }
}
