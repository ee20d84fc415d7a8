//! `GET /status`: a read-only page for operators, HTML rendered by the router
//! (nothing to build or install, no external asset): the directory source and
//! its connection; every probed target (UM servers, edges, gateways) up or
//! down, since when, and its last probe's round trip; per tenant its calls per
//! second, failed calls, fallbacks and decision p99 over the last minute with a
//! sparkline of the last 15 minutes (`traffic.rs`), its serving version (name,
//! manifest, hash, signer), state, candidate (shadow divergences or canary
//! share and counters), faults and last error. It reloads itself every 5
//! seconds; a few lines of script show times as ages and sum the table.

use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use serde_json::Value;

use super::Admin;
use crate::policy::FaultKind;
use crate::policy::candidate::{Divergence, Mode};

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f0f0f0}.ok{color:#070}.warn{color:#a60}.bad{color:#b00}code{font-size:12px}small{color:#666}\
td.num{text-align:right;font-variant-numeric:tabular-nums}svg.spark{display:block}";

const SCRIPT: &str = "for(const e of document.querySelectorAll('[data-epoch]')){\
const s=Math.max(0,Math.round(Date.now()/1000-Number(e.dataset.epoch)));\
e.textContent=s<120?s+' s ago':s<7200?Math.round(s/60)+' min ago':Math.round(s/3600)+' h ago';}\
let f=0;for(const e of document.querySelectorAll('[data-faults]'))f+=Number(e.dataset.faults);\
const t=document.getElementById('totals');\
if(t)t.textContent=document.querySelectorAll('tr.tenant').length+' tenants, '+f+' faults in all';";

impl Admin {
    /// The status page.
    pub(super) fn status_page(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
             <title>exum-router status</title><style>{STYLE}</style></head><body><h1>exum-router</h1>"
        );
        let _ = write!(h, "<p><small>exum-router {}</small></p>", esc(crate::release::VERSION));
        self.directory_section(&mut h);
        self.targets_section(&mut h);
        let _ = write!(
            h,
            "<h2>Tenants</h2><p id=\"totals\"></p><p><small>Figures over the last minute; the line: calls per second \
             over 15 minutes.</small></p><table id=\"tenants\"><thead><tr><th>tenant</th><th>state</th>\
             <th>calls/s</th><th>calls</th><th>failed</th><th>fallbacks</th><th>decision p99</th><th>last 15 min</th>\
             <th>serving version</th><th>candidate</th><th>faults</th><th>last error</th></tr></thead><tbody>"
        );
        let tenants = self.proxy.tenants();
        let metrics = &self.proxy.metrics;
        for t in tenants.iter() {
            let id = &t.config.id;
            let p = self.policy.get(t);
            let state = p.state();
            let class = match state {
                "active" | "standard" => "ok",
                "quarantined" => "bad",
                _ => "warn",
            };
            let faults: u64 = FaultKind::ALL.iter().map(|k| metrics.faults_of(id, k.as_str())).sum();
            let _ = write!(
                h,
                "<tr class=\"tenant\" id=\"tenant-{}\"><td><b>{}</b><br><small>{}</small></td><td class=\"{class} state\">{}</td>",
                esc(id),
                esc(id),
                esc(&t.config.domains.join(", ")),
                esc(state)
            );
            self.traffic_cells(&mut h, id);
            match &p.own {
                None => h.push_str("<td class=\"serving\">standard policy</td>"),
                Some(v) => {
                    let label = v.manifest.as_ref().map_or_else(|| v.name.clone(), |m| m.label());
                    let loaded = v.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    let _ = write!(
                        h,
                        "<td class=\"serving\">v{} <b>{}</b><br><code>{}</code><br><small>loaded <span data-epoch=\"{loaded}\">{loaded}</span>{}</small>",
                        v.version,
                        esc(&label),
                        esc(v.hash.get(..16).unwrap_or(&v.hash)),
                        v.signer.as_ref().map_or(String::new(), |s| format!(
                            ", signed by <code>{}</code>",
                            esc(s.get(..12).unwrap_or(s))
                        ))
                    );
                    let s = &p.serving;
                    let _ = write!(
                        h,
                        "<br><small>{} decisions, {} calls ({} failed)</small></td>",
                        s.decisions.get(),
                        s.calls.get() + s.failed.get(),
                        s.failed.get()
                    );
                }
            }
            match &p.candidate {
                None => h.push_str("<td class=\"candidate\">none</td>"),
                Some(c) => {
                    let v = &c.version;
                    let label = v.manifest.as_ref().map_or_else(|| v.name.clone(), |m| m.label());
                    let class = if c.is_rolled_back() { "bad" } else { "ok" };
                    let _ = write!(
                        h,
                        "<td class=\"candidate\"><span class=\"{class}\">{} {}</span> v{} {}",
                        esc(c.mode.as_str()),
                        esc(c.state()),
                        v.version,
                        esc(&label)
                    );
                    match c.mode {
                        Mode::Canary { share } => {
                            let l = &c.lane;
                            let _ = write!(
                                h,
                                "<br>share {:.0}%: {} decisions, {} faults, {} calls ({} failed)",
                                share * 100.0,
                                l.decisions.get(),
                                l.faults.get(),
                                l.calls.get() + l.failed.get(),
                                l.failed.get()
                            );
                        }
                        Mode::Shadow => {
                            let json = c.json(&p.serving);
                            let kinds: Vec<String> = Divergence::ALL
                                .iter()
                                .map(|k| {
                                    format!("{} {}", k.as_str(), json["divergences"][k.as_str()].as_u64().unwrap_or(0))
                                })
                                .collect();
                            let _ = write!(
                                h,
                                "<br><span class=\"divergences\">{} compared; diverged: {}</span>; {} faults",
                                json["compared"].as_u64().unwrap_or(0),
                                kinds.join(", "),
                                c.lane.faults.get()
                            );
                        }
                    }
                    if let Some(r) = c.rollback_reason() {
                        let _ = write!(h, "<br><small class=\"bad\">{}</small>", esc(&r));
                    }
                    h.push_str("</td>");
                }
            }
            let last = p.reload_error().or_else(|| p.load_error.clone()).unwrap_or_default();
            let _ = write!(
                h,
                "<td class=\"faults\" data-faults=\"{faults}\">{faults}</td><td class=\"error\">{}</td></tr>",
                esc(&last)
            );
        }
        let _ = write!(h, "</tbody></table><script>{SCRIPT}</script></body></html>");
        h
    }

    /// The tenant's figures over the last minute and its sparkline.
    fn traffic_cells(&self, h: &mut String, tenant: &str) {
        let f = self.traffic.figures(&self.proxy.metrics, tenant);
        let failed_class = if f.failed > 0 { "bad" } else { "ok" };
        let fallback_class = if f.fallbacks > 0 { "warn" } else { "ok" };
        let p99 = match f.p99 {
            None => "-".to_owned(),
            Some(s) if s.is_infinite() => "> 130 ms".to_owned(),
            Some(s) if s < 1e-3 => format!("≤ {:.1} µs", s * 1e6),
            Some(s) => format!("≤ {:.2} ms", s * 1e3),
        };
        let _ = write!(
            h,
            "<td class=\"num rate\">{:.1}</td><td class=\"num calls\" data-calls=\"{}\">{}</td>\
             <td class=\"num failed {failed_class}\" data-failed=\"{}\">{}</td>\
             <td class=\"num fallbacks {fallback_class}\" data-fallbacks=\"{}\">{}</td>\
             <td class=\"num p99\" data-p99=\"{}\">{}</td><td class=\"spark\">{}</td>",
            f.per_second(),
            f.calls,
            f.calls,
            f.failed,
            f.failed,
            f.fallbacks,
            f.fallbacks,
            f.p99.filter(|s| s.is_finite()).map_or(String::new(), |s| format!("{s:e}")),
            esc(&p99),
            super::traffic::sparkline_svg(&f.sparkline, 120, 24)
        );
    }

    /// Every probed target: UM servers, edges, gateways.
    fn targets_section(&self, h: &mut String) {
        let targets = self.health.targets();
        h.push_str("<h2>Targets</h2>");
        if targets.is_empty() {
            h.push_str("<p id=\"targets\"><small>none probed ([probes] enabled = false, or no target yet)</small></p>");
            return;
        }
        let down = targets.iter().filter(|(_, t)| !t.up).count();
        let _ = write!(
            h,
            "<p id=\"targets-summary\"><span class=\"{}\">{} of {} up</span></p><table id=\"targets\"><thead><tr>\
             <th>target</th><th>kind</th><th>state</th><th>since</th><th>last probe</th><th>round trip</th></tr></thead><tbody>",
            if down > 0 { "bad" } else { "ok" },
            targets.len() - down,
            targets.len()
        );
        let epoch = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        for (uri, t) in &targets {
            let (class, state) = if t.up { ("ok", "up") } else { ("bad", "down") };
            let (since, probed) = (epoch(t.since), epoch(t.probed_at));
            let rtt =
                t.round_trip.map_or_else(|| "no answer".to_owned(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3));
            let _ = write!(
                h,
                "<tr class=\"target\" data-uri=\"{}\"><td><code>{}</code></td><td>{}</td><td class=\"{class} state\">{state}</td>\
                 <td><span data-epoch=\"{since}\">{since}</span></td><td><span data-epoch=\"{probed}\">{probed}</span></td>\
                 <td class=\"num rtt\">{}</td></tr>",
                esc(uri),
                esc(uri),
                t.kind.as_str(),
                esc(&rtt)
            );
        }
        h.push_str("</tbody></table>");
    }

    fn directory_section(&self, h: &mut String) {
        let d = self.directory_json();
        let source = d["source"].as_str().unwrap_or("file");
        let _ = write!(h, "<h2>Directory</h2><p id=\"directory\">source <b>{}</b>", esc(source));
        if let Some(connected) = d["connected"].as_bool() {
            let (class, word) = if connected { ("ok", "connected") } else { ("bad", "disconnected") };
            let _ = write!(h, ", <span class=\"{class}\">{word}</span>");
        }
        if d["stale"].as_bool() == Some(true) {
            let _ = write!(h, ", <span class=\"bad\">stale for {} s</span>", d["stale_seconds"].as_u64().unwrap_or(0));
        }
        if let Some(l) = d.get("ldap").filter(|l| !l.is_null()) {
            let _ = write!(h, "; LDAP: <code>{}</code>", esc(&l.to_string()));
        }
        if let Some(Value::Array(refused)) = d.get("refused")
            && !refused.is_empty()
        {
            let _ =
                write!(h, "; <span class=\"bad\">refused: {}</span>", esc(&Value::Array(refused.clone()).to_string()));
        }
        h.push_str("</p>");
    }
}
