//! How an LDAP entry maps to a directory user or contact, with the attributes
//! Lync and Exchange keep in Active Directory (each overridable, see
//! [`crate::control::ldap::Attributes`]).

use ldap3::SearchEntry;

use crate::control::directory::{ContactFile, ContactKind, UserFile, eum_phone_context};
use crate::control::ldap::LdapSettings;

/// What one entry is for the router.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Mapped {
    /// A user.
    User(UserFile),
    /// An Exchange UM contact.
    Contact(ContactFile),
    /// Not routed: disabled for Lync (`msRTCSIP-UserEnabled` FALSE).
    Disabled,
}

/// The attributes to ask for.
pub fn wanted(s: &LdapSettings) -> Vec<String> {
    let a = &s.attributes;
    let mut out = vec![
        "objectClass".to_owned(),
        a.sip.clone(),
        a.line.clone(),
        a.enabled.clone(),
        a.voicemail_settings.clone(),
        a.proxy_addresses.clone(),
        a.hosted_voicemail_policy.clone(),
        a.contact_kind.clone(),
        a.changed.clone(),
    ];
    out.extend(a.site.clone());
    out
}

/// The values of attribute `name` (names are case-insensitive).
pub fn values<'e>(entry: &'e SearchEntry, name: &str) -> &'e [String] {
    entry.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map_or(&[][..], |(_, v)| v.as_slice())
}

fn first(entry: &SearchEntry, name: &str) -> Option<String> {
    values(entry, name).first().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The first `OU=` of a DN (`CN=Bob,OU=Redmond,DC=contoso,DC=com` → `Redmond`).
fn first_ou(dn: &str) -> Option<String> {
    dn.split(',').map(str::trim).find_map(|rdn| {
        let (k, v) = rdn.split_once('=')?;
        k.trim().eq_ignore_ascii_case("ou").then(|| v.trim().to_owned())
    })
}

/// Maps `entry`; an entry that cannot be a user or contact (no SIP address) is
/// an error naming why. What the directory's validation refuses (a SIP address
/// outside the tenant's domains, an EUM address naming no dial plan ...) is
/// found later, entry by entry.
pub fn map(entry: &SearchEntry, s: &LdapSettings) -> Result<Mapped, String> {
    let a = &s.attributes;
    if let Some(enabled) = first(entry, &a.enabled)
        && enabled.eq_ignore_ascii_case("false")
    {
        return Ok(Mapped::Disabled);
    }
    let Some(raw) = first(entry, &a.sip) else {
        return Err(format!("no {} (SIP address)", a.sip));
    };
    let sip = match raw.split_once(':') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sip") => format!("sip:{rest}"),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("sips") => raw.clone(),
        _ => format!("sip:{raw}"),
    };
    let line = first(entry, &a.line);
    let site = match &a.site {
        Some(attr) => first(entry, attr),
        None if s.site_from_ou => first_ou(&entry.dn),
        None => None,
    };
    let hosted = values(entry, &a.voicemail_settings).iter().any(|v| {
        let v = v.to_ascii_lowercase().replace(' ', "");
        v.contains("exchangehostedvoicemail=1") || v.contains("cshostedvoicemail=1")
    });
    // Every EUM proxy address: Exchange writes one with the SIP address and
    // one with the extension (or number) for a user of a SIP URI dial plan.
    let eum: Vec<String> = values(entry, &a.proxy_addresses)
        .iter()
        .filter_map(|v| {
            let (scheme, rest) = v.trim().split_once(':')?;
            scheme.eq_ignore_ascii_case("eum").then(|| format!("eum:{rest}"))
        })
        .collect();
    let key = &a.hosted_voicemail_policy_key;
    let policy = values(entry, &a.hosted_voicemail_policy).iter().find_map(|v| {
        if key.is_empty() {
            return Some(v.trim().to_owned());
        }
        let (k, name) = v.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| name.trim().to_owned())
    });
    let is_contact = values(entry, "objectClass").iter().any(|c| c.eq_ignore_ascii_case(&a.contact_class));
    if is_contact {
        let Some(number) = line else {
            return Err(format!("a contact without {} (its number)", a.line));
        };
        let kind = if values(entry, &a.contact_kind).iter().any(|v| v.to_ascii_lowercase().contains("auto attendant")) {
            ContactKind::AutoAttendant
        } else {
            ContactKind::SubscriberAccess
        };
        // An on-premises contact belongs to the dial plan of its EUM address.
        let dial_plan = match eum.first() {
            Some(e) if !hosted => Some(eum_phone_context(e)?),
            _ => None,
        };
        return Ok(Mapped::Contact(ContactFile {
            sip,
            number,
            kind,
            site,
            hosted_voicemail_policy: policy,
            dial_plan,
        }));
    }
    Ok(Mapped::User(UserFile { sip, line, site, hosted_voicemail: hosted, hosted_voicemail_policy: policy, eum }))
}

/// One line describing how an entry maps, for `exum-router ldap-check`.
pub fn describe(mapped: &Result<Mapped, String>) -> String {
    match mapped {
        Err(e) => format!("refused: {e}"),
        Ok(Mapped::Disabled) => "disabled for Lync: not routed".to_owned(),
        Ok(Mapped::User(u)) => {
            let mode = if u.hosted_voicemail {
                format!(
                    "hosted voice mail{}",
                    u.hosted_voicemail_policy.as_deref().map(|p| format!(" (policy {p})")).unwrap_or_default()
                )
            } else if let Some(eum) = u.eum.first() {
                format!("on-premises, dial plan {}", eum_phone_context(eum).unwrap_or_else(|e| format!("? ({e})")))
            } else {
                "not enabled for UM".to_owned()
            };
            format!(
                "user {}{}{}: {mode}",
                u.sip,
                u.line.as_deref().map(|l| format!(", line {l}")).unwrap_or_default(),
                u.site.as_deref().map(|s| format!(", site {s}")).unwrap_or_default()
            )
        }
        Ok(Mapped::Contact(c)) => format!(
            "contact {} {} ({:?}){}",
            c.sip,
            c.number,
            c.kind,
            c.dial_plan.as_deref().map(|d| format!(", dial plan {d}")).unwrap_or_else(|| ", hosted".to_owned())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings() -> LdapSettings {
        let file: crate::control::ldap::LdapFile =
            toml::from_str("uri = \"ldap://127.0.0.1\"\nbase_dn = \"dc=x\"\nsite_from_ou = true\n").expect("valid");
        crate::control::ldap::settings(file, "tenant[0].ldap", std::path::Path::new(".")).expect("valid")
    }

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> SearchEntry {
        let attrs: HashMap<String, Vec<String>> =
            attrs.iter().map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect())).collect();
        SearchEntry { dn: dn.to_owned(), attrs, bin_attrs: HashMap::new() }
    }

    #[test]
    fn lync_and_exchange_attributes_make_users_of_the_three_modes() {
        let s = settings();
        let hosted = entry(
            "CN=Alice,OU=Redmond,DC=contoso,DC=com",
            &[
                ("objectClass", &["top", "user"]),
                ("msRTCSIP-PrimaryUserAddress", &["SIP:alice@contoso.com"]),
                ("msrtcsip-line", &["tel:+14255550100;ext=100"]),
                ("msRTCSIP-UserEnabled", &["TRUE"]),
                ("msExchUCVoiceMailSettings", &["ExchangeHostedVoiceMail=1", "CsHostedVoiceMail=1"]),
                ("msRTCSIP-UserPolicies", &["HostedVoicemailPolicy=pilot"]),
            ],
        );
        let Ok(Mapped::User(u)) = map(&hosted, &s) else { panic!("a user") };
        assert_eq!(
            (
                u.sip.as_str(),
                u.line.as_deref(),
                u.site.as_deref(),
                u.hosted_voicemail,
                u.hosted_voicemail_policy.as_deref()
            ),
            ("sip:alice@contoso.com", Some("tel:+14255550100;ext=100"), Some("Redmond"), true, Some("pilot"))
        );
        let onprem = entry(
            "CN=Bob,OU=Paris,DC=contoso,DC=com",
            &[
                ("msRTCSIP-PrimaryUserAddress", &["sip:bob@contoso.com"]),
                ("proxyAddresses", &["SMTP:bob@contoso.com", "EUM:bob@contoso.com;phone-context=DP-Paris.contoso.com"]),
            ],
        );
        let Ok(Mapped::User(u)) = map(&onprem, &s) else { panic!("a user") };
        assert_eq!(u.eum, ["eum:bob@contoso.com;phone-context=DP-Paris.contoso.com"]);
        assert!(!u.hosted_voicemail);
        let disabled =
            entry("CN=C,DC=x", &[("msRTCSIP-PrimaryUserAddress", &["sip:c@x"]), ("msRTCSIP-UserEnabled", &["FALSE"])]);
        assert_eq!(map(&disabled, &s), Ok(Mapped::Disabled));
        assert!(map(&entry("CN=D,DC=x", &[]), &s).is_err_and(|e| e.contains("msRTCSIP-PrimaryUserAddress")));
        let aa = entry(
            "CN=AA,OU=Redmond,DC=contoso,DC=com",
            &[
                ("objectClass", &["top", "contact"]),
                ("msRTCSIP-PrimaryUserAddress", &["sip:aa@contoso.com"]),
                ("msRTCSIP-Line", &["tel:+14255550198"]),
                ("description", &["Exchange UM auto attendant"]),
                ("proxyAddresses", &["eum:aa@contoso.com;phone-context=DP-Redmond.contoso.com"]),
            ],
        );
        let Ok(Mapped::Contact(c)) = map(&aa, &s) else { panic!("a contact") };
        assert_eq!((c.kind, c.dial_plan.as_deref()), (ContactKind::AutoAttendant, Some("DP-Redmond.contoso.com")));
    }
}
