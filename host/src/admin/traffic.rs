//! The status page's figures over time, from the router's own counters: per
//! tenant, its new calls (INVITEs), failed calls, fallback decisions and
//! decision latency, sampled every [`INTERVAL`]. A tenant keeps 15 minutes of
//! call counts (the sparkline) and a minute of the rest (the last minute's
//! figures); a few KiB per tenant.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::control::Tenants;
use crate::metrics::{Buckets, Metrics};

/// How often the counters are sampled.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// The window of the "last minute" figures.
pub const MINUTE: Duration = Duration::from_secs(60);
/// The current interval is drawn once at least this long.
const PARTIAL: Duration = Duration::from_secs(2);
/// Samples of call counts kept: 15 minutes of intervals and the sample before.
const KEPT: usize = 91;
/// Samples of the other counters kept: a minute of intervals and the one before.
const KEPT_MINUTE: usize = 7;

/// The samples.
#[derive(Debug, Default)]
pub struct Traffic {
    inner: Mutex<Samples>,
}

#[derive(Debug, Default)]
struct Samples {
    /// When each sample was taken, oldest first.
    times: VecDeque<Instant>,
    series: HashMap<Arc<str>, Series>,
}

/// One tenant's samples, aligned with the newest of `Samples::times`.
#[derive(Debug, Default)]
struct Series {
    invites: VecDeque<u64>,
    minute: VecDeque<Counts>,
}

/// A tenant's counters at one moment.
#[derive(Debug, Clone, Default)]
struct Counts {
    invites: u64,
    failed: u64,
    fallbacks: u64,
    buckets: Vec<u64>,
}

impl Counts {
    fn now(metrics: &Metrics, tenant: &str) -> Counts {
        Counts {
            invites: metrics.requests_of(tenant, "INVITE"),
            failed: metrics.calls_of(tenant, "failed"),
            fallbacks: metrics.fallbacks_of(tenant),
            buckets: metrics.tenant_counters(tenant).buckets.counts(),
        }
    }
}

/// A tenant's figures: over the last minute (or since the first sample, for
/// a router younger than that) and the calls per second of each interval of
/// the last 15 minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Seconds the figures are over (60, or less for a young router).
    pub seconds: f64,
    /// New calls (INVITEs).
    pub calls: u64,
    /// Calls that failed (as canaries are judged).
    pub failed: u64,
    /// Decisions made by the tenant's fallback.
    pub fallbacks: u64,
    /// The decision latency's 99th percentile (the upper bound of its
    /// bucket, seconds), when there were decisions.
    pub p99: Option<f64>,
    /// Calls per second in each interval, oldest first, the current
    /// (partial) one last.
    pub sparkline: Vec<f64>,
}

impl Figures {
    /// Calls per second over [`Self::seconds`].
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 { self.calls as f64 / self.seconds } else { 0.0 }
    }
}

impl Traffic {
    /// Takes a sample of every tenant in `tenants` (tenants gone are forgotten).
    pub fn sample(&self, metrics: &Metrics, tenants: &Tenants) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.times.push_back(Instant::now());
        if s.times.len() > KEPT {
            s.times.pop_front();
        }
        let kept = s.times.len();
        let mut series: HashMap<Arc<str>, Series> = HashMap::with_capacity(s.series.len());
        for t in tenants.iter() {
            let id = t.config.id.as_str();
            let (key, mut one) = s.series.remove_entry(id).unwrap_or_else(|| (Arc::from(id), Series::default()));
            let counts = Counts::now(metrics, id);
            one.invites.push_back(counts.invites);
            one.minute.push_back(counts);
            while one.invites.len() > kept {
                one.invites.pop_front();
            }
            while one.minute.len() > KEPT_MINUTE.min(kept) {
                one.minute.pop_front();
            }
            series.insert(key, one);
        }
        s.series = series;
    }

    /// The figures of `tenant` now.
    pub fn figures(&self, metrics: &Metrics, tenant: &str) -> Figures {
        let now = Instant::now();
        let current = Counts::now(metrics, tenant);
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(series) = s.series.get(tenant) else {
            return Figures { seconds: 0.0, calls: 0, failed: 0, fallbacks: 0, p99: None, sparkline: Vec::new() };
        };
        // A tenant's samples are the newest `len` of the times.
        let times: Vec<Instant> = s.times.iter().rev().take(series.invites.len()).rev().copied().collect();
        let minute_times = &times[times.len() - series.minute.len()..];
        // The baseline: the newest sample a minute old or more, else the oldest.
        let base = minute_times.iter().rposition(|t| now.duration_since(*t) >= MINUTE).unwrap_or(0);
        let (base_at, base_counts) = (minute_times[base], &series.minute[base]);
        let mut sparkline = Vec::with_capacity(times.len());
        let mut points: Vec<(Instant, u64)> = times.iter().copied().zip(series.invites.iter().copied()).collect();
        // The current interval once long enough to be a rate (or when it is all there is).
        if times.last().is_none_or(|t| now.duration_since(*t) >= PARTIAL) || times.len() < 2 {
            points.push((now, current.invites));
        }
        for pair in points.windows(2) {
            let seconds = pair[1].0.duration_since(pair[0].0).as_secs_f64();
            let calls = pair[1].1.saturating_sub(pair[0].1);
            sparkline.push(if seconds > 0.0 { calls as f64 / seconds } else { 0.0 });
        }
        Figures {
            seconds: now.duration_since(base_at).as_secs_f64(),
            calls: current.invites.saturating_sub(base_counts.invites),
            failed: current.failed.saturating_sub(base_counts.failed),
            fallbacks: current.fallbacks.saturating_sub(base_counts.fallbacks),
            p99: Buckets::quantile(&base_counts.buckets, &current.buckets, 0.99),
            sparkline,
        }
    }
}

/// Samples `live`'s tenants every [`INTERVAL`] until `shutdown` changes; the
/// first sample at once.
pub async fn run(
    traffic: Arc<Traffic>,
    proxy: Arc<crate::sip::proxy::Proxy>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => traffic.sample(&proxy.metrics, &proxy.tenants()),
            _ = shutdown.changed() => return,
        }
    }
}

/// A sparkline of `values` as inline SVG, `width` by `height` pixels.
pub fn sparkline_svg(values: &[f64], width: u32, height: u32) -> String {
    // One interval so far: a level line.
    let one;
    let values = match values {
        [v] => {
            one = [*v, *v];
            &one[..]
        }
        v => v,
    };
    let max = values.iter().copied().fold(0.0f64, f64::max);
    let n = values.len().max(2) - 1;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = i as f64 * f64::from(width) / n as f64;
            let y = f64::from(height) - 1.0 - if max > 0.0 { v / max * f64::from(height - 2) } else { 0.0 };
            format!("{x:.1},{y:.1}")
        })
        .collect();
    format!(
        "<svg class=\"spark\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\">\
         <title>calls/s, last {} min, peak {max:.1}/s</title>\
         <line x1=\"0\" y1=\"{h}\" x2=\"{width}\" y2=\"{h}\" stroke=\"#ccc\"/><polyline fill=\"none\" stroke=\"#36c\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        (values.len() as u64 * INTERVAL.as_secs()).div_ceil(60),
        points.join(" "),
        h = f64::from(height) - 0.5,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Tenants;
    use crate::control::config::{RouterConfig, TenantConfig};

    #[test]
    fn the_last_minute_is_counted_from_the_first_sample_and_the_live_counters() {
        let metrics = Metrics::new();
        let tenants =
            Tenants::new(&RouterConfig::with_tenants(vec![TenantConfig::empty("contoso")]), Default::default());
        let traffic = Traffic::default();
        assert_eq!(traffic.figures(&metrics, "contoso").calls, 0, "nothing before a sample");
        metrics.count_request("INVITE", "contoso");
        traffic.sample(&metrics, &tenants);
        for _ in 0..5 {
            metrics.count_request("INVITE", "contoso");
        }
        metrics.count_call("contoso", true);
        metrics.count_call("contoso", false);
        metrics.tenant_counters("contoso").buckets.observe(3e-6);
        let f = traffic.figures(&metrics, "contoso");
        assert_eq!((f.calls, f.failed, f.fallbacks), (5, 1, 0), "since the sample, with the live counters");
        assert!(f.p99.is_some_and(|p| p > 2e-6 && p < 4e-6), "{:?}", f.p99);
        assert_eq!(f.sparkline.len(), 1, "the current interval");
        traffic.sample(&metrics, &tenants);
        // The interval between the samples; the current one is too short to draw yet.
        assert_eq!(traffic.figures(&metrics, "contoso").sparkline.len(), 1);
        // A tenant gone is forgotten.
        traffic.sample(&metrics, &Tenants::default());
        assert_eq!(traffic.figures(&metrics, "contoso").sparkline.len(), 0);
        let svg = sparkline_svg(&[0.0, 2.0, 1.0], 90, 20);
        assert!(svg.starts_with("<svg") && svg.contains("points=\"0.0,19.0 45.0,1.0 90.0,10.0\""), "{svg}");
        assert!(sparkline_svg(&[3.0], 90, 20).contains("points=\"0.0,1.0 90.0,1.0\""), "one interval: a level line");
    }
}
