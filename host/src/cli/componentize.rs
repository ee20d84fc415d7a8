//! `exum-router componentize`: a Rust policy's core module into a component.

use std::path::PathBuf;

/// The module and the component.
#[derive(clap::Args)]
pub struct Args {
    /// The core module built by cargo.
    module: PathBuf,
    /// Where to write the component.
    output: PathBuf,
}

/// Componentizes, checks and writes it.
pub fn run(args: Args) -> anyhow::Result<String> {
    crate::tools::componentize(&args.module, &args.output).map_err(anyhow::Error::from)
}
