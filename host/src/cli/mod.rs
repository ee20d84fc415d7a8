//! The `exum-router` command line: one file per subcommand, each with its
//! arguments (`Args`) and what it does (`run`). The binary (`main.rs`) only
//! sets the allocator and calls [`main`].
//!
//! Subcommands: `serve` (the router; the default, on the example
//! deployment), the policy tools `check`, `componentize`, `simulate`,
//! `replay`, `sign`, `keygen`, the developer loop `new` and `build`, the
//! lifecycle on a running router `policy`, the database `db`, `ldap-check`,
//! `completions`, and the hidden `compile-worker` the router runs for every
//! compile and `man` the package build runs.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::logging::{self, LogFormat};

mod build;
mod check;
mod compile_worker;
mod completions;
mod componentize;
pub mod db;
mod keygen;
mod ldap_check;
mod man;
mod new;
mod policy;
mod replay;
mod serve;
mod sign;
mod simulate;

/// The configuration `exum-router` serves with no arguments.
pub const EXAMPLE_CONFIG: &str = "examples/deployment/router.toml";

/// A SIP router for voice-mail-bound calls with a sandboxed Wasm policy per tenant.
#[derive(Parser)]
#[command(name = "exum-router", version = crate::release::VERSION)]
struct Cli {
    /// How log lines are written to standard error.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Compile one policy component from standard input to standard output,
    /// under memory and CPU caps (the router runs it for every compile).
    #[command(hide = true, name = "compile-worker")]
    CompileWorker(compile_worker::Args),
    /// Run the router (with no command at all: the example deployment).
    Serve(serve::Args),
    /// Validate a policy component against the contract and describe it; with
    /// --policy-config, run its `init`; with --request, route a request with it
    /// (against an empty directory).
    Check(check::Args),
    /// Create a policy project in Rust, JavaScript, TypeScript or Python that
    /// builds with the language's own tools, outside this repository: the
    /// standard algorithm with one adjustment, native tests, a README.
    New(new::Args),
    /// Build the policy project in a folder into a checked component with its
    /// language's toolchain: cargo (Cargo.toml), componentize-js (package.json)
    /// or componentize-py (pyproject.toml).
    Build(build::Args),
    /// Turn a policy crate's core module (wasm32-unknown-unknown) into a
    /// component, check it, and write it.
    Componentize(componentize::Args),
    /// Run a SIP request through its tenant's policy; print the decision as JSON
    /// and the request as it would be forwarded (or the response).
    Simulate(simulate::Args),
    /// Sign a policy component with an Ed25519 key (a signature section is
    /// appended; an older one is replaced).
    Sign(sign::Args),
    /// Make an Ed25519 signing key; print its public key.
    Keygen(keygen::Args),
    /// Run recorded policy calls again, with their imports answered from the
    /// record; print each output and how it differs from the recorded one.
    /// Exit status 0: all the same; 2: some differ; 1: some could not be replayed.
    Replay(replay::Args),
    /// A tenant's policy lifecycle on a running router, through its admin API:
    /// history, rollback, shadow and canary candidates (docs/policy-plane.md).
    Policy(policy::Args),
    /// Bind to each tenant's LDAP server, search, and print how every entry
    /// maps (user or contact, mode, dial plan, problems), without starting.
    LdapCheck(ldap_check::Args),
    /// The directory and policy versions in PostgreSQL (docs/deployment.md).
    Db(db::Args),
    /// Print the completion script of a shell (bash, zsh, fish, elvish,
    /// powershell): `exum-router completions bash > /etc/bash_completion.d/exum-router`.
    Completions(completions::Args),
    /// Write the manual pages (section 1) into a folder.
    #[command(hide = true)]
    Man(man::Args),
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CompileWorker(args)) = &cli.command {
        return compile_worker::run(args);
    }
    // Policies are compiled in child processes of this executable, whose
    // memory and CPU are capped (`[compile]`).
    if let Ok(exe) = std::env::current_exe() {
        crate::policy::compile::compile_in_children(exe);
    }
    let command = cli.command.unwrap_or(Command::Serve(serve::Args::example()));
    // RUST_LOG when set (and not empty); else info for the server, warn for tools.
    // The server sets up its logging once its configuration is read ([otel]).
    if let Command::Serve(args) = command {
        return serve::run(args, cli.log_format);
    }
    logging::init(cli.log_format, "warn");
    match command {
        Command::CompileWorker(_) | Command::Serve(_) => ExitCode::SUCCESS,
        Command::Check(args) => check::run(args),
        Command::New(args) => report(new::run(args)),
        Command::Build(args) => report(build::run(args)),
        Command::Componentize(args) => report(componentize::run(args)),
        Command::Simulate(args) => report(simulate::run(args)),
        Command::Sign(args) => report(sign::run(args)),
        Command::Keygen(args) => report(keygen::run(args)),
        Command::Replay(args) => replay::run(args),
        Command::Policy(args) => report(policy::run(args)),
        Command::LdapCheck(args) => report(ldap_check::run(args)),
        Command::Db(args) => report(db::run(args)),
        Command::Completions(args) => report(completions::run(args)),
        Command::Man(args) => report(man::run(args)),
    }
}

/// What a command printed, or its error, as the exit status.
fn report(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// An error on standard error, and the failure status.
fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("exum-router: {e}");
    ExitCode::FAILURE
}

/// Runs `work` on a current-thread runtime (the commands that talk to a
/// database, an LDAP server or a router's admin API).
fn on_current_thread<F: std::future::Future<Output = anyhow::Result<String>>>(work: F) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))?;
    runtime.block_on(work)
}

/// A request file's bytes (`-`: standard input).
fn read_request(path: &str) -> Result<Vec<u8>, crate::tools::ToolError> {
    use std::io::Read as _;
    let read_err = |source| crate::tools::ToolError::Read { path: path.to_owned(), source };
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map_err(read_err)?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(read_err)
    }
}
