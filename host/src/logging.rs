//! Logging set-up for the command: `tracing` events to standard error, as text
//! (colours only when standard error is a terminal) or as one JSON object per
//! line for log shippers, filtered by `RUST_LOG` or a default level. Logs of
//! policies (their `log` import) carry the target `policy`.

use std::io::IsTerminal as _;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the span fields of each event.
    Json,
}

/// The filter: `RUST_LOG` when set and not empty, else `default`.
pub fn filter(default: &str) -> tracing_subscriber::EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => tracing_subscriber::EnvFilter::new(v),
        _ => tracing_subscriber::EnvFilter::new(default),
    }
}

/// Installs the global subscriber.
pub fn init(format: LogFormat, default_level: &str) {
    let _ = init_with(format, default_level, None);
}

/// Installs the global subscriber, with the OpenTelemetry exporter when
/// `otel` is given (its layer sees the router's spans whatever the log level).
pub fn init_with(
    format: LogFormat,
    default_level: &str,
    otel: Option<&crate::control::config::OtelSettings>,
) -> Result<(), crate::telemetry::TelemetryError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => fmt.json().with_current_span(true).with_span_list(true).boxed(),
    };
    let registry = tracing_subscriber::registry().with(fmt.with_filter(filter(default_level)));
    match otel {
        None => {
            let _ = registry.try_init();
        }
        Some(settings) => {
            let _ = registry.with(crate::telemetry::layer(settings)?).try_init();
        }
    }
    Ok(())
}
