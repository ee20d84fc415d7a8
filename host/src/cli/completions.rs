//! `exum-router completions SHELL`: the shell's completion script, generated
//! from the command line's own definitions.

use clap::CommandFactory as _;

/// Arguments of `completions`.
#[derive(clap::Args)]
pub struct Args {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Writes the script to standard output.
pub fn run(args: Args) -> anyhow::Result<String> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut super::Cli::command(), "exum-router", &mut out);
    Ok(String::from_utf8(out)?)
}
