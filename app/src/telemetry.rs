//! Log output: an env-filtered tracing subscriber, human-readable or JSON lines.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::configuration::{LogFormat, TelemetrySettings};

/// Installs the global subscriber. `RUST_LOG` wins over the configured level. Returns false
/// when a subscriber was already installed (tests start many apps in one process).
pub fn init(settings: &TelemetrySettings) -> bool {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
            .is_ok(),
        LogFormat::Pretty => builder.compact().try_init().is_ok(),
    }
}
