//! `outbox-relay status`: the outbox at a glance, for operators and for scripts.
//!
//! Everything comes from PostgreSQL, the one place every relay shares: the backlog, the age
//! of the oldest pending event (the lag), the dead letters, and the delivery rate of all
//! relays together, from the table's delete counter sampled twice.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::Result;
use crate::observe::sample::{sample, OutboxSample};

/// What `status` shows and how.
#[derive(Debug, Clone)]
pub struct StatusConfig {
    /// One JSON object instead of a table.
    pub json: bool,
    /// Refresh in place until interrupted.
    pub watch: bool,
    /// Between the two samples of the delivery rate (and between refreshes).
    pub interval: Duration,
    /// Lag past which the check fails (exit code 3).
    pub max_lag: Option<Duration>,
}

/// The outbox, as `status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub sample: OutboxSample,
    /// Events deleted from `event_log` per second between the two samples (every relay).
    pub delivery_rate: f64,
    /// The time between the two samples, in seconds.
    pub rate_window_seconds: f64,
    /// The `--max-lag` threshold in seconds, when given.
    pub max_lag_seconds: Option<f64>,
    /// Whether the lag is over `--max-lag`.
    pub lag_over_max: bool,
}

/// Samples the outbox twice, `config.interval` apart.
pub async fn status(
    client: &tokio_postgres::Client,
    outbox: &crate::outbox::Outbox,
    config: &StatusConfig,
) -> Result<Status> {
    let sql = outbox.statements().sample;
    let first = sample(client, &sql).await?;
    let started = Instant::now();
    tokio::time::sleep(config.interval).await;
    let second = sample(client, &sql).await?;
    let window = started.elapsed().as_secs_f64();
    // The counter is PostgreSQL's statistics: other sessions report it at most about once a
    // second, so a short window reads a rate that lags by up to that much.
    let deleted = (second.deleted_total - first.deleted_total).max(0);
    let max_lag = config.max_lag.map(|d| d.as_secs_f64());
    Ok(Status {
        lag_over_max: max_lag.is_some_and(|max| second.lag_seconds > max),
        delivery_rate: deleted as f64 / window,
        rate_window_seconds: window,
        max_lag_seconds: max_lag,
        sample: second,
    })
}

/// The readable table.
pub fn render(status: &Status) -> String {
    let s = &status.sample;
    let backlog = if s.backlog_exact {
        format!("{} events", s.backlog)
    } else {
        format!("~{} events (estimated from the id span)", s.backlog)
    };
    let lag = match (status.max_lag_seconds, status.lag_over_max) {
        (Some(max), true) => format!("{:.1} s   OVER the {max:.0} s limit", s.lag_seconds),
        (Some(max), false) => format!("{:.1} s   (limit {max:.0} s)", s.lag_seconds),
        (None, _) => format!("{:.1} s", s.lag_seconds),
    };
    let rows = [
        ("backlog", backlog),
        ("lag (oldest pending)", lag),
        (
            "dead letters",
            format!("{} (outbox-relay dead-letter list)", s.dead_letters),
        ),
        (
            "delivery rate",
            format!(
                "{:.0} events/s over {:.1} s",
                status.delivery_rate, status.rate_window_seconds
            ),
        ),
        (
            "relays connected",
            format!(
                "{} ({} idle, waiting for events)",
                s.relays, s.waiting_relays
            ),
        ),
    ];
    rows.iter()
        .map(|(name, value)| format!("{name:<22}{value}\n"))
        .collect()
}
