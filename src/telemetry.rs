//! Logs (tracing, text or JSON, filtered by RUST_LOG) and Sentry (when a DSN is set).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

/// Keeps Sentry flushing until dropped; hold it for the life of `main`.
pub struct Guard {
    _sentry: Option<sentry::ClientInitGuard>,
}

/// Installs the global subscriber. Logs go to stderr; errors also go to Sentry when
/// `config.sentry_dsn` is set.
pub fn init(config: &TelemetryConfig) -> Guard {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn"));
    let fmt = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let sentry = config.sentry_dsn.clone().map(|dsn| {
        let mut options = sentry::ClientOptions::new();
        options.dsn = Some(dsn);
        options.release = sentry::release_name!();
        options.environment = Some(config.sentry_environment.clone().into());
        // validate() keeps the rate within 0..=1, where this cannot panic.
        sentry::init(options.traces_sample_rate(config.sentry_traces_sample_rate))
    });
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    if sentry.is_some() {
        // ERROR events become Sentry events (fields named `tags.*` become tags); WARN and
        // INFO become breadcrumbs on them. Only the batch spans (claim → deliver →
        // acknowledge) become transactions, sampled by SENTRY_TRACES_SAMPLE_RATE.
        use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer, SpanLayer};
        use tracing_subscriber::filter::{LevelFilter, Targets};
        let batch_spans = Targets::new().with_target("outbox_relay::batch", LevelFilter::INFO);
        let _ = registry
            .with(ErrorLayer::new().with_filter(LevelFilter::ERROR))
            .with(BreadcrumbLayer::new().with_filter(LevelFilter::INFO))
            .with(SpanLayer::new().with_filter(batch_spans))
            .try_init();
    } else {
        let _ = registry.try_init();
    }
    Guard { _sentry: sentry }
}
