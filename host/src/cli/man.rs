//! `exum-router man DIR` (hidden; the package build runs it): manual pages,
//! section 1, generated from the command line's own definitions:
//! `exum-router.1` and one `exum-router-COMMAND.1` per command.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::CommandFactory as _;

/// Arguments of `man`.
#[derive(clap::Args)]
pub struct Args {
    /// The folder the pages are written to (created if missing).
    dir: PathBuf,
}

/// Writes the pages; prints their names.
pub fn run(args: Args) -> anyhow::Result<String> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("{}", args.dir.display()))?;
    let command = super::Cli::command();
    let mut written = String::new();
    let mut page = |name: String, command: clap::Command| -> anyhow::Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(command.name(name.clone())).title(name.to_uppercase()).render(&mut out)?;
        let path = args.dir.join(format!("{name}.1"));
        std::fs::write(&path, out).with_context(|| format!("{}", path.display()))?;
        written.push_str(&format!("{}\n", path.display()));
        Ok(())
    };
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(format!("exum-router-{}", sub.get_name()), sub.clone().version(crate::release::VERSION))?;
    }
    page("exum-router".into(), command)?;
    Ok(written)
}
