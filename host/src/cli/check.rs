//! `exum-router check`: a component against the contract, its `init`, a request.

use std::path::PathBuf;
use std::process::ExitCode;

/// The component and what to run it with.
#[derive(clap::Args)]
pub struct Args {
    /// The component (`.wasm`).
    policy: PathBuf,
    /// Run `init` with this configuration string.
    #[arg(long)]
    policy_config: Option<String>,
    /// Route this request file with it (`-`: standard input).
    #[arg(long)]
    request: Option<String>,
}

/// Describes the component; runs `init` and routes the request when given.
pub fn run(args: Args) -> ExitCode {
    if args.policy_config.is_none() && args.request.is_none() {
        return super::report(crate::tools::check(&args.policy).map_err(anyhow::Error::from));
    }
    let request = match args.request.map(|r| super::read_request(&r).map(|b| (r, b))).transpose() {
        Ok(r) => r,
        Err(e) => return super::fail(e),
    };
    let config = args.policy_config.unwrap_or_default();
    super::report(
        crate::tools::check_running(&args.policy, &config, request.as_ref().map(|(n, b)| (n.as_str(), b.as_slice())))
            .map_err(anyhow::Error::from),
    )
}
