//! `exum-router sign`: a component signed with an Ed25519 key.

use std::path::PathBuf;

/// The key, the component, and where the signed one goes.
#[derive(clap::Args)]
pub struct Args {
    /// The private key (PKCS#8 PEM or DER; `exum-router keygen` makes one).
    #[arg(long)]
    key: PathBuf,
    /// The component, signed in place unless --output is given.
    policy: PathBuf,
    /// Where to write the signed component.
    #[arg(long)]
    output: Option<PathBuf>,
}

/// Signs it.
pub fn run(args: Args) -> anyhow::Result<String> {
    crate::tools::sign(&args.key, &args.policy, args.output.as_deref()).map_err(anyhow::Error::from)
}
