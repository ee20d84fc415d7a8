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
    let builder = tracing_subscriber::fmt().with_env_filter(filter(default_level)).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).init(),
    }
}
