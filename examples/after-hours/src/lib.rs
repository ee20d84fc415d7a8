//! Example policy: after business hours, calls to the main number go to the auto
//! attendant (a hosted Exchange UM contact); during business hours, and for every
//! other call, the standard algorithm decides.
//!
//! `policy_config` is `key=value` pairs separated by `;`:
//! `main=+14255550100; attendant=+14255550150; open=08:00-18:00; days=mon-fri`.
//! Times are the tenant's local time (`utc_offset_minutes` in the router config).

use std::cell::RefCell;

use exum_policy_sdk::{Decision, Policy, Request, host, normalize_number, parse_uri, routing};

/// The parsed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours {
    /// The main number, E.164.
    pub main: String,
    /// The auto attendant's number, E.164 (an Exchange UM contact of the tenant).
    pub attendant: String,
    /// Opening minute of the day (local time).
    pub open: u32,
    /// Closing minute of the day (local time).
    pub close: u32,
    /// First and last open weekday, 0 = Monday.
    pub days: (u32, u32),
}

thread_local! {
    static HOURS: RefCell<Option<Hours>> = const { RefCell::new(None) };
}

impl Hours {
    /// Parses `policy_config`.
    pub fn parse(config: &str) -> Result<Hours, String> {
        let (mut main, mut attendant, mut open, mut days) = (None, None, None, (0, 4));
        for pair in config.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| format!("`{pair}`: expected key=value"))?;
            let value = value.trim();
            match key.trim() {
                "main" => main = Some(normalize_number(value).ok_or_else(|| format!("main: `{value}` is not E.164"))?),
                "attendant" => {
                    attendant =
                        Some(normalize_number(value).ok_or_else(|| format!("attendant: `{value}` is not E.164"))?)
                }
                "open" => {
                    let (a, b) = value.split_once('-').ok_or("open: expected HH:MM-HH:MM")?;
                    open = Some((minute_of_day(a)?, minute_of_day(b)?));
                }
                "days" => {
                    let (a, b) = value.split_once('-').ok_or("days: expected mon-fri")?;
                    days = (weekday(a)?, weekday(b)?);
                }
                other => return Err(format!("unknown key `{other}`")),
            }
        }
        let (open, close) = open.unwrap_or((8 * 60, 18 * 60));
        Ok(Hours {
            main: main.ok_or("main is required")?,
            attendant: attendant.ok_or("attendant is required")?,
            open,
            close,
            days,
        })
    }

    /// Whether `unix_seconds` at `offset_minutes` from UTC is within business hours.
    pub fn is_open(&self, unix_seconds: i64, offset_minutes: i32) -> bool {
        let local = unix_seconds + i64::from(offset_minutes) * 60;
        let days_since_epoch = local.div_euclid(86_400);
        let weekday = (days_since_epoch + 3).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
        let minute = (local.rem_euclid(86_400) / 60) as u32;
        (self.days.0..=self.days.1).contains(&weekday) && (self.open..self.close).contains(&minute)
    }
}

fn minute_of_day(text: &str) -> Result<u32, String> {
    let (h, m) = text.trim().split_once(':').ok_or_else(|| format!("`{text}`: expected HH:MM"))?;
    let (h, m): (u32, u32) = (
        h.parse().map_err(|_| format!("`{text}`: bad hour"))?,
        m.parse().map_err(|_| format!("`{text}`: bad minute"))?,
    );
    if h > 24 || m > 59 {
        return Err(format!("`{text}` is not a time of day"));
    }
    Ok(h * 60 + m)
}

fn weekday(text: &str) -> Result<u32, String> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .position(|d| d.eq_ignore_ascii_case(text.trim()))
        .map(|i| i as u32)
        .ok_or_else(|| format!("`{text}` is not a weekday (mon..sun)"))
}

/// The after-hours policy.
pub struct AfterHours;

impl Policy for AfterHours {
    fn init(config: &str) -> Result<(), String> {
        let hours = Hours::parse(config)?;
        HOURS.with(|h| *h.borrow_mut() = Some(hours));
        Ok(())
    }

    fn route(req: &Request) -> Decision {
        let Some(hours) = HOURS.with(|h| h.borrow().clone()) else {
            return Decision::Standard;
        };
        if req.request_uri().number().as_deref() != Some(hours.main.as_str()) {
            return Decision::Standard;
        }
        let now = host::now();
        if hours.is_open(now.unix_seconds, now.utc_offset_minutes) {
            return Decision::Standard;
        }
        let Some(attendant) = host::lookup_contact(&hours.attendant) else {
            host::log(exum_policy_sdk::Level::Warn, "the configured attendant is not an Exchange UM contact");
            return Decision::Standard;
        };
        let Some(aa_uri) = parse_uri(&attendant.sip_address) else {
            return Decision::Standard;
        };
        match routing::hosted_forward(&aa_uri, attendant.hosted_voicemail_policy.as_deref(), attendant.site.as_deref())
        {
            Ok(forward) => Decision::Forward(forward),
            Err(reject) => reject,
        }
    }
}

exum_policy_sdk::export_policy!(AfterHours);

#[cfg(test)]
mod tests {
    use exum_policy_sdk::testing::{TestHost, invite};
    use exum_policy_sdk::{ContactKind, Decision, Policy, PolicyScope};

    use super::{AfterHours, Hours};

    const CONFIG: &str = "main=+14255550100; attendant=+14255550150; open=08:00-18:00; days=mon-fri";
    /// Monday 2026-01-05 10:00 UTC.
    const MONDAY_10: i64 = 1_767_607_200;

    fn setup(at: i64) {
        TestHost::new("contoso")
            .edge("sip:exap.um.outlook.com;transport=tls") // the tenant's hosting provider
            .contact("sip:aa@contoso.com", "+14255550150", ContactKind::AutoAttendant, None)
            .hosted_policy(PolicyScope::Global, Some("exap.um.outlook.com"), &["contoso.onmicrosoft.com"])
            .at(at, 0)
            .install();
        AfterHours::init(CONFIG).expect("valid config");
    }

    #[test]
    fn business_hours_follow_the_standard_algorithm() {
        setup(MONDAY_10);
        assert_eq!(AfterHours::route(&invite("sip:+14255550100@contoso.com;user=phone").build()), Decision::Standard);
    }

    #[test]
    fn after_hours_the_main_number_goes_to_the_attendant() {
        setup(MONDAY_10 + 9 * 3600); // 19:00
        let Decision::Forward(f) = AfterHours::route(&invite("sip:+14255550100@contoso.com;user=phone").build()) else {
            panic!("expected forward");
        };
        assert_eq!(
            f.request_uri.as_deref(),
            Some("sip:aa@contoso.com;ms-destination=exap.um.outlook.com;ms-organization=contoso.onmicrosoft.com")
        );
        assert_eq!(f.targets[0].uri, "sip:exap.um.outlook.com;transport=tls");
    }

    #[test]
    fn weekends_are_closed_and_other_numbers_untouched() {
        setup(MONDAY_10 + 5 * 86_400); // Saturday 10:00
        assert!(matches!(
            AfterHours::route(&invite("sip:+14255550100@contoso.com;user=phone").build()),
            Decision::Forward(_)
        ));
        assert_eq!(AfterHours::route(&invite("sip:+14255550111@contoso.com;user=phone").build()), Decision::Standard);
    }

    #[test]
    fn local_time_uses_the_tenant_offset() {
        let h = Hours::parse(CONFIG).expect("valid");
        assert!(h.is_open(MONDAY_10, 0));
        assert!(!h.is_open(MONDAY_10, -8 * 60), "02:00 in UTC-8");
    }

    #[test]
    fn refuses_bad_config() {
        assert!(Hours::parse("main=+1425").unwrap_err().contains("attendant"));
        assert!(Hours::parse("main=+1425;attendant=+1426;open=8-18").is_err());
        assert!(Hours::parse("main=+1425;attendant=+1426;days=mon-xyz").is_err());
        assert!(Hours::parse("main=5550100;attendant=+1426").is_err());
    }
}
