//! Builds every shipped policy and every test fixture to a component, from source,
//! with one nested cargo build; `src/lib.rs` includes the paths.

use exum_guest_build::{Guest, Language, Polyglot};

fn main() -> anyhow::Result<()> {
    exum_guest_build::build(&[
        Guest { package: "exum-policy-standard", constant: "STANDARD" },
        Guest { package: "exum-example-pilot-group", constant: "PILOT_GROUP" },
        Guest { package: "exum-example-after-hours", constant: "AFTER_HOURS" },
        Guest { package: "exum-example-prefix-routing", constant: "PREFIX_ROUTING" },
        Guest { package: "exum-example-vip-first", constant: "VIP_FIRST" },
        Guest { package: "exum-fixture-hostile", constant: "HOSTILE" },
        Guest { package: "exum-fixture-foreign-import", constant: "FOREIGN_IMPORT" },
        Guest { package: "exum-fixture-no-exports", constant: "NO_EXPORTS" },
        Guest { package: "exum-fixture-plan-a", constant: "PLAN_A" },
        Guest { package: "exum-fixture-plan-b", constant: "PLAN_B" },
    ])?;
    exum_guest_build::build_polyglot(&[
        Polyglot { language: Language::JavaScript, dir: "tests/polyglot/js", entry: "probe.js", constant: "JS_PROBE" },
        Polyglot { language: Language::Python, dir: "tests/polyglot/python/probe", entry: "app", constant: "PY_PROBE" },
        Polyglot {
            language: Language::JavaScript,
            dir: "examples/vip-first/typescript",
            entry: "src/policy.ts",
            constant: "VIP_FIRST_TS",
        },
        Polyglot {
            language: Language::JavaScript,
            dir: "examples/after-hours/typescript",
            entry: "src/policy.ts",
            constant: "AFTER_HOURS_TS",
        },
        Polyglot {
            language: Language::Python,
            dir: "examples/vip-first/python",
            entry: "policy",
            constant: "VIP_FIRST_PY",
        },
        Polyglot {
            language: Language::Python,
            dir: "examples/after-hours/python",
            entry: "policy",
            constant: "AFTER_HOURS_PY",
        },
    ])
}
