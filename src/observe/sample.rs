//! The sampler: every `SAMPLE_INTERVAL`, one cheap statement reads the outbox's backlog, lag
//! and dead letters into the metrics, and a ping checks the sink, for readiness. Metrics
//! endpoints read what was sampled, so scrapes never load PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Observer;
use crate::error::{Error, Result};
use crate::relay::format_chain;
use crate::sink::Sink;

/// Past this many pending rows the backlog is estimated (see `sql/postgres/sample.sql`).
pub const EXACT_BACKLOG_LIMIT: i64 = 100_000;

/// The outbox at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxSample {
    /// Events pending in `event_log`.
    pub backlog: i64,
    /// `false` when `backlog` is an estimate (over [`EXACT_BACKLOG_LIMIT`]).
    pub backlog_exact: bool,
    /// Age of the oldest pending event, in seconds; 0 when there is none.
    pub lag_seconds: f64,
    /// Dead letters not yet replayed.
    pub dead_letters: i64,
    /// Rows ever deleted from `event_log` (PostgreSQL's statistics; cumulative).
    pub deleted_total: i64,
    /// Relays with a session open on this database.
    pub relays: i64,
    /// Relays idle and registered for a notification.
    pub waiting_relays: i64,
}

/// Reads one [`OutboxSample`] with `sql` (`sql/postgres/sample.sql`, rendered by
/// [`crate::outbox::Outbox::statements`]).
pub async fn sample(
    client: &impl tokio_postgres::GenericClient,
    sql: &str,
) -> Result<OutboxSample> {
    let row = client
        .query_one(sql, &[])
        .await
        .map_err(|e| Error::postgres("cannot sample the outbox", e))?;
    let counted: i64 = row.get("counted");
    let exact = counted <= EXACT_BACKLOG_LIMIT;
    Ok(OutboxSample {
        backlog: if exact { counted } else { row.get("id_span") },
        backlog_exact: exact,
        lag_seconds: row.get("lag_seconds"),
        dead_letters: row.get("dead_letters"),
        deleted_total: row.get("deleted"),
        relays: row.get("relays"),
        waiting_relays: row.get("waiting"),
    })
}

/// Samples every `interval` until shutdown.
pub async fn run<S: Sink>(
    sql: String,
    pool: deadpool_postgres::Pool,
    sink: Arc<S>,
    observer: Arc<Observer>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Shutdown must not wait for a check stuck on a hung server.
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sample_once(&sql, &pool, &*sink, &observer, interval) => {}
        }
    }
}

/// One round: the outbox query and the sink ping, each bounded by the interval so a hung
/// server cannot stall sampling.
async fn sample_once<S: Sink>(
    sql: &str,
    pool: &deadpool_postgres::Pool,
    sink: &S,
    observer: &Observer,
    interval: Duration,
) {
    let postgres = tokio::time::timeout(interval, sample_pool(pool, sql));
    let sink_ping = tokio::time::timeout(interval, sink.ping());
    let (postgres, sink_ping) = tokio::join!(postgres, sink_ping);
    match postgres {
        Ok(Ok(s)) => {
            observer
                .metrics
                .sampled(s.backlog, s.lag_seconds, s.dead_letters);
            observer.health.set_postgres(Ok(()));
        }
        Ok(Err(e)) => {
            observer.metrics.postgres_error(&e);
            observer.health.set_postgres(Err(format_chain(&e)));
        }
        Err(_) => observer
            .health
            .set_postgres(Err(format!("no answer within {interval:?}"))),
    }
    observer.health.set_sink(match sink_ping {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format_chain(&e)),
        Err(_) => Err(format!(
            "{} did not answer within {interval:?}",
            sink.name()
        )),
    });
}

async fn sample_pool(pool: &deadpool_postgres::Pool, sql: &str) -> Result<OutboxSample> {
    let client = pool.get().await.map_err(|e| {
        Error::with_source(
            crate::error::ErrorKind::Postgres,
            "no PostgreSQL connection for sampling",
            e,
        )
    })?;
    sample(&**client, sql).await
}
