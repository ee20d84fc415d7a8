//! The `exum-router` command: offline tools for policies (`check`, `componentize`,
//! `simulate`).

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use exum_router::logging::{self, LogFormat};
use exum_router::tools::{self, SimulateOptions};

/// mimalloc instead of the system allocator: the SIP plane allocates and frees
/// message buffers on every datagram, across worker threads (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A SIP router for voice-mail-bound calls with a sandboxed Wasm policy per tenant.
#[derive(Parser)]
#[command(name = "exum-router", version)]
struct Cli {
    /// How log lines are written to standard error.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The configuration `exum-router` serves with no arguments.
const EXAMPLE_CONFIG: &str = "examples/deployment/router.toml";

#[derive(Subcommand)]
enum Command {
    /// Run the router (with no command at all: the example deployment).
    Serve {
        /// The router configuration.
        #[arg(long, default_value = EXAMPLE_CONFIG)]
        config: PathBuf,
    },
    /// Validate a policy component against the contract and describe it.
    Check {
        /// The component (`.wasm`).
        policy: PathBuf,
    },
    /// Turn a policy crate's core module (wasm32-unknown-unknown) into a
    /// component, check it, and write it.
    Componentize {
        /// The core module built by cargo.
        module: PathBuf,
        /// Where to write the component.
        output: PathBuf,
    },
    /// Run a SIP request through its tenant's policy; print the decision as JSON
    /// and the request as it would be forwarded (or the response).
    Simulate {
        /// The router configuration.
        #[arg(long)]
        config: PathBuf,
        /// The request's source address.
        #[arg(long)]
        source: Option<SocketAddr>,
        /// A target to treat as marked down by health probes (repeatable).
        #[arg(long)]
        down: Vec<String>,
        /// Also show what happens when every target of a forward fails.
        #[arg(long)]
        fail_all: bool,
        /// The request file; `-` or nothing reads standard input.
        request: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve { config: PathBuf::from(EXAMPLE_CONFIG) });
    // RUST_LOG when set (and not empty); else info for the server, warn for tools.
    let default = if matches!(command, Command::Serve { .. }) { "info" } else { "warn" };
    logging::init(cli.log_format, default);
    let result = match command {
        Command::Serve { config } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("exum-router: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            return match runtime.block_on(exum_router::server::run(&config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("exum-router: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Check { policy } => tools::check(&policy),
        Command::Componentize { module, output } => tools::componentize(&module, &output),
        Command::Simulate { config, source, down, fail_all, request } => {
            let path = request.unwrap_or_else(|| "-".to_owned());
            read_request(&path)
                .and_then(|bytes| tools::simulate(&config, &path, &bytes, &SimulateOptions { source, down, fail_all }))
        }
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("exum-router: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_request(path: &str) -> Result<Vec<u8>, tools::ToolError> {
    let read_err = |source| tools::ToolError::Read { path: path.to_owned(), source };
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map_err(read_err)?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(read_err)
    }
}
