//! `exum-router ldap-check`: each tenant's LDAP entries as the router maps them.

use std::path::PathBuf;

/// Where the configuration is.
#[derive(clap::Args)]
pub struct Args {
    /// The router configuration.
    #[arg(long, default_value = super::EXAMPLE_CONFIG)]
    config: PathBuf,
}

/// Binds, searches and prints how every entry maps.
pub fn run(args: Args) -> anyhow::Result<String> {
    super::on_current_thread(crate::ldap::check(&args.config))
}
