//! `exum-router db`: the directory and policy versions in PostgreSQL.

use std::path::PathBuf;

use crate::db::cli::Action;

/// The database and the action.
#[derive(clap::Args)]
pub struct Args {
    /// The router configuration (its `[directory]` names the database).
    #[arg(long, default_value = super::EXAMPLE_CONFIG)]
    config: PathBuf,
    /// The database, when the configuration reads a directory file.
    #[arg(long, env = "EXUM_DATABASE_URL", hide_env_values = true)]
    url: Option<String>,
    #[command(subcommand)]
    action: Action,
}

/// Runs the action; prints what it did.
pub fn run(args: Args) -> anyhow::Result<String> {
    super::on_current_thread(crate::db::cli::run(&args.config, args.url, args.action))
}
