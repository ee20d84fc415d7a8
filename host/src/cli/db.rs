//! `exum-router db`: setting a fleet up without hand-written SQL: the
//! schema, a directory file imported, policy versions uploaded, activated and
//! rolled back, a tenant shown.

use std::path::{Path, PathBuf};

use crate::control::config::{DirectorySource, PostgresSettings, RouterConfig};
use crate::control::directory::Directory;
use crate::db::{Database, policies};

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
    super::on_current_thread(execute(&args.config, args.url, args.action))
}

/// What `exum-router db` does.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
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

/// Runs `action` against the database of `config` (or `url`, which wins);
/// returns what to print.
pub async fn execute(config_path: &Path, url: Option<String>, action: Action) -> anyhow::Result<String> {
    let config = RouterConfig::load(config_path)?;
    let settings = match (&config.directory_source, url) {
        (_, Some(url)) => {
            url.parse::<tokio_postgres::Config>()
                .map_err(|e| anyhow::anyhow!("--url: not a connection string: {e}"))?;
            PostgresSettings { pool_size: 2, ..PostgresSettings::with_url(url) }
        }
        (DirectorySource::Postgres(s), None) => s.clone(),
        (DirectorySource::File, None) => {
            return Err(anyhow::anyhow!(
                "{}: the directory is a file; give --url (or EXUM_DATABASE_URL) to name the database",
                config_path.display()
            ));
        }
    };
    let db = Database::new(&settings)?;
    match action {
        Action::Migrate => {
            let applied = db.migrate().await?;
            Ok(if applied.is_empty() {
                "the schema is up to date\n".to_owned()
            } else {
                format!("applied: {}\n", applied.join(", "))
            })
        }
        Action::Import { file } => import(&db, &config, file).await,
        Action::Upload { tenant, policy, by, activate } => {
            upload(&db, &config, config_path, &tenant, &policy, &by, activate).await
        }
        Action::Activate { tenant, version, by } => {
            let client = db.client("activating").await?;
            policies::activate(&client, &tenant, Some(version), &by).await?;
            Ok(format!("tenant {tenant}: version {version} active\n"))
        }
        Action::Rollback { tenant, by } => {
            let client = db.client("rolling back").await?;
            let v = policies::rollback(&client, &tenant, &by).await?;
            Ok(match v {
                Some(v) => format!("tenant {tenant}: version {v} active\n"),
                None => format!("tenant {tenant}: no version active; the configured policy serves\n"),
            })
        }
        Action::Versions { tenant } => versions(&db, &tenant).await,
        Action::Show { tenant } => {
            let mut client = db.client("reading").await?;
            match crate::db::directory::show(&mut client, &tenant).await? {
                Some(v) => Ok(format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())),
                None => Err(anyhow::anyhow!("no tenant `{tenant}` in the database")),
            }
        }
    }
}

/// `db import`: the directory file (the configuration's, or `file`) validated
/// whole against the configuration, then each tenant replaced in the database.
async fn import(db: &Database, config: &RouterConfig, file: Option<PathBuf>) -> anyhow::Result<String> {
    db.migrate().await?;
    let mut file_config = config.clone();
    match (file, &config.directory_source) {
        (Some(f), _) => file_config.directory = f,
        (None, DirectorySource::File) => {}
        (None, DirectorySource::Postgres(_)) => {
            return Err(anyhow::anyhow!("the configuration reads the database: give the file to import with --file"));
        }
    }
    file_config.directory_source = DirectorySource::File;
    // Validated whole against the configuration first: nothing invalid is written.
    let (_, tenants) = crate::control::Tenants::load_with(file_config.clone())?;
    let sections = Directory::raw_sections(&file_config)?;
    let mut ids: Vec<String> = sections.iter().map(|(id, _)| id.clone()).collect();
    // The configuration's tenants get a row too (no settings), for their policy versions.
    let mut sections = sections;
    for t in tenants.iter() {
        if !ids.contains(&t.config.id) {
            ids.push(t.config.id.clone());
            sections.push((t.config.id.clone(), Default::default()));
        }
    }
    let mut client = db.client("importing").await?;
    let users = crate::db::directory::import(&mut client, sections).await?;
    Ok(format!(
        "imported {} from {}: {} tenants ({}), {users} users\n",
        file_config.directory.display(),
        file_config.path.display(),
        ids.len(),
        ids.join(", ")
    ))
}

/// `db upload`: a checked component stored as a new version of `tenant`.
async fn upload(
    db: &Database,
    config: &RouterConfig,
    config_path: &Path,
    tenant: &str,
    policy: &Path,
    by: &str,
    activate: bool,
) -> anyhow::Result<String> {
    let bytes = std::fs::read(policy).map_err(|e| anyhow::anyhow!("{}: {e}", policy.display()))?;
    crate::tools::check(policy)?;
    let client = db.client("uploading").await?;
    let known = crate::db::directory::tenant_ids(&**client).await?.iter().any(|t| t == tenant);
    if !known {
        if config.tenants.iter().any(|t| t.id == tenant) {
            policies::ensure_tenant(&client, tenant).await?;
        } else {
            return Err(anyhow::anyhow!("no tenant `{tenant}` in the database or in {}", config_path.display()));
        }
    }
    let version = policies::upload(&client, tenant, &bytes, by).await?;
    if activate {
        policies::activate(&client, tenant, Some(version), by).await?;
    }
    Ok(format!(
        "tenant {tenant}: version {version} ({}){}\n",
        crate::policy::hex_sha256(&bytes),
        if activate { ", active" } else { "" }
    ))
}

/// `db versions`: a tenant's policy versions, the active one starred.
async fn versions(db: &Database, tenant: &str) -> anyhow::Result<String> {
    let client = db.client("listing").await?;
    let versions = policies::list(&client, tenant).await?;
    let mut out = String::new();
    for v in versions {
        out.push_str(&format!(
            "{}{:>6}  {}  {:>8} bytes  uploaded {} by {}\n",
            if v.active { "*" } else { " " },
            v.version_id,
            v.sha256,
            v.size,
            v.uploaded_at,
            v.uploaded_by
        ));
    }
    Ok(out)
}
