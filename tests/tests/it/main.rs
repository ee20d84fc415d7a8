//! exum-router's integration tests, one binary with a module per area. Every
//! policy here is a real component built from source by `tests/build.rs` and run
//! by the router's real engine.

mod access;
mod admin;
mod attacks;
mod cold_start;
mod developer;
mod dns;
mod eumr;
mod examples;
mod fleet;
mod flows;
mod hep;
mod hostile_input;
mod interop;
mod languages;
mod ldap;
mod lifecycle;
mod listeners;
mod polyglot;
mod proxy;
mod records;
mod red_team;
mod reload;
mod reload_sipp;
mod sandbox;
mod signing;
mod standard;
mod status_page;
mod tls;
mod tools;
mod torture;
mod um_answers;

use exum_router::policy::Verdict;
use exum_router::policy::contract::{Decision, Forward, Reject};
use exum_router_tests::{Plane, invite};

/// Routes an INVITE to `ruri` from `from` through its tenant's policy.
pub fn route(plane: &Plane, ruri: &str, from: &str) -> Verdict {
    let (tenant, req) = plane.request(&invite(ruri, from));
    plane.policy(&tenant).route(&tenant, &req)
}

/// The forward of a verdict, or a panic naming what it was.
pub fn forward(v: &Verdict) -> &Forward {
    match &v.decision {
        Decision::Forward(f) => f,
        other => panic!("expected a forward, got {other:?}"),
    }
}

/// The rejection of a verdict, or a panic naming what it was.
pub fn reject(v: &Verdict) -> &Reject {
    match &v.decision {
        Decision::Reject(r) => r,
        other => panic!("expected a reject, got {other:?}"),
    }
}

/// The `ms-diagnostics` value of a rejection.
pub fn diagnostics(r: &Reject) -> &str {
    r.headers.iter().find(|h| h.name == "ms-diagnostics").map_or("", |h| h.value.as_str())
}
