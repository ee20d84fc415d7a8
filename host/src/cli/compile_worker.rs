//! `exum-router compile-worker` (hidden): one compile in a capped child process.

use std::process::ExitCode;

/// Its arguments, as the router passes them.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    memory_mib: u64,
    #[arg(long)]
    cpu_s: u64,
    #[arg(long, default_value = "cranelift")]
    compiler: String,
    #[arg(long)]
    background: bool,
}

/// Compiles standard input to standard output under the caps.
pub fn run(args: &Args) -> ExitCode {
    crate::policy::compile::worker(args.memory_mib, args.cpu_s, &args.compiler, args.background)
}
