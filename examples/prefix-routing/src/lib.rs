//! Example policy: calls to numbers with a given prefix go to a chosen on-premises
//! dial plan or to a chosen hosted provider; everything else follows the standard
//! algorithm. The longest matching prefix wins.
//!
//! `policy_config` is `prefix=route` pairs separated by `;`, a route being
//! `dial-plan:NAME` or `hosted:FQDN`:
//! `+4420=dial-plan:DP-London; +1425=hosted:exap.um.outlook.com`.

use std::cell::RefCell;

use exum_policy_sdk::{Decision, Forward, Policy, Request, Target, host, routing};

/// Where a prefix sends its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The UM servers of this on-premises dial plan (name or phone-context).
    DialPlan(String),
    /// This hosted UM service (FQDN), through the tenant's edge.
    Hosted(String),
}

thread_local! {
    static PREFIXES: RefCell<Vec<(String, Route)>> = const { RefCell::new(Vec::new()) };
}

/// Parses `policy_config`, longest prefix first.
pub fn parse(config: &str) -> Result<Vec<(String, Route)>, String> {
    let mut out = Vec::new();
    for pair in config.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (prefix, route) = pair.split_once('=').ok_or_else(|| format!("`{pair}`: expected prefix=route"))?;
        let prefix = prefix.trim();
        if !prefix.starts_with('+') || prefix.len() < 2 || !prefix[1..].bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{prefix}` is not an E.164 prefix (+ and digits)"));
        }
        let route = match route.trim().split_once(':') {
            Some(("dial-plan", name)) if !name.is_empty() => Route::DialPlan(name.to_owned()),
            Some(("hosted", fqdn)) if !fqdn.is_empty() => Route::Hosted(fqdn.to_owned()),
            _ => return Err(format!("`{route}`: expected dial-plan:NAME or hosted:FQDN")),
        };
        out.push((prefix.to_owned(), route));
    }
    out.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    Ok(out)
}

/// The prefix-routing policy.
pub struct PrefixRouting;

impl Policy for PrefixRouting {
    fn init(config: &str) -> Result<(), String> {
        let prefixes = parse(config)?;
        PREFIXES.with(|p| *p.borrow_mut() = prefixes);
        Ok(())
    }

    fn route(req: &Request) -> Decision {
        let ruri = req.request_uri();
        // The called number: in the Request-URI, or the called user's line.
        let number = ruri.number().or_else(|| host::lookup_user(&ruri.address()).and_then(|u| u.number));
        let Some(number) = number else {
            return Decision::Standard;
        };
        let Some(route) = PREFIXES.with(|p| {
            p.borrow().iter().find(|(prefix, _)| number.starts_with(prefix.as_str())).map(|(_, r)| r.clone())
        }) else {
            return Decision::Standard;
        };
        match route {
            Route::DialPlan(name) => {
                match host::lookup_dial_plan(&name).and_then(|plan| routing::dial_plan_forward(req, &plan)) {
                    Some(forward) => Decision::Forward(forward),
                    None => Decision::Standard,
                }
            }
            Route::Hosted(fqdn) => {
                let mut ruri: exum_policy_sdk::Uri = ruri.clone();
                ruri.params.retain(|p| p.name == "opaque" || p.name == "user");
                ruri.set_param("ms-destination", Some(&fqdn));
                let next_hop = host::settings().edge.unwrap_or_else(|| format!("sip:{fqdn};transport=tls"));
                Decision::Forward(Forward::to(vec![Target::new(&next_hop)]).with_request_uri(ruri))
            }
        }
    }
}

exum_policy_sdk::export_policy!(PrefixRouting);

#[cfg(test)]
mod tests {
    use exum_policy_sdk::testing::{TestHost, invite};
    use exum_policy_sdk::{Decision, Policy};

    use super::{PrefixRouting, Route, parse};

    fn setup() {
        TestHost::new("contoso")
            .dial_plan("DP-London", "DP-London.contoso.com", &[("sip:um-lon.contoso.com;transport=tcp", 2000)])
            .install();
        PrefixRouting::init("+44=hosted:eu.um.example.net; +4420=dial-plan:DP-London").expect("valid config");
    }

    #[test]
    fn longest_prefix_picks_the_dial_plan() {
        setup();
        let Decision::Forward(f) =
            PrefixRouting::route(&invite("sip:+442079460000@contoso.com;user=phone").from("sip:c@x.com").build())
        else {
            panic!("expected forward");
        };
        assert_eq!(f.targets[0].uri, "sip:um-lon.contoso.com;transport=tcp");
        assert_eq!(f.add_headers[0].name, "Diversion");
    }

    #[test]
    fn shorter_prefix_picks_the_provider() {
        setup();
        let Decision::Forward(f) = PrefixRouting::route(&invite("sip:+441614960000@contoso.com;user=phone").build())
        else {
            panic!("expected forward");
        };
        assert_eq!(f.targets[0].uri, "sip:eu.um.example.net;transport=tls");
        assert_eq!(
            f.request_uri.as_deref(),
            Some("sip:+441614960000@contoso.com;user=phone;ms-destination=eu.um.example.net")
        );
    }

    #[test]
    fn other_numbers_follow_the_standard_algorithm() {
        setup();
        assert_eq!(
            PrefixRouting::route(&invite("sip:+14255550100@contoso.com;user=phone").build()),
            Decision::Standard
        );
    }

    #[test]
    fn parses_and_refuses_config() {
        assert_eq!(parse("+1=hosted:a.b").expect("valid"), [("+1".to_owned(), Route::Hosted("a.b".into()))]);
        assert!(parse("44=hosted:a.b").is_err());
        assert!(parse("+44=somewhere").is_err());
    }
}
