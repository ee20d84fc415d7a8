//! `exum-router keygen`: a new Ed25519 signing key.

use std::path::PathBuf;

/// Where the key goes.
#[derive(clap::Args)]
pub struct Args {
    /// Where to write the private key (it must not exist).
    #[arg(long)]
    out: PathBuf,
}

/// Writes the key; prints its public key.
pub fn run(args: Args) -> anyhow::Result<String> {
    crate::tools::keygen(&args.out).map_err(anyhow::Error::from)
}
