//! Example policy: a pilot group of named users goes to hosted voice mail while
//! the rest of the tenant stays on-premises, without touching the directory.
//!
//! `policy_config` lists the pilot users' SIP addresses, comma-separated:
//! `policy_config = "sip:alice@contoso.com, sip:dave@contoso.com"`.

use std::cell::RefCell;

use exum_policy_sdk::{Decision, Level, Policy, Request, host, parse_uri, routing};

thread_local! {
    /// The pilot users' addresses, from `init`. One instance serves one thread.
    static PILOTS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// The pilot-group policy.
pub struct PilotGroup;

impl Policy for PilotGroup {
    fn init(config: &str) -> Result<(), String> {
        let mut pilots = Vec::new();
        for entry in config.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let uri = parse_uri(entry).ok_or_else(|| format!("`{entry}` is not a SIP address"))?;
            pilots.push(uri.address());
        }
        if pilots.is_empty() {
            return Err("policy_config must list at least one pilot user's SIP address".into());
        }
        PILOTS.with(|p| *p.borrow_mut() = pilots);
        Ok(())
    }

    fn route(req: &Request) -> Decision {
        let ruri = req.request_uri();
        if !ruri.is_voicemail() || !PILOTS.with(|p| p.borrow().contains(&ruri.address())) {
            return Decision::Standard;
        }
        let site = host::lookup_user(&ruri.address()).and_then(|u| u.site);
        host::log(Level::Debug, &format!("pilot user {} goes to hosted voice mail", ruri.address()));
        match routing::hosted_forward(ruri, None, site.as_deref()) {
            Ok(forward) => Decision::Forward(forward),
            Err(reject) => reject,
        }
    }
}

exum_policy_sdk::export_policy!(PilotGroup);

#[cfg(test)]
mod tests {
    use exum_policy_sdk::testing::{TestHost, invite};
    use exum_policy_sdk::{Decision, Policy, PolicyScope};

    use super::PilotGroup;

    fn setup() {
        TestHost::new("contoso")
            .edge("sip:edge.contoso.com:5061;transport=tls")
            .on_premises_user("sip:alice@contoso.com", "eum:alice@contoso.com;phone-context=DP1.contoso.com")
            .on_premises_user("sip:bob@contoso.com", "eum:bob@contoso.com;phone-context=DP1.contoso.com")
            .hosted_policy(PolicyScope::Global, Some("exap.um.outlook.com"), &["contoso.onmicrosoft.com"])
            .install();
        PilotGroup::init("sip:Alice@contoso.com").expect("valid config");
    }

    #[test]
    fn pilot_user_goes_to_hosted_voicemail() {
        setup();
        let Decision::Forward(f) = PilotGroup::route(&invite("sip:alice@contoso.com;opaque=app:voicemail").build())
        else {
            panic!("expected forward");
        };
        assert_eq!(f.targets[0].uri, "sip:edge.contoso.com:5061;transport=tls");
        assert!(f.request_uri.as_deref().is_some_and(|u| u.contains("ms-destination=exap.um.outlook.com")));
    }

    #[test]
    fn everyone_else_follows_the_standard_algorithm() {
        setup();
        assert_eq!(PilotGroup::route(&invite("sip:bob@contoso.com;opaque=app:voicemail").build()), Decision::Standard);
        assert_eq!(
            PilotGroup::route(&invite("sip:alice@contoso.com").build()),
            Decision::Standard,
            "not voice-mail-bound"
        );
    }

    #[test]
    fn refuses_an_empty_or_invalid_config() {
        assert!(PilotGroup::init("").is_err());
        assert!(PilotGroup::init("alice").is_err());
    }
}
