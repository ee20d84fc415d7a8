//! What this build is: its release, the git commit it was built from, and the
//! policy contract its components are built against (`exum-router --version`,
//! the admin API's `/version`).

/// The release (the crate's version).
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from (`unknown` outside a checkout).
pub const COMMIT: &str = env!("EXUM_GIT_COMMIT");

/// What `--version` prints after the name.
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("EXUM_GIT_COMMIT"), ", policy contract exum:policy@0.1.0)");

/// The three, as the admin API answers them.
pub fn json() -> serde_json::Value {
    serde_json::json!({ "version": RELEASE, "commit": COMMIT, "contract": CONTRACT })
}

/// The policy contract (the WIT package's name and version).
pub const CONTRACT: &str = "exum:policy@0.1.0";

#[cfg(test)]
mod tests {
    /// The engine's contract is this one (`policy::engine::CONTRACT` is
    /// defined as it); `--version` names it.
    #[test]
    fn the_version_names_the_contract() {
        assert!(super::VERSION.ends_with(&format!("policy contract {})", super::CONTRACT)), "{}", super::VERSION);
    }
}
