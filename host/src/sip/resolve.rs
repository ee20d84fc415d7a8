//! Locating SIP servers (RFC 3263): a target URI becomes an ordered list of
//! addresses, each with its transport and the host name its TLS certificate must
//! carry. IP literals are used as they are; names in `[dns] hosts` come from
//! configuration; other names go through DNS: NAPTR for the transport when the
//! URI does not say it, SRV for the port when it does not give one (by priority,
//! then weighted at random as RFC 2782 asks), A and AAAA. The proxy tries the
//! addresses in order, moving on when one does not answer at all.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;

use crate::model::Transport;
use crate::model::dns::DnsSettings;
use crate::model::uri::{Scheme, UriRef};

/// One place to send a request to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The address.
    pub addr: SocketAddr,
    /// The transport.
    pub transport: Transport,
    /// The host name a TLS server there must prove (the URI's host, or the SRV
    /// target's name).
    pub name: String,
}

/// Why a target has no destination.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The target is not a SIP URI.
    #[error("{0}")]
    Uri(String),
    /// A host name, and no DNS configured to look it up.
    #[error("{0}: no DNS configured")]
    NoDns(String),
    /// The lookup failed (no such name, a server failure, a timeout).
    #[error("{host}: {source}")]
    Lookup {
        /// The host looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: Box<hickory_resolver::ResolveError>,
    },
    /// The name exists and has no address.
    #[error("{0}: no address")]
    NoAddress(String),
}

/// The resolver of the proxy.
pub struct Resolver {
    dns: Option<TokioResolver>,
    hosts: BTreeMap<String, Vec<IpAddr>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").field("hosts", &self.hosts).finish_non_exhaustive()
    }
}

fn default_port(t: Transport) -> u16 {
    if t == Transport::Tls { 5061 } else { 5060 }
}

/// The SRV prefix of a transport.
fn srv_prefix(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "_sip._udp.",
        Transport::Tcp => "_sip._tcp.",
        Transport::Tls => "_sips._tcp.",
    }
}

impl Resolver {
    /// A resolver with these settings (the system's name servers when none are given).
    pub fn new(settings: &DnsSettings) -> Resolver {
        let provider = TokioConnectionProvider::default();
        let builder = if settings.servers.is_empty() {
            match TokioResolver::builder(provider) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "no system DNS configuration; only IP addresses and [dns] hosts resolve");
                    None
                }
            }
        } else {
            let group: Vec<NameServerConfig> =
                settings.servers.iter().map(|s| NameServerConfig::new(*s, Protocol::Udp)).collect();
            let config = ResolverConfig::from_parts(None, vec![], NameServerConfigGroup::from(group));
            Some(TokioResolver::builder_with_config(config, provider))
        };
        let dns = builder.map(|mut b| {
            let opts: &mut ResolverOpts = b.options_mut();
            opts.timeout = std::time::Duration::from_secs(2);
            opts.attempts = 2;
            b.build()
        });
        let hosts = settings.hosts.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
        Resolver { dns, hosts }
    }

    /// [`Self::resolve`] when it needs no lookup (an IP address or a static
    /// host); `None` when it does.
    pub fn resolve_now(&self, uri: &str, forced: Option<Transport>) -> Option<Vec<Destination>> {
        let u = UriRef::parse(uri).ok()?;
        let (transport, host, numeric) = parts(&u, forced);
        let ips = numeric.map(|ip| vec![ip]).or_else(|| self.hosts.get(&host).cloned())?;
        Some(destinations(&u, transport, &host, numeric, ips))
    }

    /// The destinations of `uri`, in the order to try them; `forced` is a
    /// transport the decision asked for.
    pub async fn resolve(&self, uri: &str, forced: Option<Transport>) -> Result<Vec<Destination>, ResolveError> {
        let u = UriRef::parse(uri).map_err(|e| ResolveError::Uri(e.to_string()))?;
        let (transport, host, numeric) = parts(&u, forced);
        let fixed = numeric.map(|ip| vec![ip]).or_else(|| self.hosts.get(&host).cloned());
        // An IP address, a static host, or an explicit port: no NAPTR or SRV.
        if fixed.is_some() || u.port.is_some() {
            let ips = match fixed {
                Some(ips) => ips,
                None => self.addresses(&host).await?,
            };
            return Ok(destinations(&u, transport, &host, numeric, ips));
        }
        // The transport: the URI's, else NAPTR (RFC 3263 §4.1), else SRV per transport.
        let mut srv_names: Vec<(Transport, String)> = Vec::new();
        match transport {
            Some(t) => srv_names.push((t, format!("{}{host}", srv_prefix(t)))),
            None => {
                srv_names = self.naptr(&host).await;
                if srv_names.is_empty() {
                    srv_names = [Transport::Udp, Transport::Tcp, Transport::Tls]
                        .into_iter()
                        .map(|t| (t, format!("{}{host}", srv_prefix(t))))
                        .collect();
                }
            }
        }
        let mut out = Vec::new();
        for (t, name) in srv_names {
            for (target, port) in self.srv(&name).await {
                match self.addresses(&target).await {
                    Ok(ips) => out.extend(ips.into_iter().map(|ip| Destination {
                        addr: SocketAddr::new(ip, port),
                        transport: t,
                        name: target.clone(),
                    })),
                    Err(e) => tracing::debug!(host = %target, srv = %name, error = %e, "no address for an SRV target"),
                }
            }
            if !out.is_empty() && transport.is_some() {
                break;
            }
        }
        if out.is_empty() {
            // No SRV: the host's addresses on the transport's default port (§4.2).
            let t = transport.unwrap_or(Transport::Udp);
            let ips = self.addresses(&host).await?;
            out = ips
                .into_iter()
                .map(|ip| Destination { addr: SocketAddr::new(ip, default_port(t)), transport: t, name: host.clone() })
                .collect();
        }
        Ok(out)
    }

    /// A and AAAA of `host` (a static host first).
    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(ips) = self.hosts.get(&host) {
            return Ok(ips.clone());
        }
        let Some(dns) = self.dns.as_ref() else { return Err(ResolveError::NoDns(host)) };
        let ips: Vec<IpAddr> = match dns.lookup_ip(format!("{host}.")).await {
            Ok(lookup) => lookup.iter().collect(),
            Err(source) => return Err(ResolveError::Lookup { host, source: Box::new(source) }),
        };
        if ips.is_empty() { Err(ResolveError::NoAddress(host)) } else { Ok(ips) }
    }

    /// NAPTR records of `host` for SIP over UDP, TCP and TLS, in order and
    /// preference: (transport, SRV name).
    async fn naptr(&self, host: &str) -> Vec<(Transport, String)> {
        let Some(dns) = &self.dns else { return Vec::new() };
        let Ok(lookup) = dns.lookup(format!("{host}."), RecordType::NAPTR).await else { return Vec::new() };
        let mut records: Vec<(u16, u16, Transport, String)> = lookup
            .record_iter()
            .filter_map(|r| match r.data() {
                RData::NAPTR(n) => {
                    let service = String::from_utf8_lossy(n.services()).to_ascii_uppercase();
                    let t = match service.as_str() {
                        "SIP+D2U" => Transport::Udp,
                        "SIP+D2T" => Transport::Tcp,
                        "SIPS+D2T" => Transport::Tls,
                        _ => return None,
                    };
                    let flags = String::from_utf8_lossy(n.flags()).to_ascii_lowercase();
                    (flags == "s").then(|| (n.order(), n.preference(), t, n.replacement().to_ascii()))
                }
                _ => None,
            })
            .collect();
        records.sort_by_key(|r| (r.0, r.1));
        records.into_iter().map(|(_, _, t, name)| (t, name.trim_end_matches('.').to_owned())).collect()
    }

    /// SRV targets of `name`: by priority, and within one priority ordered by a
    /// weighted random draw (RFC 2782).
    async fn srv(&self, name: &str) -> Vec<(String, u16)> {
        let Some(dns) = &self.dns else { return Vec::new() };
        let Ok(lookup) = dns.srv_lookup(format!("{name}.")).await else { return Vec::new() };
        let mut records: Vec<(u16, u16, String, u16)> = lookup
            .iter()
            .filter(|s| s.target().to_ascii() != ".")
            .map(|s| (s.priority(), s.weight(), s.target().to_ascii().trim_end_matches('.').to_owned(), s.port()))
            .collect();
        records.sort_by_key(|r| r.0);
        let mut out = Vec::with_capacity(records.len());
        let mut seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        let mut rest = records.as_slice();
        while let Some(first) = rest.first() {
            let same = rest.iter().take_while(|r| r.0 == first.0).count();
            let mut group: Vec<(u16, u16, String, u16)> = rest[..same].to_vec();
            while !group.is_empty() {
                let total: u64 = group.iter().map(|r| u64::from(r.1)).sum();
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let pick = if total == 0 {
                    0
                } else {
                    let mut draw = seed % (total + 1);
                    group
                        .iter()
                        .position(|r| {
                            let w = u64::from(r.1);
                            if draw <= w && w > 0 {
                                true
                            } else {
                                draw = draw.saturating_sub(w);
                                false
                            }
                        })
                        .unwrap_or(0)
                };
                let r = group.remove(pick);
                out.push((r.2, r.3));
            }
            rest = &rest[same..];
        }
        out
    }
}

/// The transport `u` asks for (`forced` first), its host in lower case
/// without brackets, and the host's address when it is one.
fn parts(u: &UriRef<'_>, forced: Option<Transport>) -> (Option<Transport>, String, Option<IpAddr>) {
    let sips = u.scheme == Scheme::Sips;
    let param = u.param("transport").flatten().map(str::to_ascii_lowercase);
    let named = match param.as_deref() {
        Some("tcp") if sips => Some(Transport::Tls),
        Some("tcp") => Some(Transport::Tcp),
        Some("tls") => Some(Transport::Tls),
        Some("udp") => Some(Transport::Udp),
        _ if sips => Some(Transport::Tls),
        _ => None,
    };
    let host = u.host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let numeric = exum_address::ip_literal(&host);
    (forced.or(named), host, numeric)
}

/// The destinations of a URI whose host needs no NAPTR or SRV lookup: each of
/// `ips` on the URI's port (else the transport's default), over `transport`
/// (UDP when none). A numeric host is named by its address as written
/// canonically (a TLS server name; `2001:db8:::192.0.2.1` is not one).
fn destinations(
    u: &UriRef<'_>,
    transport: Option<Transport>,
    host: &str,
    numeric: Option<IpAddr>,
    ips: Vec<IpAddr>,
) -> Vec<Destination> {
    let t = transport.unwrap_or(Transport::Udp);
    let port = u.port.unwrap_or(default_port(t));
    let name = numeric.map_or_else(|| host.to_owned(), |ip| ip.to_string());
    ips.into_iter()
        .map(|ip| Destination { addr: SocketAddr::new(ip, port), transport: t, name: name.clone() })
        .collect()
}
