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

/// Serves until SIGINT or SIGTERM, on a runtime of `[sip] worker_threads`,
/// logging as `format` (and exporting traces when `[otel]` is configured).
pub fn run(args: Args, format: crate::logging::LogFormat) -> ExitCode {
    // A configuration that does not load is reported by `server::run` itself.
    let config = crate::control::config::RouterConfig::load(&args.config).ok();
    let threads = config
        .as_ref()
        .map_or_else(|| crate::control::config::SipSettings::default().worker_threads, |c| c.sip.worker_threads);
    let otel = config.as_ref().and_then(|c| c.otel.as_ref());
    if let Err(e) = crate::logging::init_with(format, "info", otel) {
        return super::fail(format!("{}: {e}", args.config.display()));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build() {
        Ok(r) => r,
        Err(e) => return super::fail(format!("cannot start the runtime: {e}")),
    };
    let served = runtime.block_on(crate::server::run(&args.config));
    crate::telemetry::flush();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::fail(format!("{e:#}")),
    }
}
