//! Builds the standard policy to a component so the router can embed it.

fn main() -> anyhow::Result<()> {
    exum_guest_build::build(&[exum_guest_build::Guest { package: "exum-policy-standard", constant: "STANDARD" }])
}
