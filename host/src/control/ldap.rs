//! A tenant's Active Directory (or any LDAP directory) as the source of its
//! users and contacts: `[tenant.ldap]` (or `ldap = {...}` in a tenant defined
//! in the directory). Per tenant, because a hosting provider's tenants each
//! have their own forest; dial plans, hosted voice-mail policies and the
//! hosting provider stay in the directory (file or database), since they are
//! Lync configuration, not AD data.
//!
//! ```toml
//! [tenant.ldap]
//! uri = "ldaps://dc1.contoso.com"          # or ldap://... with starttls = true
//! ca = "contoso-ca.pem"                    # the CA of the server's certificate
//! bind_dn = "CN=exum-reader,OU=Service Accounts,DC=contoso,DC=com"
//! password_file = "contoso-ldap.secret"    # or password_env = "CONTOSO_LDAP_PASSWORD"
//! base_dn = "DC=contoso,DC=com"
//! filter = "(msRTCSIP-PrimaryUserAddress=*)"
//! page_size = 500
//! poll_interval_ms = 30000                 # changed entries (by `changed` attribute)
//! full_sync_interval_ms = 900000           # everything (deletions)
//! site_from_ou = true                      # or [tenant.ldap.attributes] site = "..."
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The attributes an entry is read from; each overridable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Attributes {
    /// The SIP address (`msRTCSIP-PrimaryUserAddress`).
    pub sip: String,
    /// The line URI (`msRTCSIP-Line`).
    pub line: String,
    /// Enabled for Lync (`msRTCSIP-UserEnabled`, `TRUE`/`FALSE`); an entry
    /// without it is taken as enabled, one with `FALSE` is not routed.
    pub enabled: String,
    /// Voice-mail settings (`msExchUCVoiceMailSettings`): a value
    /// `ExchangeHostedVoiceMail=1` or `CsHostedVoiceMail=1` marks hosted voice mail.
    pub voicemail_settings: String,
    /// Addresses (`proxyAddresses`): an `eum:` one is the on-premises UM
    /// address with its dial plan's phone-context.
    pub proxy_addresses: String,
    /// The granted hosted voice-mail policy (`msRTCSIP-UserPolicies`): a value
    /// `<hosted_voicemail_policy_key>=<name>`, or the whole value when the key is empty.
    pub hosted_voicemail_policy: String,
    /// The key of that value (`HostedVoicemailPolicy`).
    pub hosted_voicemail_policy_key: String,
    /// The site (none by default: see `site_from_ou`).
    pub site: Option<String>,
    /// What makes an entry a contact rather than a user: this objectClass (`contact`).
    pub contact_class: String,
    /// A contact's kind (`description`): a value containing "auto attendant"
    /// (any case) is an auto attendant, any other a subscriber access.
    pub contact_kind: String,
    /// The attribute polled for changes (`modifyTimestamp`; `whenChanged` in AD).
    pub changed: String,
}

impl Default for Attributes {
    fn default() -> Self {
        Attributes {
            sip: "msRTCSIP-PrimaryUserAddress".into(),
            line: "msRTCSIP-Line".into(),
            enabled: "msRTCSIP-UserEnabled".into(),
            voicemail_settings: "msExchUCVoiceMailSettings".into(),
            proxy_addresses: "proxyAddresses".into(),
            hosted_voicemail_policy: "msRTCSIP-UserPolicies".into(),
            hosted_voicemail_policy_key: "HostedVoicemailPolicy".into(),
            site: None,
            contact_class: "contact".into(),
            contact_kind: "description".into(),
            changed: "modifyTimestamp".into(),
        }
    }
}

/// A tenant's LDAP source, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct LdapSettings {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub uri: String,
    /// StartTLS on an `ldap://` connection.
    pub starttls: bool,
    /// The CA that verifies the server's certificate (TLS uses the machine's
    /// roots otherwise... none: a CA is required for TLS).
    pub ca: Option<PathBuf>,
    /// The bind DN (empty: anonymous).
    pub bind_dn: String,
    /// The bind password, read from `password_file` or `password_env` at load;
    /// never printed.
    pub password: String,
    /// Where the search starts.
    pub base_dn: String,
    /// The search filter.
    pub filter: String,
    /// Entries per page of the paged search.
    pub page_size: i32,
    /// How often changed entries are read.
    pub poll_interval: Duration,
    /// How often every entry is read again (to see deletions).
    pub full_sync_interval: Duration,
    /// The site is the first OU of the entry's DN.
    pub site_from_ou: bool,
    /// The attribute names.
    pub attributes: Attributes,
    /// How long connecting and binding may take.
    pub timeout: Duration,
    /// The entries last read are kept on disk (`ldap.snapshot` in
    /// `policy_cache`) and served, stale, when the server cannot be reached
    /// at start (`snapshot`, true).
    pub snapshot: bool,
}

impl std::fmt::Debug for LdapSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSettings")
            .field("uri", &self.uri)
            .field("starttls", &self.starttls)
            .field("bind_dn", &self.bind_dn)
            .field("base_dn", &self.base_dn)
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LdapFile {
    uri: String,
    #[serde(default)]
    starttls: bool,
    ca: Option<PathBuf>,
    #[serde(default)]
    bind_dn: String,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    base_dn: String,
    filter: Option<String>,
    page_size: Option<i32>,
    poll_interval_ms: Option<u64>,
    full_sync_interval_ms: Option<u64>,
    #[serde(default)]
    site_from_ou: bool,
    #[serde(default)]
    attributes: Attributes,
    timeout_ms: Option<u64>,
    snapshot: Option<bool>,
}

/// Validates `[tenant.ldap]`; `key` names it for errors, `base` is the folder
/// of the file it is in (for `ca` and `password_file`).
pub(crate) fn settings(file: LdapFile, key: &str, base: &Path) -> Result<LdapSettings, (String, String)> {
    let k = |field: &str| format!("{key}.{field}");
    let tls = file.uri.starts_with("ldaps://");
    if !tls && !file.uri.starts_with("ldap://") {
        return Err((k("uri"), format!("`{}`: expected ldap://host[:port] or ldaps://host[:port]", file.uri)));
    }
    if tls && file.starttls {
        return Err((k("starttls"), "an ldaps:// connection is TLS already".into()));
    }
    let ca = file.ca.map(|c| base.join(c));
    if (tls || file.starttls) && ca.is_none() {
        return Err((k("ca"), "required with TLS: the CA that signed the server's certificate".into()));
    }
    if let Some(c) = &ca
        && !c.is_file()
    {
        return Err((k("ca"), format!("{}: no such file", c.display())));
    }
    let password = match (file.password_file, file.password_env) {
        (Some(_), Some(_)) => return Err((k("password_file"), "give password_file or password_env, not both".into())),
        (Some(p), None) => {
            let path = base.join(p);
            let text =
                std::fs::read_to_string(&path).map_err(|e| (k("password_file"), format!("{}: {e}", path.display())))?;
            text.trim_end_matches(['\r', '\n']).to_owned()
        }
        (None, Some(var)) => std::env::var(&var)
            .map_err(|_| (k("password_env"), format!("the environment variable `{var}` is not set (or not UTF-8)")))?,
        (None, None) if file.bind_dn.is_empty() => String::new(),
        (None, None) => return Err((k("password_file"), "required with a bind_dn (or password_env)".into())),
    };
    if file.base_dn.is_empty() {
        return Err((k("base_dn"), "required".into()));
    }
    let filter = file.filter.unwrap_or_else(|| format!("({}=*)", file.attributes.sip));
    if !(filter.starts_with('(') && filter.ends_with(')')) {
        return Err((k("filter"), format!("`{filter}`: an LDAP filter is parenthesised")));
    }
    let page_size = file.page_size.unwrap_or(500);
    if !(1..=10_000).contains(&page_size) {
        return Err((k("page_size"), format!("{page_size}: must be 1 to 10000")));
    }
    let poll = file.poll_interval_ms.unwrap_or(30_000);
    if !(100..=86_400_000).contains(&poll) {
        return Err((k("poll_interval_ms"), format!("{poll}: must be 100 to 86400000")));
    }
    let full = file.full_sync_interval_ms.unwrap_or(900_000);
    if full < poll {
        return Err((k("full_sync_interval_ms"), format!("{full}: must be at least poll_interval_ms ({poll})")));
    }
    if file.site_from_ou && file.attributes.site.is_some() {
        return Err((k("site_from_ou"), "give site_from_ou or attributes.site, not both".into()));
    }
    Ok(LdapSettings {
        uri: file.uri,
        starttls: file.starttls,
        ca,
        bind_dn: file.bind_dn,
        password,
        base_dn: file.base_dn,
        filter,
        page_size,
        poll_interval: Duration::from_millis(poll),
        full_sync_interval: Duration::from_millis(full),
        site_from_ou: file.site_from_ou,
        attributes: file.attributes,
        timeout: Duration::from_millis(file.timeout_ms.unwrap_or(5000)),
        snapshot: file.snapshot.unwrap_or(true),
    })
}
