//! Example policy: the standard decision, adjusted. Calls from VIP callers try
//! a dedicated UM server first and then the standard targets, with a header
//! telling the UM server why; every other call is left exactly as the
//! standard algorithm decides.
//!
//! `policy_config`: `server=<SIP URI>; callers=<SIP address>, <SIP address>, ...`
//! (`server=sip:vip-um.contoso.com;transport=tls; callers=sip:ceo@contoso.com`).
//! The server's URI may hold `;` parameters: everything after `server=` up to
//! `; callers=` is the URI.

use std::cell::RefCell;

use exum_policy_sdk::{Decision, Failure, Policy, Request, Target, parse_uri, standard};

thread_local! {
    /// The VIP server and callers, from `init`.
    static CONFIG: RefCell<Option<(String, Vec<String>)>> = const { RefCell::new(None) };
}

/// The VIP-first policy.
pub struct VipFirst;

/// Parses `server=...; callers=...`.
fn parse(config: &str) -> Result<(String, Vec<String>), String> {
    let (server, callers) =
        config.split_once("callers=").ok_or("policy_config needs `server=<SIP URI>; callers=<addresses>`")?;
    let server = server.trim().strip_prefix("server=").ok_or("policy_config must start with `server=`")?;
    let server = server.trim().trim_end_matches(';').trim();
    let uri = parse_uri(server).ok_or_else(|| format!("server: `{server}` is not a SIP URI"))?;
    if uri.scheme != "sip" && uri.scheme != "sips" {
        return Err(format!("server: `{server}` is not a SIP URI"));
    }
    let callers = callers
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| parse_uri(c).map(|u| u.address()).ok_or_else(|| format!("callers: `{c}` is not a SIP address")))
        .collect::<Result<Vec<_>, _>>()?;
    if callers.is_empty() {
        return Err("callers: list at least one SIP address".into());
    }
    Ok((server.to_owned(), callers))
}

impl Policy for VipFirst {
    fn init(config: &str) -> Result<(), String> {
        let parsed = parse(config)?;
        CONFIG.with(|c| *c.borrow_mut() = Some(parsed));
        Ok(())
    }

    fn route(req: &Request) -> Decision {
        let decision = standard::route(req);
        let vip_server = CONFIG.with(|c| {
            let c = c.borrow();
            let (server, callers) = c.as_ref()?;
            callers.contains(&req.from().address()).then(|| server.clone())
        });
        match vip_server {
            Some(server) => decision.map_forward(|f| f.first(Target::new(&server)).add_header("X-Exum-Vip", "yes")),
            None => decision,
        }
    }

    fn on_failure(req: &Request, failure: &Failure) -> Decision {
        standard::on_failure(req, failure)
    }
}

exum_policy_sdk::export_policy!(VipFirst);

#[cfg(test)]
mod tests {
    use exum_policy_sdk::testing::{TestHost, invite};
    use exum_policy_sdk::{Decision, Policy};

    use super::VipFirst;

    const CONFIG: &str =
        "server=sip:vip-um.contoso.com;transport=tls; callers=sip:ceo@contoso.com, sip:cfo@contoso.com";

    fn host() -> TestHost {
        TestHost::new("contoso")
            .on_premises_user("sip:bob@contoso.com", "eum:bob@contoso.com;phone-context=DP1.contoso.com")
            .dial_plan("DP1", "DP1.contoso.com", &[("sip:um1.contoso.com;transport=tls", 3000)])
    }

    #[test]
    fn vip_callers_try_the_vip_server_first_then_the_standard_targets() {
        host().install();
        VipFirst::init(CONFIG).expect("config");
        let req = invite("sip:bob@contoso.com;opaque=app:voicemail").from("sip:ceo@contoso.com").build();
        let Decision::Forward(f) = VipFirst::route(&req) else { panic!("a forward") };
        let targets: Vec<&str> = f.targets.iter().map(|t| t.uri.as_str()).collect();
        assert_eq!(targets, ["sip:vip-um.contoso.com;transport=tls", "sip:um1.contoso.com;transport=tls"]);
        assert!(f.add_headers.iter().any(|h| h.name == "X-Exum-Vip"));
    }

    #[test]
    fn everyone_else_gets_the_standard_decision_unchanged() {
        host().install();
        VipFirst::init(CONFIG).expect("config");
        let req = invite("sip:bob@contoso.com;opaque=app:voicemail").from("sip:z@fabrikam.com").build();
        assert_eq!(VipFirst::route(&req), exum_policy_sdk::standard::route(&req));
        let unknown = invite("sip:nobody@contoso.com;opaque=app:voicemail").from("sip:ceo@contoso.com").build();
        assert!(matches!(VipFirst::route(&unknown), Decision::Reject(r) if r.code == 404));
    }

    #[test]
    fn a_bad_configuration_is_refused_with_the_reason() {
        assert!(VipFirst::init("callers=sip:a@b.com").expect_err("no server").contains("server="));
        assert!(VipFirst::init("server=nope; callers=sip:a@b.com").expect_err("bad uri").contains("not a SIP URI"));
        assert!(VipFirst::init("server=sip:vip.example.com; callers=").expect_err("none").contains("at least one"));
    }
}
