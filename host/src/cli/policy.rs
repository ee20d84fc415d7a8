//! `exum-router policy`: a tenant's policy lifecycle through a router's admin API.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::admin::client::{Action, Target};

/// The router, the tenant and the action.
#[derive(clap::Args)]
pub struct Args {
    /// The router configuration (its `[admin]` address and token).
    #[arg(long, default_value = super::EXAMPLE_CONFIG)]
    config: PathBuf,
    /// The admin API's address, instead of the configuration's.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// The admin API's bearer token, instead of the configuration's.
    #[arg(long, env = "EXUM_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The tenant.
    #[arg(long)]
    tenant: String,
    #[command(subcommand)]
    action: Action,
}

/// Sends the action; prints the API's answer.
pub fn run(args: Args) -> anyhow::Result<String> {
    let target = Target { config: args.config, address: args.admin, token: args.token };
    super::on_current_thread(crate::admin::client::run(&target, &args.tenant, args.action))
}
