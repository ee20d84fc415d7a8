//! `exum-router simulate`: a request through its tenant's policy, offline.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::tools::SimulateOptions;

/// The deployment, the request, and what to change.
#[derive(clap::Args)]
pub struct Args {
    /// The router configuration.
    #[arg(long)]
    config: PathBuf,
    /// The request's source address.
    #[arg(long)]
    source: Option<SocketAddr>,
    /// A target to treat as marked down by health probes (repeatable).
    #[arg(long)]
    down: Vec<String>,
    /// Also show what happens when every target of a forward fails.
    #[arg(long)]
    fail_all: bool,
    /// Decide with this component instead of the tenant's policy.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Give the policy's `init` this string instead of the tenant's `policy_config`.
    #[arg(long)]
    policy_config: Option<String>,
    /// The request file; `-` or nothing reads standard input.
    request: Option<String>,
}

/// The decision as JSON and the request as it would be forwarded.
pub fn run(args: Args) -> anyhow::Result<String> {
    let path = args.request.unwrap_or_else(|| "-".to_owned());
    let options = SimulateOptions {
        source: args.source,
        down: args.down,
        fail_all: args.fail_all,
        policy: args.policy,
        policy_config: args.policy_config,
    };
    super::read_request(&path)
        .and_then(|bytes| crate::tools::simulate(&args.config, &path, &bytes, &options))
        .map_err(anyhow::Error::from)
}
