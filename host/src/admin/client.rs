//! `exum-router policy ...`: the lifecycle actions of the admin API from the
//! command line, against the router the configuration names (its `[admin]`
//! address and token).

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// What to do (`exum-router policy ... <action>`).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
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
        policy: Option<std::path::PathBuf>,
        /// A kept version instead of a file.
        #[arg(long)]
        from: Option<u64>,
    },
    /// Start a canary: it serves this share of new calls, rolled back
    /// automatically when it does worse than the serving version.
    Canary {
        /// The component; or --from.
        policy: Option<std::path::PathBuf>,
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

/// Where the admin API is: `address` and `token` when given, else the
/// `[admin]` section of the configuration at `config`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The router configuration.
    pub config: std::path::PathBuf,
    /// The admin API's address, instead of the configuration's.
    pub address: Option<std::net::SocketAddr>,
    /// The bearer token, instead of the configuration's.
    pub token: Option<String>,
}

/// Runs `action` for `tenant` against the admin API `target` names; the API's
/// JSON answer, pretty-printed.
pub async fn run(target: &Target, tenant: &str, action: Action) -> anyhow::Result<String> {
    let admin = match target.address {
        Some(address) => {
            crate::control::config::Admin { address, token: target.token.clone(), token_file: None, names: Vec::new() }
        }
        None => {
            let config = crate::control::config::RouterConfig::load(&target.config)?;
            let mut admin = config
                .admin
                .ok_or_else(|| anyhow::anyhow!("{}: no [admin] section to reach", config.path.display()))?;
            if target.token.is_some() {
                admin.token = target.token.clone();
            } else if admin.token.is_none()
                && let Some(file) = &admin.token_file
            {
                // The router creates it at its first start.
                admin.token = Some(crate::admin::read_token(file)?);
            }
            if admin.address.port() == 0 {
                return Err(anyhow::anyhow!(
                    "{}: the admin address has port 0 (any free port): give the router's with --admin",
                    config.path.display()
                ));
            }
            admin
        }
    };
    let base = format!("/tenants/{tenant}/policy");
    let (method, path, body) = match action {
        Action::History => ("GET", format!("{base}/history"), Vec::new()),
        Action::Rollback { to } => {
            ("POST", format!("{base}/rollback{}", to.map_or(String::new(), |n| format!("?to={n}"))), Vec::new())
        }
        Action::Shadow { policy, from } => candidate("shadow", policy, from, None, &base)?,
        Action::Canary { policy, from, share } => candidate("canary", policy, from, Some(share), &base)?,
        Action::Status => ("GET", format!("{base}/candidate"), Vec::new()),
        Action::Sample { n } => ("GET", format!("{base}/candidate/samples/{n}"), Vec::new()),
        Action::Promote => ("POST", format!("{base}/candidate/promote"), Vec::new()),
        Action::Abandon => ("DELETE", format!("{base}/candidate"), Vec::new()),
    };
    let (status, body) = request(admin.address, admin.token.as_deref(), method, &path, &body).await?;
    let pretty = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    if (200..300).contains(&status) {
        Ok(format!("{pretty}\n"))
    } else {
        Err(anyhow::anyhow!("the router answered {status}: {pretty}"))
    }
}

/// One HTTP/1.1 request; the status and the body.
async fn request(
    addr: std::net::SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}X-Uploaded-By: cli\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .map_err(|_| anyhow::anyhow!("the admin API at {addr} did not answer in 60 s"))?
        .map_err(|e| anyhow::anyhow!("the admin API at {addr}: {e}"))?;
    let split =
        out.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| anyhow::anyhow!("a malformed HTTP response"))?;
    let head = String::from_utf8_lossy(&out[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("a malformed status line"))?;
    let mut body = out[split + 4..].to_vec();
    // hyper answers small bodies with Content-Length, larger ones chunked.
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || eol + 2 + size > b.len() {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

/// The request that starts a candidate in `mode` from a file or a kept version.
fn candidate(
    mode: &str,
    file: Option<std::path::PathBuf>,
    from: Option<u64>,
    share: Option<f64>,
    base: &str,
) -> anyhow::Result<(&'static str, String, Vec<u8>)> {
    let mut q = format!("mode={mode}");
    if let Some(s) = share {
        q.push_str(&format!("&share={s}"));
    }
    if let Some(n) = from {
        q.push_str(&format!("&from={n}"));
    }
    let body = match file {
        Some(f) => std::fs::read(&f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?,
        None => Vec::new(),
    };
    Ok(("POST", format!("{base}/candidate?{q}"), body))
}
