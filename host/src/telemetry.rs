//! OpenTelemetry traces (`[otel]`): the router's `request`, `policy` and
//! `client` spans exported over OTLP/HTTP (protobuf) to a collector, sampled
//! by trace id (a call whose caller sent a sampled trace context is always
//! sampled), batched by a thread of the exporter's own with a bounded queue
//! (spans beyond it are dropped, never waited for). With `sip_header`, the
//! W3C trace context of a request is read from that SIP header (the request
//! span joins the caller's trace) and written into the requests the router
//! forwards (the next hop joins the router's).
//!
//! Off unless configured: without `[otel]` no span goes anywhere and the
//! `policy` and `client` spans stay disabled as before.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;

use crate::control::config::OtelSettings;

/// The spans exported: a request, its policy calls, its client transactions.
pub const SPANS: [&str; 3] = ["request", "policy", "client"];

/// The SIP header carrying the W3C trace context, when configured.
static SIP_HEADER: OnceLock<Box<str>> = OnceLock::new();
/// The tracer provider, for the flush at exit.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("[otel]: {0}")]
pub struct TelemetryError(String);

/// The layer exporting the router's spans per `settings`, filtered to
/// [`SPANS`]; sets the SIP header used for trace context. Called once, at start.
pub fn layer<S>(settings: &OtelSettings) -> Result<impl tracing_subscriber::Layer<S>, TelemetryError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(settings.endpoint.clone())
        .with_timeout(settings.timeout)
        .with_headers(HashMap::new())
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    let exporter = Counted { inner: exporter, failing: std::sync::atomic::AtomicBool::new(false) };
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(settings.queue)
        .with_max_export_batch_size(settings.queue.min(512))
        .with_scheduled_delay(settings.export_interval)
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new("service.instance.id", settings.instance.clone()))
        .with_attribute(opentelemetry::KeyValue::new("service.version", crate::release::VERSION))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).with_batch_config(batch).build())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("exum-router");
    let _ = PROVIDER.set(provider);
    if let Some(h) = &settings.sip_header {
        let _ = SIP_HEADER.set(h.as_str().into());
    }
    // Decided once per call site: the router's own three spans, nothing else
    // (no event, no dependency's span) is ever looked at again.
    let ours =
        |m: &tracing::Metadata<'_>| m.is_span() && m.target().starts_with("exum_router") && SPANS.contains(&m.name());
    let only_ours = tracing_subscriber::filter::DynFilterFn::new(move |m, _| ours(m))
        .with_max_level_hint(tracing::level_filters::LevelFilter::DEBUG)
        .with_callsite_filter(move |m| {
            if ours(m) { tracing::subscriber::Interest::always() } else { tracing::subscriber::Interest::never() }
        });
    Ok(tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_target(false)
        .with_filter(only_ours))
}

/// Exports through the OTLP exporter, with a warning when exports start to
/// fail (once per outage: a wrong endpoint path, a collector down) and a
/// line when they work again; `EXPORT_FAILURES` counts failed batches.
#[derive(Debug)]
struct Counted {
    inner: opentelemetry_otlp::SpanExporter,
    failing: std::sync::atomic::AtomicBool,
}

/// Batches of spans the collector did not take.
pub static EXPORT_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl opentelemetry_sdk::trace::SpanExporter for Counted {
    async fn export(&self, batch: Vec<opentelemetry_sdk::trace::SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        use std::sync::atomic::Ordering;
        let result = self.inner.export(batch).await;
        match &result {
            Err(e) => {
                EXPORT_FAILURES.fetch_add(1, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "OpenTelemetry export failed; spans are dropped until it works");
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("OpenTelemetry export works again");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// Sends what is still queued (at exit).
pub fn flush() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.shutdown();
    }
}

/// The SIP header carrying trace context, when configured.
pub fn sip_header() -> Option<&'static str> {
    SIP_HEADER.get().map(|h| &**h)
}

/// Makes `span` a child of the W3C trace context `traceparent` (and
/// `tracestate`), when it parses.
pub fn join(span: &tracing::Span, traceparent: &str, tracestate: Option<&str>) {
    let mut carrier = HashMap::with_capacity(2);
    carrier.insert("traceparent".to_owned(), traceparent.trim().to_owned());
    if let Some(state) = tracestate {
        carrier.insert("tracestate".to_owned(), state.trim().to_owned());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    use opentelemetry::trace::TraceContextExt as _;
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The W3C `traceparent` of `span` when spans are exported (its sampled flag
/// as the sampler decided).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let mut carrier: HashMap<String, String> = HashMap::with_capacity(2);
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

#[cfg(test)]
mod tests {
    #[test]
    fn without_a_layer_there_is_no_trace_context() {
        assert_eq!(super::traceparent(&tracing::Span::current()), None);
        assert_eq!(super::sip_header(), None);
    }
}
