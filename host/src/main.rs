//! The `exum-router` command: the router (`serve`) and its tools (`check`,
//! `componentize`, `simulate`, `replay`, `db`, `ldap-check`).

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
    /// Compile one policy component from standard input to standard output,
    /// under memory and CPU caps (the router runs it for every compile).
    #[command(hide = true, name = "compile-worker")]
    CompileWorker {
        #[arg(long)]
        memory_mib: u64,
        #[arg(long)]
        cpu_s: u64,
        #[arg(long, default_value = "cranelift")]
        compiler: String,
        #[arg(long)]
        background: bool,
    },
    /// Run the router (with no command at all: the example deployment).
    Serve {
        /// The router configuration.
        #[arg(long, default_value = EXAMPLE_CONFIG)]
        config: PathBuf,
    },
    /// Validate a policy component against the contract and describe it; with
    /// --policy-config, run its `init`; with --request, route a request with it
    /// (against an empty directory).
    Check {
        /// The component (`.wasm`).
        policy: PathBuf,
        /// Run `init` with this configuration string.
        #[arg(long)]
        policy_config: Option<String>,
        /// Route this request file with it (`-`: standard input).
        #[arg(long)]
        request: Option<String>,
    },
    /// Create a policy project in Rust, JavaScript, TypeScript or Python that
    /// builds with the language's own tools, outside this repository: the
    /// standard algorithm with one adjustment, native tests, a README.
    New {
        /// The project's name (and folder).
        name: String,
        /// The policy's language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: exum_router::scaffold::Lang,
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
    },
    /// Build the policy project in a folder into a checked component with its
    /// language's toolchain: cargo (Cargo.toml), componentize-js (package.json)
    /// or componentize-py (pyproject.toml).
    Build {
        /// The project's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the component (default: `<crate>.wasm` in the folder).
        #[arg(long)]
        output: Option<PathBuf>,
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
        /// Decide with this component instead of the tenant's policy.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Give the policy's `init` this string instead of the tenant's `policy_config`.
        #[arg(long)]
        policy_config: Option<String>,
        /// The request file; `-` or nothing reads standard input.
        request: Option<String>,
    },
    /// Sign a policy component with an Ed25519 key (a signature section is
    /// appended; an older one is replaced).
    Sign {
        /// The private key (PKCS#8 PEM or DER; `exum-router keygen` makes one).
        #[arg(long)]
        key: PathBuf,
        /// The component, signed in place unless --output is given.
        policy: PathBuf,
        /// Where to write the signed component.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Make an Ed25519 signing key; print its public key.
    Keygen {
        /// Where to write the private key (it must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Run recorded policy calls again, with their imports answered from the
    /// record; print each output and how it differs from the recorded one.
    /// Exit status 0: all the same; 2: some differ; 1: some could not be replayed.
    Replay {
        /// A file of decision records (JSON lines), one record, or a shadow sample.
        records: PathBuf,
        /// Replay on this component instead of the recorded one.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Give `init` this string instead of the recorded one.
        #[arg(long)]
        policy_config: Option<String>,
        /// Where the recorded components are (default: `policies/` beside the
        /// tenant's folder of records).
        #[arg(long)]
        components: Option<PathBuf>,
        /// Only the record on this line (from 1).
        #[arg(long)]
        line: Option<usize>,
    },
    /// A tenant's policy lifecycle on a running router, through its admin API:
    /// history, rollback, shadow and canary candidates (docs/policy-plane.md).
    Policy {
        /// The router configuration (its `[admin]` address and token).
        #[arg(long, default_value = EXAMPLE_CONFIG)]
        config: PathBuf,
        /// The admin API's address, instead of the configuration's.
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// The admin API's bearer token, instead of the configuration's.
        #[arg(long, env = "EXUM_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Bind to each tenant's LDAP server, search, and print how every entry
    /// maps (user or contact, mode, dial plan, problems), without starting.
    LdapCheck {
        /// The router configuration.
        #[arg(long, default_value = EXAMPLE_CONFIG)]
        config: PathBuf,
    },
    /// The directory and policy versions in PostgreSQL (docs/deployment.md).
    Db {
        /// The router configuration (its `[directory]` names the database).
        #[arg(long, default_value = EXAMPLE_CONFIG)]
        config: PathBuf,
        /// The database, when the configuration reads a directory file.
        #[arg(long, env = "EXUM_DATABASE_URL", hide_env_values = true)]
        url: Option<String>,
        #[command(subcommand)]
        action: DbAction,
    },
}

#[derive(Subcommand)]
enum PolicyAction {
    /// The kept versions, newest first.
    History,
    /// Serve a kept version again (default: the one serving before).
    Rollback {
        /// The version number (see `history`).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Start a shadow: it decides a copy of every new request, compared with
    /// the serving version's decision, and never a call.
    Shadow {
        /// The component; or --from.
        policy: Option<PathBuf>,
        /// A kept version instead of a file.
        #[arg(long)]
        from: Option<u64>,
    },
    /// Start a canary: it serves this share of new calls, rolled back
    /// automatically when it does worse than the serving version.
    Canary {
        /// The component; or --from.
        policy: Option<PathBuf>,
        /// A kept version instead of a file.
        #[arg(long)]
        from: Option<u64>,
        /// The share of new calls, 0 to 1.
        #[arg(long)]
        share: f64,
    },
    /// The candidate: counters beside the serving version's, divergences, samples.
    Status,
    /// A shadow sample's two decision records (save it, then `exum-router replay` it).
    Sample {
        /// The sample's index (see `status`).
        n: usize,
    },
    /// The candidate becomes the serving version.
    Promote,
    /// The candidate ends.
    Abandon,
}

#[derive(Subcommand)]
enum DbAction {
    /// Create or update the schema (the router also does at start).
    Migrate,
    /// Import a directory file: the configuration's, or --file.
    Import {
        /// The directory file (TOML or JSON).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Store a policy component as a new version of a tenant.
    Upload {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Who uploads it (recorded).
        #[arg(long, default_value = "cli")]
        by: String,
        /// Make it the active version too.
        #[arg(long)]
        activate: bool,
        /// The component (`.wasm`).
        policy: PathBuf,
    },
    /// Make a version the tenant's active one; every instance applies it.
    Activate {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The version id (see `versions`).
        #[arg(long)]
        version: i64,
        /// Who activates it (recorded).
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Activate the version that was active before the current one.
    Rollback {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Who rolls back (recorded).
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// List a tenant's policy versions (`*` marks the active one).
    Versions {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Show a tenant as the database holds it, as JSON.
    Show {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CompileWorker { memory_mib, cpu_s, compiler, background }) = &cli.command {
        return exum_router::policy::compile::worker(*memory_mib, *cpu_s, compiler, *background);
    }
    // Policies are compiled in child processes of this executable, whose
    // memory and CPU are capped (`[compile]`).
    if let Ok(exe) = std::env::current_exe() {
        exum_router::policy::compile::compile_in_children(exe);
    }
    let command = cli.command.unwrap_or(Command::Serve { config: PathBuf::from(EXAMPLE_CONFIG) });
    // RUST_LOG when set (and not empty); else info for the server, warn for tools.
    let default = if matches!(command, Command::Serve { .. }) { "info" } else { "warn" };
    logging::init(cli.log_format, default);
    let result = match command {
        Command::Serve { config } => {
            // The runtime's size is the configuration's (`[sip] worker_threads`);
            // a configuration that does not load is reported by `run` itself.
            let threads = exum_router::control::config::RouterConfig::load(&config).map_or_else(
                |_| exum_router::control::config::SipSettings::default().worker_threads,
                |c| c.sip.worker_threads,
            );
            let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
            {
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
        Command::Db { config, url, action } => {
            use exum_router::db::cli::Action;
            let action = match action {
                DbAction::Migrate => Action::Migrate,
                DbAction::Import { file } => Action::Import { file },
                DbAction::Upload { tenant, by, activate, policy } => Action::Upload { tenant, policy, by, activate },
                DbAction::Activate { tenant, version, by } => Action::Activate { tenant, version, by },
                DbAction::Rollback { tenant, by } => Action::Rollback { tenant, by },
                DbAction::Versions { tenant } => Action::Versions { tenant },
                DbAction::Show { tenant } => Action::Show { tenant },
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))
                .and_then(|runtime| runtime.block_on(exum_router::db::cli::run(&config, url, action)))
        }
        Command::Policy { config, admin, token, tenant, action } => {
            let target = exum_router::admin::client::Target { config, address: admin, token };
            use exum_router::admin::client::Action;
            let action = match action {
                PolicyAction::History => Action::History,
                PolicyAction::Rollback { to } => Action::Rollback { to },
                PolicyAction::Shadow { policy, from } => {
                    Action::Candidate { mode: "shadow", file: policy, from, share: None }
                }
                PolicyAction::Canary { policy, from, share } => {
                    Action::Candidate { mode: "canary", file: policy, from, share: Some(share) }
                }
                PolicyAction::Status => Action::Status,
                PolicyAction::Sample { n } => Action::Sample { n },
                PolicyAction::Promote => Action::Promote,
                PolicyAction::Abandon => Action::Abandon,
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))
                .and_then(|runtime| runtime.block_on(exum_router::admin::client::run(&target, &tenant, action)))
        }
        Command::LdapCheck { config } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))
            .and_then(|runtime| runtime.block_on(exum_router::ldap::check(&config))),
        Command::Replay { records, policy, policy_config, components, line } => {
            let options = tools::ReplayOptions { policy, policy_config, components, line };
            return match tools::replay(&records, &options) {
                Ok(report) => {
                    print!("{}", report.text);
                    if report.failed > 0 {
                        ExitCode::FAILURE
                    } else if report.differing > 0 {
                        ExitCode::from(2)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("exum-router: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Sign { key, policy, output } => {
            tools::sign(&key, &policy, output.as_deref()).map_err(|e| e.to_string())
        }
        Command::Keygen { out } => tools::keygen(&out).map_err(|e| e.to_string()),
        Command::Check { policy, policy_config: None, request: None } => {
            tools::check(&policy).map_err(|e| e.to_string())
        }
        Command::Check { policy, policy_config, request } => {
            let request = match request.map(|r| read_request(&r).map(|b| (r, b))).transpose() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("exum-router: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let config = policy_config.unwrap_or_default();
            tools::check_running(&policy, &config, request.as_ref().map(|(n, b)| (n.as_str(), b.as_slice())))
                .map_err(|e| e.to_string())
        }
        Command::CompileWorker { .. } => return ExitCode::SUCCESS,
        Command::Componentize { module, output } => tools::componentize(&module, &output).map_err(|e| e.to_string()),
        Command::Simulate { config, source, down, fail_all, policy, policy_config, request } => {
            let path = request.unwrap_or_else(|| "-".to_owned());
            let options = SimulateOptions { source, down, fail_all, policy, policy_config };
            read_request(&path)
                .and_then(|bytes| tools::simulate(&config, &path, &bytes, &options))
                .map_err(|e| e.to_string())
        }
        Command::New { name, lang, dir, sdk_path, sdk_git, sdk_rev } => {
            use exum_router::scaffold::{SdkSource, default_sdk, new_policy, next_steps};
            let sdk = match (sdk_path, sdk_git) {
                (Some(p), _) => Some(SdkSource::Path(p)),
                (None, Some(url)) => Some(SdkSource::Git { url, rev: sdk_rev }),
                (None, None) => default_sdk(lang).map(SdkSource::Path),
            };
            match sdk {
                None => Err("where is the SDK? give --sdk-path <the router repository's sdk, sdk-js or sdk-py \
                             folder> (Rust: or --sdk-git <url>)"
                    .into()),
                Some(sdk) => {
                    new_policy(lang, &dir, &name, &sdk).map(|d| next_steps(lang, &d)).map_err(|e| e.to_string())
                }
            }
        }
        Command::Build { dir, output } => {
            exum_router::scaffold::build(&dir, output.as_deref(), None).map_err(|e| e.to_string())
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
