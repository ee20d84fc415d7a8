//! `exum-router build`: a policy project into a checked component.

use std::path::PathBuf;

/// The project and where its component goes.
#[derive(clap::Args)]
pub struct Args {
    /// The project's folder.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Where to write the component (default: `<name>.wasm` in the folder).
    #[arg(long)]
    output: Option<PathBuf>,
}

/// Builds it with its language's toolchain; the report of `check`.
pub fn run(args: Args) -> anyhow::Result<String> {
    crate::scaffold::build(&args.dir, args.output.as_deref(), None).map_err(anyhow::Error::from)
}
