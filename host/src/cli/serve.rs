//! `exum-router serve`: the router.

use std::path::PathBuf;
use std::process::ExitCode;

/// Where the configuration is.
#[derive(clap::Args)]
pub struct Args {
    /// The router configuration.
    #[arg(long, default_value = super::EXAMPLE_CONFIG)]
    config: PathBuf,
}

impl Args {
    /// The example deployment (`exum-router` with no arguments).
    pub fn example() -> Args {
        Args { config: PathBuf::from(super::EXAMPLE_CONFIG) }
    }
}

/// Serves until SIGINT or SIGTERM, on a runtime of `[sip] worker_threads`.
pub fn run(args: Args) -> ExitCode {
    // A configuration that does not load is reported by `server::run` itself.
    let threads = crate::control::config::RouterConfig::load(&args.config)
        .map_or_else(|_| crate::control::config::SipSettings::default().worker_threads, |c| c.sip.worker_threads);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build() {
        Ok(r) => r,
        Err(e) => return super::fail(format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(crate::server::run(&args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::fail(format!("{e:#}")),
    }
}
