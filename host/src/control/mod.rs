//! The control plane's data: the router configuration and the directory, loaded
//! and validated together into [`Tenants`], the read-only view the policy plane
//! answers policies' imports from.

pub mod acl;
pub mod checked_file;
pub mod config;
pub mod directory;
pub mod health;
pub mod ldap;
pub mod live;
pub mod policy_settings;

pub use live::{LiveTenants, Overlay};

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use config::{RouterConfig, TenantConfig};
use serde::de::DeserializeOwned;

use crate::model::uri::Uri;
use directory::{Directory, TenantDirectory};

/// A configuration or directory file that cannot be used. Nothing of it is applied.
#[derive(Debug)]
pub enum ConfigError {
    /// The file cannot be read.
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid: syntax, a type, or a value that fails validation.
    Invalid {
        /// The file.
        file: PathBuf,
        /// The key, as a path (`tenant[0].domains[1]`); empty for a syntax error.
        key: String,
        /// Why.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(file: &Path, key: String, reason: String) -> Self {
        ConfigError::Invalid { file: file.to_path_buf(), key, reason }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Invalid { .. } => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { file, source } => {
                write!(f, "{}: cannot read: {source}", file.display())
            }
            ConfigError::Invalid { file, key, reason } if key.is_empty() || key == "." => {
                write!(f, "{}: {reason}", file.display())
            }
            ConfigError::Invalid { file, key, reason } => {
                write!(f, "{}: {key}: {reason}", file.display())
            }
        }
    }
}

/// One tenant: its configuration and its directory.
#[derive(Debug)]
pub struct Tenant {
    /// The tenant's configuration.
    pub config: TenantConfig,
    /// The tenant's directory (empty if the directory file has none).
    pub directory: TenantDirectory,
}

impl Tenant {
    /// A tenant with default settings and an empty directory.
    pub fn empty(id: &str) -> Tenant {
        Tenant { config: TenantConfig::empty(id), directory: TenantDirectory::default() }
    }
}

/// Every tenant, by id and by SIP domain. Immutable; a reload builds a new one.
#[derive(Debug, Default)]
pub struct Tenants {
    by_id: HashMap<String, Arc<Tenant>>,
    by_domain: HashMap<String, Arc<Tenant>>,
    order: Vec<Arc<Tenant>>,
}

impl Tenants {
    /// Loads the configuration at `path` and its directory; any invalid part
    /// refuses the whole.
    pub fn load(path: &Path) -> Result<(RouterConfig, Tenants), ConfigError> {
        Self::load_with(RouterConfig::load(path)?)
    }

    /// [`Tenants::load`] with the configuration already read.
    pub fn load_with(config: RouterConfig) -> Result<(RouterConfig, Tenants), ConfigError> {
        let directory = Directory::load(&config)?;
        for (file, key, t) in defined_tenants(&config, &directory) {
            check_hosting(file, &key, t, directory.tenants.get(&t.id))?;
        }
        let tenants = Tenants::new(&config, directory);
        Ok((config, tenants))
    }

    /// Loads the configuration at `path` and its directory again, tenant by
    /// tenant: the configuration must be valid whole, but a tenant whose
    /// directory section is invalid, or would leave a tenant that had users with
    /// none or remove more than `directory_max_removed_share` of them (a file
    /// caught half-written; unless `directory_may_remove_all_users`),
    /// keeps what it has in `old` (its directory, and its settings when it is
    /// defined in the directory), and the other tenants' updates apply. Returns
    /// the new tenants and why each refused tenant was refused.
    pub fn reload(path: &Path, old: &Tenants) -> Result<(RouterConfig, Tenants, Vec<String>), ConfigError> {
        let config = RouterConfig::load(path)?;
        let read = Directory::load_per_tenant(&config)?;
        let mut directory = read.directory;
        let mut refused: Vec<String> = Vec::new();
        let in_config = |id: &str| config.tenants.iter().any(|c| c.id == id);
        let mut keep_old = |id: &str, why: String, directory: &mut Directory| {
            refused.push(why);
            match old.by_id(id) {
                Some(t) => {
                    directory.tenants.insert(id.to_owned(), t.directory.clone());
                    if !in_config(id) {
                        directory.defined.insert(id.to_owned(), t.config.clone());
                    }
                }
                None => {
                    directory.tenants.remove(id);
                    directory.defined.remove(id);
                }
            }
        };
        for (id, e) in read.refused {
            keep_old(&id, format!("{e}; tenant `{id}` keeps its previous directory"), &mut directory);
        }
        let ids: Vec<String> = defined_tenants(&config, &directory).map(|(_, _, t)| t.id.clone()).collect();
        for id in ids {
            let before = old.by_id(&id).map_or(0, |o| o.directory.user_count());
            let after = directory.tenants.get(&id).map_or(0, TenantDirectory::user_count);
            let removed = before.saturating_sub(after);
            if !config.directory_may_remove_all_users && before > 0 && after == 0 {
                let why = format!(
                    "{}: tenant `{id}` had {before} users and would have none (a file still being written?); \
                     refused for that tenant, which keeps its previous directory \
                     (set directory_may_remove_all_users = true to allow it)",
                    config.directory.display(),
                );
                keep_old(&id, why, &mut directory);
            } else if !config.directory_may_remove_all_users
                && removed as f64 > config.directory_max_removed_share * before as f64
            {
                let why = format!(
                    "{}: tenant `{id}` would lose {removed} of its {before} users, more than \
                     directory_max_removed_share = {} (a file still being written?); refused for that tenant, \
                     which keeps its previous directory (raise the share, or set directory_may_remove_all_users \
                     = true, for one large removal)",
                    config.directory.display(),
                    config.directory_max_removed_share,
                );
                keep_old(&id, why, &mut directory);
            }
            let check = |directory: &Directory| {
                let found = defined_tenants(&config, directory).find(|(_, _, t)| t.id == id);
                match found {
                    Some((file, key, t)) => check_hosting(file, &key, t, directory.tenants.get(&id)),
                    None => Ok(()),
                }
            };
            if let Err(e) = check(&directory) {
                keep_old(&id, format!("{e}; tenant `{id}` keeps its previous directory"), &mut directory);
                // The previous directory does not fit the configuration either.
                check(&directory)?;
            }
        }
        let tenants = Tenants::new(&config, directory);
        Ok((config, tenants, refused))
    }

    /// These tenants with some replaced, added or removed (`None`), in one
    /// new set: the others are shared, not copied. A tenant keeps its place;
    /// new ones come last.
    pub fn with_changes(&self, changes: impl IntoIterator<Item = (String, Option<Tenant>)>) -> Tenants {
        self.with_shared(changes.into_iter().map(|(id, t)| (id, t.map(Arc::new))))
    }

    /// [`Tenants::with_changes`] with the new tenants already shared.
    pub fn with_shared(&self, changes: impl IntoIterator<Item = (String, Option<Arc<Tenant>>)>) -> Tenants {
        let mut replaced: HashMap<String, Option<Arc<Tenant>>> = changes.into_iter().collect();
        let mut out = Tenants::default();
        let add = |out: &mut Tenants, tenant: Arc<Tenant>| {
            for d in &tenant.config.domains {
                out.by_domain.insert(d.clone(), tenant.clone());
            }
            out.by_id.insert(tenant.config.id.clone(), tenant.clone());
            out.order.push(tenant);
        };
        out.by_id.reserve(self.by_id.len());
        out.by_domain.reserve(self.by_domain.len());
        out.order.reserve(self.order.len());
        for t in &self.order {
            match replaced.remove(&t.config.id) {
                None => add(&mut out, t.clone()),
                Some(Some(new)) => add(&mut out, new),
                Some(None) => {}
            }
        }
        let mut rest: Vec<Arc<Tenant>> = replaced.into_values().flatten().collect();
        rest.sort_by(|a, b| a.config.id.cmp(&b.config.id));
        for t in rest {
            add(&mut out, t);
        }
        out
    }

    /// The domains every tenant but `except` owns.
    pub fn domains_except(&self, except: &str) -> std::collections::HashSet<String> {
        self.by_domain.iter().filter(|(_, t)| t.config.id != except).map(|(d, _)| d.clone()).collect()
    }

    /// Joins a validated configuration and directory: the configuration's
    /// tenants in file order, then those the directory defines, by id.
    pub fn new(config: &RouterConfig, mut directory: Directory) -> Tenants {
        let mut tenants = Tenants::default();
        let defined = std::mem::take(&mut directory.defined);
        for c in config.tenants.iter().cloned().chain(defined.into_values()) {
            let tenant = Arc::new(Tenant { directory: directory.tenants.remove(&c.id).unwrap_or_default(), config: c });
            for d in &tenant.config.domains {
                tenants.by_domain.insert(d.clone(), tenant.clone());
            }
            tenants.by_id.insert(tenant.config.id.clone(), tenant.clone());
            tenants.order.push(tenant);
        }
        tenants
    }

    /// The tenant that owns SIP domain `host` (case-insensitive).
    pub fn by_domain(&self, host: &str) -> Option<&Arc<Tenant>> {
        match self.by_domain.get(host) {
            Some(t) => Some(t),
            None => self.by_domain.get(&host.to_ascii_lowercase()),
        }
    }

    /// The tenant with id `id`.
    pub fn by_id(&self, id: &str) -> Option<&Arc<Tenant>> {
        self.by_id.get(id)
    }

    /// Every tenant, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.order.iter()
    }
}

/// Every tenant with the file it is defined in and the key that names it
/// there: the configuration's `tenant[i]`, then the directory's `tenants.ID`.
fn defined_tenants<'a>(
    config: &'a RouterConfig,
    directory: &'a Directory,
) -> impl Iterator<Item = (&'a Path, String, &'a TenantConfig)> + 'a {
    let in_config = config.tenants.iter().enumerate().map(|(i, t)| (config.path.as_path(), format!("tenant[{i}]"), t));
    let in_directory = directory.defined.iter().map(|(id, t)| (config.directory.as_path(), format!("tenants.{id}"), t));
    in_config.chain(in_directory)
}

/// Hosted voice mail goes through a hosting provider (or an edge): a tenant
/// with hosted users or contacts and neither is refused, not sent straight to
/// the hosted destination. `file` and `key` name where the tenant is defined.
pub(crate) fn check_hosting(
    file: &Path,
    key: &str,
    t: &TenantConfig,
    directory: Option<&TenantDirectory>,
) -> Result<(), ConfigError> {
    if t.hosting_provider.is_none()
        && t.edge.is_none()
        && let Some(first) = directory.and_then(TenantDirectory::first_hosted)
    {
        return Err(ConfigError::invalid(
            file,
            format!("{key}.hosting_provider"),
            format!("required: the directory has hosted voice mail for `{}` ({first})", t.id),
        ));
    }
    Ok(())
}

/// Checks that `value` is a SIP or SIPS URI.
pub(crate) fn check_sip_uri(value: &str) -> Result<Uri, String> {
    match Uri::parse(value) {
        Ok(u) if u.scheme != "tel" => Ok(u),
        Ok(u) => Err(format!("`{value}`: a {} URI, expected sip: or sips:", u.scheme)),
        Err(e) => Err(format!("`{value}`: {e}")),
    }
}

/// Reads a TOML or JSON file (by extension: `.json` is JSON, anything else TOML)
/// into `T`, naming the key of any error.
pub(crate) fn read_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: path.to_path_buf(), source })?;
    parse_text(path, &text)
}

/// Deserializes `text` as the file `path` would be (JSON by extension, else TOML).
pub(crate) fn parse_text<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::invalid(path, key, format!("{inner}"))
        })
    } else {
        let line_of = |span: Option<std::ops::Range<usize>>| {
            span.map(|s| {
                let before = &text.as_bytes()[..s.start.min(text.len())];
                format!(" (line {})", before.iter().filter(|&&b| b == b'\n').count() + 1)
            })
            .unwrap_or_default()
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::invalid(path, String::new(), format!("{}{}", e.message(), line_of(e.span()))))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::invalid(path, key, format!("{}{}", inner.message(), line_of(inner.span())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str, domain: &str) -> Tenant {
        let mut config = TenantConfig::empty(id);
        config.domains = vec![domain.to_owned()];
        Tenant { config, directory: TenantDirectory::default() }
    }

    #[test]
    fn one_tenant_is_replaced_added_or_removed_and_the_others_are_shared() {
        let config = RouterConfig::with_tenants(vec![
            tenant("a", "a.com").config,
            tenant("b", "b.com").config,
            tenant("c", "c.com").config,
        ]);
        let before = Tenants::new(&config, Directory::default());
        let after = before.with_changes([
            ("b".to_owned(), Some(tenant("b", "b2.com"))),
            ("c".to_owned(), None),
            ("d".to_owned(), Some(tenant("d", "d.com"))),
        ]);
        let ids: Vec<&str> = after.iter().map(|t| t.config.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "d"], "places kept, new ones last");
        assert!(Arc::ptr_eq(before.by_id("a").expect("a"), after.by_id("a").expect("a")), "shared, not copied");
        assert!(after.by_domain("b.com").is_none() && after.by_domain("B2.com").is_some());
        assert!(after.by_id("c").is_none() && after.by_domain("c.com").is_none());
        assert_eq!(after.by_domain("d.com").map(|t| t.config.id.as_str()), Some("d"));
        let others = after.domains_except("b");
        assert!(others.contains("a.com") && others.contains("d.com") && !others.contains("b2.com"));
    }
}
