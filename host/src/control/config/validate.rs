//! Validation of the configuration file, one function per section, each
//! returning the key and the reason of what it refuses.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::*;
use super::*;
impl RouterConfig {
    /// Validates the file `path` holds, one section at a time; the first key
    /// refused is the error.
    pub(super) fn validate(path: &Path, file: ConfigFile) -> Result<RouterConfig, ConfigError> {
        let invalid = |(key, reason): KeyError| ConfigError::invalid(path, key, reason);
        // Paths inside the file are relative to its folder, made absolute once
        // here (the working directory does not change later, and the watcher
        // compares the absolute paths the OS reports with these).
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().unwrap_or(Path::new("/"));
        let defaults = limits(Limits::default(), file.policy_defaults, "policy_defaults").map_err(invalid)?;
        let providers = hosting_providers(file.hosting_providers).map_err(invalid)?;
        let tenants = tenants(file.tenants, base, defaults, &providers).map_err(invalid)?;
        let listen = listen(file.listen, &file.tls).map_err(invalid)?;
        let sip_settings = sip(&file.sip, &file.overload).map_err(invalid)?;
        let probes = probes(&file.probes).map_err(invalid)?;
        let tls = tls(file.tls, base).map_err(invalid)?;
        let dns = dns(&file.dns).map_err(invalid)?;
        let policy_cache = file.policy_cache.as_ref().map(|d| base.join(d));
        let (directory, directory_source) =
            directory_source(base, file.directory, policy_cache.as_deref()).map_err(invalid)?;
        let records = records(file.records, base).map_err(invalid)?;
        let lifecycle = lifecycle(file.lifecycle).map_err(invalid)?;
        if records.is_none()
            && let Some((i, _)) = tenants.iter().enumerate().find(|(_, t)| t.record_decisions > 0.0)
        {
            return Err(invalid((
                format!("tenant[{i}].record_decisions"),
                "needs a [records] section (its dir)".into(),
            )));
        }
        let policy_dir = file.policy_dir.map(|d| base.join(d));
        if let Some(d) = &policy_dir
            && !d.is_dir()
        {
            return Err(invalid(("policy_dir".into(), format!("{} is not a directory", d.display()))));
        }
        let admin = admin(file.admin, base).map_err(invalid)?;
        let name = sip_name(file.sip.name).map_err(invalid)?;
        let hep = hep(file.hep, &name).map_err(invalid)?;
        let otel = otel(file.otel, &name).map_err(invalid)?;
        let policy_start_wait = policy_start_wait(file.policy_start_wait_s).map_err(invalid)?;
        let compile = file.compile.settings().map_err(invalid)?;
        let shared_cache = file.compile.shared(base, policy_cache.as_deref()).map_err(invalid)?;
        let directory_settle = directory_settle(file.directory_settle_ms).map_err(invalid)?;
        Ok(RouterConfig {
            path: path.to_path_buf(),
            directory,
            directory_source,
            policy_dir,
            policy_cache,
            policy_start_wait,
            compile,
            shared_cache,
            directory_settle,
            records,
            lifecycle,
            admin,
            tenants,
            listen,
            sip: sip_settings,
            probes,
            tls,
            dns,
            secret: file.sip.secret,
            name,
            hep,
            otel,
            directory_may_remove_all_users: file.directory_may_remove_all_users,
            directory_max_removed_share: removed_share(file.directory_max_removed_share).map_err(invalid)?,
            directory_max_bytes: directory_max_bytes(file.directory_max_mib).map_err(invalid)?,
            policy_defaults: defaults,
            hosting_providers: providers,
        })
    }
}

/// A refused value: the key and the reason.
type KeyError = (String, String);

/// The error of a section function, as `validate` wraps it with the file.
fn invalid(key: String, reason: String) -> KeyError {
    (key, reason)
}

/// A duration in milliseconds within `range`, `default` when not given.
fn ms(
    key: &str,
    value: Option<u64>,
    default: Duration,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, KeyError> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(&v) => Ok(Duration::from_millis(v)),
        Some(v) => Err(invalid(key.to_owned(), format!("{v}: must be {} to {}", range.start(), range.end()))),
    }
}

/// `[[hosting_provider]]`.
fn hosting_providers(files: Vec<HostingProviderFile>) -> Result<Vec<HostingProvider>, KeyError> {
    let mut providers: Vec<HostingProvider> = Vec::with_capacity(files.len());
    for (i, p) in files.into_iter().enumerate() {
        let key = |field: &str| format!("hosting_provider[{i}].{field}");
        if p.identity.is_empty() || !p.identity.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(invalid(key("identity"), format!("`{}`: letters, digits, `-_.` only", p.identity)));
        }
        if providers.iter().any(|q| q.identity.eq_ignore_ascii_case(&p.identity)) {
            return Err(invalid(key("identity"), format!("`{}` is defined twice", p.identity)));
        }
        if p.proxy.contains(':') {
            check_sip_uri(&p.proxy).map_err(|r| invalid(key("proxy"), r))?;
        } else if !is_domain(&p.proxy.to_ascii_lowercase()) {
            return Err(invalid(key("proxy"), format!("`{}` is neither a host name nor a SIP URI", p.proxy)));
        }
        providers.push(HostingProvider {
            identity: p.identity,
            proxy: p.proxy,
            verification_level: p.verification_level,
            enabled: p.enabled,
            shared_address_space: p.shared_address_space,
            hosts_ocs_users: p.hosts_ocs_users,
        });
    }
    Ok(providers)
}

/// `[[tenant]]`: each one, and ids and domains unique across them.
fn tenants(
    files: Vec<TenantFile>,
    base: &Path,
    defaults: Limits,
    providers: &[HostingProvider],
) -> Result<Vec<TenantConfig>, KeyError> {
    let mut ids = HashSet::new();
    let mut domains = HashSet::new();
    let mut tenants = Vec::with_capacity(files.len());
    for (i, t) in files.into_iter().enumerate() {
        let key = |field: &str| format!("tenant[{i}].{field}");
        if !is_tenant_id(&t.id) {
            return Err(invalid(key("id"), format!("`{}` is not a tenant id ({TENANT_ID})", t.id)));
        }
        if !ids.insert(t.id.clone()) {
            return Err(invalid(key("id"), format!("tenant `{}` is defined twice", t.id)));
        }
        let ctx = TenantContext { base, defaults, providers };
        let tenant = tenant_config(t, &key, &ctx, &mut domains).map_err(|(k, r)| invalid(k, r))?;
        tenants.push(tenant);
    }
    Ok(tenants)
}

/// `[[listen]]`.
fn listen(files: Vec<ListenFile>, tls_file: &TlsFile) -> Result<Vec<Listen>, KeyError> {
    let mut listen = Vec::with_capacity(files.len());
    for (i, l) in files.into_iter().enumerate() {
        let address = l.address.parse().map_err(|_| {
            invalid(format!("listen[{i}].address"), format!("`{}` is not an IP address and port", l.address))
        })?;
        let (mut udp, mut tcp, mut tls) = (false, false, false);
        for (j, t) in l.transports.iter().enumerate() {
            match t.to_ascii_lowercase().as_str() {
                "udp" => udp = true,
                "tcp" => tcp = true,
                "tls" => tls = true,
                other => {
                    return Err(invalid(
                        format!("listen[{i}].transports[{j}]"),
                        format!("`{other}`: expected \"udp\", \"tcp\" or \"tls\""),
                    ));
                }
            }
        }
        if tls && (tls_file.certificate.is_none() || tls_file.key.is_none()) {
            return Err(invalid(
                format!("listen[{i}].transports"),
                "a TLS listener needs [tls] certificate and key".into(),
            ));
        }
        if tls && (udp || tcp) {
            return Err(invalid(
                format!("listen[{i}].transports"),
                "TLS listens on its own address (usually port 5061): give it a [[listen]] of its own".into(),
            ));
        }
        if !udp && !tcp && !tls {
            return Err(invalid(format!("listen[{i}].transports"), "no transport".into()));
        }
        let allow =
            crate::control::acl::parse_list(&format!("listen[{i}].allow"), &l.allow).map_err(|(k, r)| invalid(k, r))?;
        let allow_names = l.allow_names.iter().map(|n| n.to_ascii_lowercase()).collect();
        listen.push(Listen { address, udp, tcp, tls, allow, allow_names });
    }
    Ok(listen)
}

/// `[sip]`, with `[overload]`.
fn sip(file: &SipFile, overload_file: &OverloadFile) -> Result<SipSettings, KeyError> {
    let d = SipSettings::default();
    let mut sip = SipSettings {
        t1: ms("sip.t1_ms", file.t1_ms, d.t1, 10..=10_000)?,
        t2: ms("sip.t2_ms", file.t2_ms, d.t2, 10..=60_000)?,
        t4: ms("sip.t4_ms", file.t4_ms, d.t4, 10..=60_000)?,
        target_timeout: ms("sip.target_timeout_ms", file.target_timeout_ms, d.target_timeout, 100..=180_000)?,
        timer_c: ms("sip.timer_c_ms", file.timer_c_ms, d.timer_c, 100..=3_600_000)?,
        max_message_bytes: match file.max_message_bytes {
            None => d.max_message_bytes,
            Some(n) if (1024..=1 << 20).contains(&n) => n,
            Some(n) => {
                return Err(invalid("sip.max_message_bytes".into(), format!("{n}: must be 1024 to 1048576")));
            }
        },
        tcp_idle_timeout: ms("sip.tcp_idle_timeout_ms", file.tcp_idle_timeout_ms, d.tcp_idle_timeout, 100..=3_600_000)?,
        tcp_first_message_timeout: ms(
            "sip.tcp_first_message_timeout_ms",
            file.tcp_first_message_timeout_ms,
            d.tcp_first_message_timeout,
            100..=3_600_000,
        )?,
        tcp_message_timeout: ms(
            "sip.tcp_message_timeout_ms",
            file.tcp_message_timeout_ms,
            d.tcp_message_timeout,
            100..=600_000,
        )?,
        tcp_send_timeout: ms("sip.tcp_send_timeout_ms", file.tcp_send_timeout_ms, d.tcp_send_timeout, 100..=600_000)?,
        tcp_lifetime: match file.tcp_lifetime_ms {
            None | Some(0) => None,
            Some(v) => Some(ms("sip.tcp_lifetime_ms", Some(v), Duration::ZERO, 1000..=604_800_000)?),
        },
        max_connections: match file.max_connections {
            None => d.max_connections,
            Some(n) if (1..=1_000_000).contains(&n) => n,
            Some(n) => return Err(invalid("sip.max_connections".into(), format!("{n}: must be 1 to 1000000"))),
        },
        max_connections_per_ip: match file.max_connections_per_ip {
            None => d.max_connections_per_ip,
            Some(n) if (1..=1_000_000).contains(&n) => n,
            Some(n) => {
                return Err(invalid("sip.max_connections_per_ip".into(), format!("{n}: must be 1 to 1000000")));
            }
        },
        shutdown_grace: ms("sip.shutdown_grace_ms", file.shutdown_grace_ms, d.shutdown_grace, 0..=600_000)?,
        udp_receive_buffer: match file.udp_receive_buffer_bytes {
            None => d.udp_receive_buffer,
            Some(n) if (64 * 1024..=256 << 20).contains(&n) => n,
            Some(n) => {
                return Err(invalid("sip.udp_receive_buffer_bytes".into(), format!("{n}: must be 65536 to 268435456")));
            }
        },
        udp_receivers: match file.udp_receivers {
            None => d.udp_receivers,
            Some(n) if (1..=64).contains(&n) => n,
            Some(n) => return Err(invalid("sip.udp_receivers".into(), format!("{n}: must be 1 to 64"))),
        },
        worker_threads: match file.worker_threads {
            None => d.worker_threads,
            Some(n) if (1..=256).contains(&n) => n,
            Some(n) => return Err(invalid("sip.worker_threads".into(), format!("{n}: must be 1 to 256"))),
        },
        overload: overload(overload_file)?,
    };
    // The per-target timer is the time to a target's first response: a
    // longer one than Timer B would be cut at Timer B without a word.
    let timer_b = sip.t1 * 64;
    if file.target_timeout_ms.is_none() {
        sip.target_timeout = sip.target_timeout.min(timer_b);
    } else if sip.target_timeout > timer_b {
        return Err(invalid(
            "sip.target_timeout_ms".into(),
            format!(
                "{}: the time to a target's first response is at most 64 × t1_ms = {} (Timer B); \
                 a target that rings is waited for under sip.timer_c_ms",
                sip.target_timeout.as_millis(),
                timer_b.as_millis()
            ),
        ));
    }
    if let Some(secret) = &file.secret
        && secret.len() < 16
    {
        return Err(invalid("sip.secret".into(), format!("{} characters: must be at least 16", secret.len())));
    }
    Ok(sip)
}

/// `[overload]`.
fn overload(f: &OverloadFile) -> Result<Overload, KeyError> {
    let o = Overload::default();
    Ok(Overload {
        max_transactions: f.max_transactions.unwrap_or(o.max_transactions),
        per_source_requests: f.per_source_requests.unwrap_or(o.per_source_requests),
        per_source_window: ms(
            "overload.per_source_window_ms",
            f.per_source_window_ms,
            o.per_source_window,
            1..=86_400_000,
        )?,
        retry_after_s: match f.retry_after_s {
            None => o.retry_after_s,
            Some(n) if (1..=3600).contains(&n) => n,
            Some(n) => {
                return Err(invalid("overload.retry_after_s".into(), format!("{n}: must be 1 to 3600")));
            }
        },
        stray_2xx_per_second: f.stray_2xx_per_second.unwrap_or(o.stray_2xx_per_second),
        max_transaction_bytes: f.max_transaction_bytes.unwrap_or(o.max_transaction_bytes),
        ban_after: f.ban_after.unwrap_or(o.ban_after),
        ban: ms("overload.ban_ms", f.ban_ms, o.ban, 1000..=86_400_000)?,
    })
}

/// `[probes]`.
fn probes(file: &ProbesFile) -> Result<Probes, KeyError> {
    let p = Probes::default();
    let probes = Probes {
        enabled: file.enabled.unwrap_or(p.enabled),
        interval: ms("probes.interval_ms", file.interval_ms, p.interval, 50..=3_600_000)?,
        timeout: ms("probes.timeout_ms", file.timeout_ms, p.timeout, 10..=60_000)?,
        down_after: file.down_after.unwrap_or(p.down_after).max(1),
        up_after: file.up_after.unwrap_or(p.up_after).max(1),
        gateways: file.gateways.unwrap_or(p.gateways),
    };
    Ok(probes)
}

/// `[tls]`: its paths relative to the file's folder.
fn tls(file: TlsFile, base: &Path) -> Result<TlsSettings, KeyError> {
    if file.require_client_certificate && file.ca.is_none() {
        return Err(invalid("tls.ca".into(), "required to verify client certificates".into()));
    }
    let tls = TlsSettings {
        certificate: file.certificate.map(|p| base.join(p)),
        key: file.key.map(|p| base.join(p)),
        ca: file.ca.map(|p| base.join(p)),
        require_client_certificate: file.require_client_certificate,
    };
    Ok(tls)
}

/// `[dns]`.
fn dns(file: &DnsFile) -> Result<crate::model::dns::DnsSettings, KeyError> {
    let mut dns = crate::model::dns::DnsSettings::default();
    for (i, server) in file.servers.iter().enumerate() {
        let addr = server
            .parse::<std::net::SocketAddr>()
            .or_else(|_| server.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 53)))
            .map_err(|_| invalid(format!("dns.servers[{i}]"), format!("`{server}` is not an IP address (and port)")))?;
        dns.servers.push(addr);
    }
    for (name, ips) in &file.hosts {
        let parsed = ips
            .iter()
            .enumerate()
            .map(|(j, ip)| {
                ip.parse::<std::net::IpAddr>()
                    .map_err(|_| invalid(format!("dns.hosts.{name}[{j}]"), format!("`{ip}` is not an IP address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Err(invalid(format!("dns.hosts.{name}"), "no address".into()));
        }
        dns.hosts.insert(name.to_ascii_lowercase(), parsed);
    }
    Ok(dns)
}

/// `[records]`.
fn records(
    file: Option<RecordsFile>,
    base: &Path,
) -> Result<Option<crate::control::policy_settings::RecordSettings>, KeyError> {
    let records = match file {
        None => None,
        Some(r) => {
            let mib = r.max_mib_per_tenant.unwrap_or(16);
            if !(1..=1 << 20).contains(&mib) {
                return Err(invalid("records.max_mib_per_tenant".into(), format!("{mib}: 1 to 1048576")));
            }
            Some(crate::control::policy_settings::RecordSettings {
                dir: base.join(r.dir),
                max_bytes_per_tenant: mib << 20,
            })
        }
    };
    Ok(records)
}

/// `[lifecycle]`.
fn lifecycle(f: LifecycleFile) -> Result<Lifecycle, KeyError> {
    let lifecycle = {
        let d = Lifecycle::default();
        let l = Lifecycle {
            history: f.history.unwrap_or(d.history),
            shadow_samples: f.shadow_samples.unwrap_or(d.shadow_samples),
            rule: crate::control::policy_settings::CanaryRule {
                fault_margin: f.canary_fault_margin.unwrap_or(d.rule.fault_margin),
                failure_margin: f.canary_failure_margin.unwrap_or(d.rule.failure_margin),
                min_calls: f.canary_min_calls.unwrap_or(d.rule.min_calls),
            },
        };
        if !(2..=1000).contains(&l.history) {
            return Err(invalid("lifecycle.history".into(), format!("{}: 2 to 1000 versions", l.history)));
        }
        if !(1..=1000).contains(&l.shadow_samples) {
            return Err(invalid("lifecycle.shadow_samples".into(), format!("{}: 1 to 1000", l.shadow_samples)));
        }
        for (key, v) in [
            ("lifecycle.canary_fault_margin", l.rule.fault_margin),
            ("lifecycle.canary_failure_margin", l.rule.failure_margin),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(key.into(), format!("{v}: a share from 0 to 1")));
            }
        }
        if l.rule.min_calls == 0 {
            return Err(invalid("lifecycle.canary_min_calls".into(), "at least 1".into()));
        }
        l
    };
    Ok(lifecycle)
}

/// `[admin]`.
fn admin(file: Option<AdminFile>, base: &Path) -> Result<Option<Admin>, KeyError> {
    let admin = match file {
        None => None,
        Some(a) => {
            let address: std::net::SocketAddr = a.address.parse().map_err(|_| {
                invalid("admin.address".into(), format!("`{}` is not an IP address and port", a.address))
            })?;
            if a.token.as_deref().is_some_and(|t| !t.is_empty()) && a.token_file.is_some() {
                return Err(invalid("admin.token_file".into(), "give a token or a token_file, not both".into()));
            }
            if !address.ip().is_loopback() && a.token.as_deref().is_none_or(str::is_empty) && a.token_file.is_none() {
                return Err(invalid("admin.token".into(), format!("required: {address} is not a loopback address")));
            }
            let mut names = Vec::with_capacity(a.names.len());
            for (i, n) in a.names.iter().enumerate() {
                let n = n.to_ascii_lowercase();
                if !is_domain(&n) && n.parse::<std::net::IpAddr>().is_err() {
                    return Err(invalid(format!("admin.names[{i}]"), format!("`{n}` is not a host name or address")));
                }
                names.push(n);
            }
            Some(Admin {
                address,
                token: a.token.filter(|t| !t.is_empty()),
                token_file: a.token_file.map(|f| base.join(f)),
                names,
            })
        }
    };
    Ok(admin)
}

/// `[hep]`.
fn hep(file: Option<HepFile>, name: &str) -> Result<Option<HepSettings>, KeyError> {
    let Some(h) = file else { return Ok(None) };
    let address: std::net::SocketAddr = h
        .address
        .parse()
        .map_err(|_| invalid("hep.address".into(), format!("`{}` is not an IP address and port", h.address)))?;
    let tcp = match h.transport.as_deref() {
        None | Some("udp") => false,
        Some("tcp") => true,
        Some(t) => return Err(invalid("hep.transport".into(), format!("`{t}`: udp or tcp"))),
    };
    let share = h.share.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&share) {
        return Err(invalid("hep.share".into(), format!("{share}: a share from 0 to 1")));
    }
    let queue = h.queue.unwrap_or(10_000);
    if !(1..=1_000_000).contains(&queue) {
        return Err(invalid("hep.queue".into(), format!("{queue}: must be 1 to 1000000")));
    }
    let node_name = h.node_name.unwrap_or_else(|| name.to_owned());
    if node_name.is_empty() || node_name.len() > 255 || node_name.bytes().any(|b| b.is_ascii_control()) {
        return Err(invalid("hep.node_name".into(), "1 to 255 characters, no control characters".into()));
    }
    if h.auth_key.as_ref().is_some_and(|k| k.len() > 1024) {
        return Err(invalid("hep.auth_key".into(), "at most 1024 bytes".into()));
    }
    Ok(Some(HepSettings {
        address,
        tcp,
        capture_id: h.capture_id.unwrap_or(1),
        auth_key: h.auth_key.filter(|k| !k.is_empty()),
        node_name,
        share,
        queue,
        decisions: h.decisions,
    }))
}

/// `[otel]`.
fn otel(file: Option<OtelFile>, name: &str) -> Result<Option<OtelSettings>, KeyError> {
    let Some(o) = file else { return Ok(None) };
    let endpoint = o.endpoint.trim().to_owned();
    if endpoint.starts_with("https://") {
        return Err(invalid(
            "otel.endpoint".into(),
            format!(
                "`{endpoint}`: https is not supported; export to a collector beside the router over http (it can forward over TLS)"
            ),
        ));
    }
    let rest = endpoint.strip_prefix("http://").unwrap_or("");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() || rest.contains(char::is_whitespace) {
        return Err(invalid(
            "otel.endpoint".into(),
            format!("`{endpoint}`: an http:// URL (http://127.0.0.1:4318/v1/traces)"),
        ));
    }
    // A collector's address alone means its OTLP traces path.
    let endpoint = if path.is_empty() { format!("http://{host}/v1/traces") } else { endpoint };
    let sample = o.sample.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample) {
        return Err(invalid("otel.sample".into(), format!("{sample}: a share from 0 to 1")));
    }
    let queue = o.queue.unwrap_or(4096);
    if !(16..=1_000_000).contains(&queue) {
        return Err(invalid("otel.queue".into(), format!("{queue}: must be 16 to 1000000")));
    }
    let sip_header = match o.sip_header {
        Some(h) if !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            // The router replaces this header in what it forwards: never one SIP itself uses.
            const SIP_OWN: [&str; 8] = [
                "max-forwards",
                "record-route",
                "require",
                "proxy-require",
                "content-length",
                "l",
                "tracestate",
                "supported",
            ];
            if crate::model::wire::Name::of(h.as_bytes()) != crate::model::wire::Name::Other
                || SIP_OWN.iter().any(|n| h.eq_ignore_ascii_case(n))
            {
                return Err(invalid("otel.sip_header".into(), format!("`{h}` is a header SIP itself uses")));
            }
            Some(h)
        }
        Some(h) => {
            return Err(invalid("otel.sip_header".into(), format!("`{h}`: a header name (letters, digits, `-`)")));
        }
        None => None,
    };
    let export_interval = ms("otel.export_interval_ms", o.export_interval_ms, Duration::from_secs(1), 10..=60_000)?;
    let timeout = ms("otel.timeout_ms", o.timeout_ms, Duration::from_secs(5), 100..=60_000)?;
    Ok(Some(OtelSettings {
        endpoint,
        sample,
        service_name: o.service_name.filter(|s| !s.is_empty()).unwrap_or_else(|| "exum-router".into()),
        instance: o.instance.filter(|s| !s.is_empty()).unwrap_or_else(|| name.to_owned()),
        sip_header,
        queue,
        export_interval,
        timeout,
    }))
}

/// `policy_start_wait_s`.
fn policy_start_wait(seconds: Option<f64>) -> Result<Duration, KeyError> {
    let policy_start_wait = match seconds {
        None => DEFAULT_POLICY_START_WAIT,
        Some(s) if s.is_finite() && (0.0..=3600.0).contains(&s) => Duration::from_secs_f64(s),
        Some(s) => {
            return Err(invalid(
                "policy_start_wait_s".into(),
                format!("{s}: must be a number of seconds from 0 to 3600"),
            ));
        }
    };
    Ok(policy_start_wait)
}

/// `directory_settle_ms`.
fn directory_settle(ms: Option<u64>) -> Result<Duration, KeyError> {
    let directory_settle = match ms {
        None => DEFAULT_DIRECTORY_SETTLE,
        Some(ms @ 50..=60_000) => Duration::from_millis(ms),
        Some(ms) => {
            return Err(invalid("directory_settle_ms".into(), format!("{ms}: 50 to 60000 milliseconds")));
        }
    };
    Ok(directory_settle)
}

/// `[sip] name`: the router's name in Via and Record-Route, else the host's.
fn sip_name(name: Option<String>) -> Result<String, KeyError> {
    match name {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') => Ok(n),
        Some(n) => Err(invalid("sip.name".into(), format!("`{n}`: must be a host name without quotes or spaces"))),
        None => Ok(host_name()),
    }
}

/// `directory_max_removed_share`.
fn removed_share(x: Option<f64>) -> Result<f64, KeyError> {
    match x {
        None => Ok(0.5),
        Some(x) if x.is_finite() && (0.0..=1.0).contains(&x) => Ok(x),
        Some(x) => Err(invalid("directory_max_removed_share".into(), format!("{x}: must be 0 to 1"))),
    }
}

/// `directory_max_mib`, in bytes.
fn directory_max_bytes(mib: Option<u64>) -> Result<u64, KeyError> {
    match mib {
        None => Ok(64 << 20),
        Some(n) if (1..=4096).contains(&n) => Ok(n << 20),
        Some(n) => Err(invalid("directory_max_mib".into(), format!("{n}: must be 1 to 4096"))),
    }
}

/// `directory = "file"`, or the `[directory]` table: the file (or the name a
/// database's errors are reported under) and the source.
pub(super) fn directory_source(
    base: &Path,
    value: serde_json::Value,
    policy_cache: Option<&Path>,
) -> Result<(PathBuf, DirectorySource), (String, String)> {
    let section: DirectorySection = match value {
        serde_json::Value::String(file) if !file.is_empty() => return Ok((base.join(file), DirectorySource::File)),
        serde_json::Value::Object(_) => serde_path_to_error::deserialize(value)
            .map_err(|e| (format!("directory.{}", e.path()), e.into_inner().to_string()))?,
        _ => {
            return Err((
                "directory".into(),
                "expected a file name, or a [directory] table with `source = \"file\"` or `\"postgres\"`".into(),
            ));
        }
    };
    let key = |k: &str| format!("directory.{k}");
    match section.source.as_str() {
        "file" => {
            let file = section.file.ok_or_else(|| (key("file"), "required with source = \"file\"".to_owned()))?;
            for (k, given) in [
                ("url", section.url.is_some()),
                ("url_env", section.url_env.is_some()),
                ("tls", section.tls),
                ("ca", section.ca.is_some()),
                ("pool_size", section.pool_size.is_some()),
                ("migrate", section.migrate.is_some()),
                ("connect_timeout_ms", section.connect_timeout_ms.is_some()),
                ("snapshot", section.snapshot.is_some()),
                ("snapshot_file", section.snapshot_file.is_some()),
                ("read_url", section.read_url.is_some()),
                ("read_url_env", section.read_url_env.is_some()),
                ("read_wait_ms", section.read_wait_ms.is_some()),
            ] {
                if given {
                    return Err((key(k), "only for source = \"postgres\"".into()));
                }
            }
            Ok((base.join(file), DirectorySource::File))
        }
        "postgres" => {
            if section.file.is_some() {
                return Err((key("file"), "only for source = \"file\"".into()));
            }
            let url = connection_string(&key, "url", section.url, section.url_env)?
                .ok_or_else(|| (key("url"), "required with source = \"postgres\" (or url_env)".to_owned()))?;
            let read_url = connection_string(&key, "read_url", section.read_url, section.read_url_env)?;
            let read_wait = Duration::from_millis(section.read_wait_ms.unwrap_or(1000));
            match (read_url.is_some(), section.read_wait_ms) {
                (false, Some(_)) => return Err((key("read_wait_ms"), "only with read_url".into())),
                _ if !(10..=60_000).contains(&read_wait.as_millis()) => {
                    return Err((key("read_wait_ms"), "must be 10 to 60000".into()));
                }
                _ => {}
            }
            let pool_size = section.pool_size.unwrap_or(4);
            if !(1..=64).contains(&pool_size) {
                return Err((key("pool_size"), format!("{pool_size}: must be 1 to 64")));
            }
            let tls_ca = match (section.tls, section.ca) {
                (true, Some(ca)) => Some(base.join(ca)),
                (true, None) => {
                    return Err((
                        key("ca"),
                        "required with tls = true: the CA that signed the database's certificate".into(),
                    ));
                }
                (false, Some(_)) => return Err((key("ca"), "only with tls = true".into())),
                (false, None) => None,
            };
            let connect_timeout = Duration::from_millis(section.connect_timeout_ms.unwrap_or(5000));
            if !(100..=60_000).contains(&connect_timeout.as_millis()) {
                return Err((key("connect_timeout_ms"), "must be 100 to 60000".into()));
            }
            let snapshot = match (section.snapshot.unwrap_or(true), section.snapshot_file) {
                (false, Some(_)) => return Err((key("snapshot_file"), "given with snapshot = false".into())),
                (false, None) => None,
                (true, Some(f)) => Some(base.join(f)),
                (true, None) => policy_cache.map(|d| d.join("directory.snapshot")),
            };
            Ok((
                PathBuf::from("postgres"),
                DirectorySource::Postgres(PostgresSettings {
                    url,
                    pool_size,
                    tls_ca,
                    connect_timeout,
                    migrate: section.migrate.unwrap_or(true),
                    snapshot,
                    read_url,
                    read_wait,
                }),
            ))
        }
        other => Err((key("source"), format!("`{other}`: expected \"file\" or \"postgres\""))),
    }
}

/// A connection string given as `{name}` or read from the environment
/// variable `{name}_env`; `None` when neither is given.
fn connection_string(
    key: &dyn Fn(&str) -> String,
    name: &str,
    given: Option<String>,
    env: Option<String>,
) -> Result<Option<String>, (String, String)> {
    let env_key = format!("{name}_env");
    let (url, at) = match (given, env) {
        (None, None) => return Ok(None),
        (Some(u), None) if !u.is_empty() => (u, key(name)),
        (Some(_), None) => return Err((key(name), "empty".into())),
        (None, Some(var)) => {
            let u = std::env::var(&var)
                .map_err(|_| (key(&env_key), format!("the environment variable `{var}` is not set (or not UTF-8)")))?;
            (u, key(&env_key))
        }
        (Some(_), Some(_)) => return Err((key(name), format!("give {name} or {env_key}, not both"))),
    };
    url.parse::<tokio_postgres::Config>().map_err(|e| (at, format!("not a connection string: {e}")))?;
    Ok(Some(url))
}

/// The host's name (`uname -n`), or `exum-router` when it has none.
pub fn host_name() -> String {
    let name = rustix::system::uname().nodename().to_string_lossy().into_owned();
    if name.is_empty() { "exum-router".to_owned() } else { name }
}

/// What validating a tenant's settings needs besides them: the folder policy
/// paths are relative to, the limits tenants inherit, the hosting providers.
pub(crate) struct TenantContext<'a> {
    /// The folder of the file the tenant is defined in.
    pub base: &'a Path,
    /// `[policy_defaults]`.
    pub defaults: Limits,
    /// The `[[hosting_provider]]`s.
    pub providers: &'a [HostingProvider],
}

/// Validates one tenant's settings (`[[tenant]]` in the configuration, or a
/// tenant defined in the directory); `key` names a field for errors; `domains`
/// holds the domains other tenants own and gains this tenant's.
pub(super) fn tenant_config(
    t: TenantFile,
    key: &dyn Fn(&str) -> String,
    ctx: &TenantContext<'_>,
    domains: &mut HashSet<String>,
) -> Result<TenantConfig, (String, String)> {
    if t.domains.is_empty() {
        return Err((key("domains"), "a tenant needs at least one SIP domain".into()));
    }
    let mut tenant_domains = Vec::with_capacity(t.domains.len());
    for (j, d) in t.domains.iter().enumerate() {
        let d = d.to_ascii_lowercase();
        if !is_domain(&d) {
            return Err((key(&format!("domains[{j}]")), format!("`{d}` is not a domain name")));
        }
        if !domains.insert(d.clone()) {
            return Err((key(&format!("domains[{j}]")), format!("domain `{d}` belongs to another tenant already")));
        }
        tenant_domains.push(d);
    }
    let policy = match t.policy.as_deref() {
        None | Some("standard") => PolicySource::Standard,
        Some("") => {
            return Err((key("policy"), "empty path; use \"standard\" or a .wasm file".into()));
        }
        Some(p) => PolicySource::File(ctx.base.join(p)),
    };
    let fallback = match t.fallback {
        None => Fallback::Standard,
        Some(FallbackFile::Named(n)) if n == "standard" => Fallback::Standard,
        Some(FallbackFile::Named(n)) => {
            return Err((key("fallback"), format!("`{n}`: expected \"standard\" or a reject code 400-699")));
        }
        Some(FallbackFile::Code(c)) if (400..=699).contains(&c) => Fallback::Reject(c as u16),
        Some(FallbackFile::Code(c)) => {
            return Err((key("fallback"), format!("{c}: a reject code must be 400-699")));
        }
    };
    let limits = limits(ctx.defaults, t.limits, &key("limits"))?;
    for (field, value) in [
        ("edge", &t.edge),
        ("default_next_hop", &t.default_next_hop),
        ("pstn_gateway", &t.pstn_gateway),
        ("av_edge_gruu", &t.av_edge_gruu),
    ] {
        if let Some(v) = value {
            check_sip_uri(v).map_err(|r| (key(field), r))?;
        }
    }
    if t.utc_offset_minutes.abs() > 14 * 60 {
        return Err((key("utc_offset_minutes"), format!("{} is beyond ±14 hours", t.utc_offset_minutes)));
    }
    let tenant_rerouting = match t.rerouting {
        Some(r) => rerouting(r, t.pstn_gateway.as_deref(), &key("rerouting"))?,
        None => Rerouting::default(),
    };
    let mut site_rerouting = BTreeMap::new();
    for (site, r) in t.site_rerouting {
        let k = key(&format!("site_rerouting.{site}"));
        let r = rerouting(r, t.pstn_gateway.as_deref(), &k)?;
        site_rerouting.insert(site, r);
    }
    let peers = crate::control::acl::parse_list(&key("peers"), &t.peers)?;
    let record_decisions = t.record_decisions.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&record_decisions) {
        return Err((key("record_decisions"), format!("{record_decisions}: a share from 0 to 1")));
    }
    let hep_share = match t.hep_share {
        Some(x) if !(0.0..=1.0).contains(&x) => {
            return Err((key("hep_share"), format!("{x}: a share from 0 to 1")));
        }
        Some(_) if !t.hep => return Err((key("hep_share"), "given with hep = false".into())),
        share => share.or((!t.hep).then_some(0.0)),
    };
    let signing = match t.signing {
        None => crate::control::policy_settings::Trust::default(),
        Some(s) => crate::control::policy_settings::Trust::new(&s.trusted_keys, s.required).map_err(|r| {
            let field = if r.starts_with("trusted_keys") { "signing" } else { "signing.required" };
            (key(field), r)
        })?,
    };
    let ldap = match t.ldap {
        Some(l) => Some(std::sync::Arc::new(crate::control::ldap::settings(l, &key("ldap"), ctx.base)?)),
        None => None,
    };
    let hosting_provider = match &t.hosting_provider {
        None => None,
        Some(_) if t.edge.is_some() => {
            return Err((
                key("hosting_provider"),
                "give either a hosting_provider or an edge (its shorthand), not both".into(),
            ));
        }
        Some(name) => Some(
            ctx.providers
                .iter()
                .find(|p| p.identity.eq_ignore_ascii_case(name))
                .cloned()
                .ok_or_else(|| (key("hosting_provider"), format!("`{name}` names no [[hosting_provider]]")))?,
        ),
    };
    Ok(TenantConfig {
        peers,
        id: t.id,
        domains: tenant_domains,
        policy,
        policy_config: t.policy_config,
        fallback,
        limits,
        edge: t.edge,
        hosting_provider,
        default_next_hop: t.default_next_hop,
        pstn_gateway: t.pstn_gateway,
        av_edge_gruu: t.av_edge_gruu,
        utc_offset_minutes: t.utc_offset_minutes,
        rerouting: tenant_rerouting,
        site_rerouting,
        record_route: t.record_route,
        uniform_user_answers: t.uniform_user_answers,
        record_decisions,
        hep_share,
        signing,
        ldap,
    })
}

/// A tenant defined in the directory file (`[tenants.ID]` with `domains` and
/// the other keys of `[[tenant]]`): its settings as a JSON value without `id`,
/// `key_prefix` naming it there (`tenants.ID`).
pub(crate) fn tenant_from_value(
    id: &str,
    mut settings: serde_json::Map<String, serde_json::Value>,
    key_prefix: &str,
    ctx: &TenantContext<'_>,
    domains: &mut HashSet<String>,
) -> Result<TenantConfig, (String, String)> {
    if !is_tenant_id(id) {
        return Err((key_prefix.to_owned(), format!("`{id}` is not a tenant id ({TENANT_ID})")));
    }
    if settings.contains_key("id") {
        return Err((format!("{key_prefix}.id"), "the section's name is the tenant's id".into()));
    }
    settings.insert("id".into(), serde_json::Value::String(id.to_owned()));
    let t: TenantFile = serde_path_to_error::deserialize(serde_json::Value::Object(settings))
        .map_err(|e| (format!("{key_prefix}.{}", e.path()), e.into_inner().to_string()))?;
    tenant_config(t, &|field: &str| format!("{key_prefix}.{field}"), ctx, domains)
}

pub(super) fn limits(base: Limits, file: LimitsFile, key: &str) -> Result<Limits, (String, String)> {
    let mut out = base;
    if let Some(ms) = file.deadline_ms {
        if !(1..=10_000).contains(&ms) {
            return Err((format!("{key}.deadline_ms"), format!("{ms}: must be 1 to 10000 milliseconds")));
        }
        out.deadline = Duration::from_millis(ms);
    }
    if let Some(ms) = file.runtime_deadline_ms {
        if !(1..=10_000).contains(&ms) {
            return Err((format!("{key}.runtime_deadline_ms"), format!("{ms}: must be 1 to 10000 milliseconds")));
        }
        out.runtime_deadline = Duration::from_millis(ms);
    }
    if let Some(mib) = file.memory_mib {
        if !(1..=4096).contains(&mib) {
            return Err((format!("{key}.memory_mib"), format!("{mib}: must be 1 to 4096 MiB")));
        }
        out.memory_bytes = (mib as usize) << 20;
    }
    if let Some(mib) = file.component_mib {
        let most = (crate::control::policy_settings::MAX_COMPONENT_BYTES >> 20) as u64;
        if !(1..=most).contains(&mib) {
            return Err((format!("{key}.component_mib"), format!("{mib}: must be 1 to {most} MiB")));
        }
        out.component_bytes = (mib as usize) << 20;
    }
    if let Some(n) = file.quarantine_after {
        if n == 0 {
            return Err((format!("{key}.quarantine_after"), "must be at least 1".into()));
        }
        out.quarantine_after = n;
    }
    Ok(out)
}

pub(super) fn rerouting(
    file: ReroutingFile,
    tenant_gateway: Option<&str>,
    key: &str,
) -> Result<Rerouting, (String, String)> {
    let number = |field: &str, value: Option<String>| -> Result<Option<String>, (String, String)> {
        match value {
            None => Ok(None),
            Some(v) => crate::model::uri::normalize_number(&v)
                .map(Some)
                .ok_or_else(|| (format!("{key}.{field}"), format!("`{v}` is not an E.164 number"))),
        }
    };
    let auto_attendant = number("auto_attendant", file.auto_attendant)?;
    let subscriber_access = number("subscriber_access", file.subscriber_access)?;
    if let Some(g) = &file.pstn_gateway {
        check_sip_uri(g).map_err(|r| (format!("{key}.pstn_gateway"), r))?;
    }
    let pstn_gateway = file.pstn_gateway.or_else(|| tenant_gateway.map(str::to_owned));
    if file.enabled {
        if pstn_gateway.is_none() {
            return Err((
                format!("{key}.pstn_gateway"),
                "rerouting is enabled but no PSTN gateway is set here or on the tenant".into(),
            ));
        }
        if auto_attendant.is_none() && subscriber_access.is_none() {
            return Err((
                key.to_owned(),
                "rerouting is enabled but neither auto_attendant nor subscriber_access is set".into(),
            ));
        }
    }
    Ok(Rerouting { enabled: file.enabled, auto_attendant, subscriber_access, pstn_gateway })
}

pub(super) fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
        })
}
