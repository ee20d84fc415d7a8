//! `exum-router new`: a tenant's policy project in any of the languages.

use std::path::PathBuf;

use crate::scaffold::{Lang, SdkSource, default_sdk, new_policy, next_steps};

/// The project to create.
#[derive(clap::Args)]
pub struct Args {
    /// The project's name (and folder).
    name: String,
    /// The policy's language.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// The folder to create it in.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The SDK as a path dependency: the router repository's `sdk`,
    /// `sdk-js` or `sdk-py` folder (default: the one this router was built
    /// from, if still there).
    #[arg(long)]
    sdk_path: Option<PathBuf>,
    /// The SDK as a git dependency: the router repository's URL.
    #[arg(long, conflicts_with = "sdk_path")]
    sdk_git: Option<String>,
    /// With --sdk-git: a tag, branch or revision.
    #[arg(long, requires = "sdk_git")]
    sdk_rev: Option<String>,
}

/// Creates the project; says what to run next.
pub fn run(args: Args) -> anyhow::Result<String> {
    let sdk = match (args.sdk_path, args.sdk_git) {
        (Some(p), _) => SdkSource::Path(p),
        (None, Some(url)) => SdkSource::Git { url, rev: args.sdk_rev },
        (None, None) => default_sdk(args.lang).map(SdkSource::Path).ok_or_else(|| {
            anyhow::anyhow!(
                "where is the SDK? give --sdk-path <the router repository's sdk, sdk-js or sdk-py folder> \
             (Rust: or --sdk-git <url>)"
            )
        })?,
    };
    new_policy(args.lang, &args.dir, &args.name, &sdk).map(|d| next_steps(args.lang, &d)).map_err(anyhow::Error::from)
}
