//! The relay: listen → claim → encode → deliver → acknowledge, as one stream.
//!
//! [`Scheduler`] tickets flow through `for_each_concurrent(max_in_flight)`; each ticket
//! becomes one batch on its own pooled connection: claim (`FOR UPDATE SKIP LOCKED`), insert
//! into the sink within `insert_timeout`, delete, commit. Any failure rolls the batch back,
//! so an event leaves PostgreSQL only after the sink has it.
//!
//! Shutdown has two phases: the ticket stream ends (no new claims), then in-flight batches
//! finish; past `shutdown_grace` they are dropped, which rolls them back.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::batch::{deliver_batch, BatchContext};
use crate::config::{PostgresConfig, RelayConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::listen::Listener;
use crate::observe::Observer;
use crate::schedule::Scheduler;
use crate::sink::Sink;

/// How often a busy relay's claims start at the oldest event again, at most: the longest an
/// event that committed after a higher id was claimed (or that a failed delivery released)
/// waits behind a backlog. Capped by `POLL_INTERVAL`.
const RESCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Counters of one relay's work, readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events delivered and deleted.
    pub delivered: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Batches rolled back after a failure.
    pub failed_batches: AtomicU64,
    /// Events the sink refused, moved to the dead-letter table.
    pub dead_lettered: AtomicU64,
}

/// A relay from one PostgreSQL outbox to one sink.
pub struct Relay<S> {
    postgres: PostgresConfig,
    sink: Arc<S>,
    config: RelayConfig,
    stats: Arc<Stats>,
    observer: Arc<Observer>,
}

impl<S: Sink> Relay<S> {
    pub fn new(postgres: PostgresConfig, sink: S, config: RelayConfig) -> Self {
        let relay = Relay {
            postgres,
            sink: Arc::new(sink),
            config,
            stats: Arc::default(),
            observer: Arc::default(),
        };
        relay.observer.metrics.init_sink(relay.sink.name());
        relay
    }

    /// Metrics and health, for the HTTP endpoints ([`crate::observe::http::serve`]).
    pub fn observer(&self) -> Arc<Observer> {
        self.observer.clone()
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Runs until `shutdown` is cancelled and in-flight batches are done (or the grace
    /// period has passed). Fails early only on what a retry cannot fix, e.g. a sink table
    /// whose columns do not match.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let config = &self.config;
        let relay_id = format!("{:016x}", rand::random::<u64>());
        let session = crate::postgres::session_config(
            &self.postgres,
            config.idle_in_transaction_timeout(),
            &relay_id,
        );
        // One TLS setup (it reads the root certificates) for the pool and the listener.
        let tls = crate::tls::postgres(&self.postgres)?;
        // One connection per delivery slot, plus one for the sampler.
        let pool = crate::postgres::pool(session.clone(), tls.clone(), config.max_in_flight + 1)?;
        let sampler_stop = CancellationToken::new();
        let sql = self.postgres.outbox.statements();
        let sampler = tokio::spawn(crate::observe::sample::run(
            sql.sample.clone(),
            pool.clone(),
            self.sink.clone(),
            self.observer.clone(),
            config.sample_interval,
            sampler_stop.clone(),
        ));
        // The sampler runs while the sink is not ready yet, so a relay started during a sink
        // outage still reports the backlog and the lag rising (and is not ready), instead of
        // zeros that no alert fires on.
        let ready = self.init_sink(&shutdown).await;
        if !matches!(ready, Ok(true)) {
            sampler_stop.cancel();
            let _ = sampler.await;
            if ready.is_ok() {
                tracing::info!("shutdown requested before the sink was ready; nothing was claimed");
            }
            return ready.map(drop);
        }

        let wake = Arc::new(Notify::new());
        let listener_stop = CancellationToken::new();
        let listener = Listener::new(
            session,
            tls,
            wake.clone(),
            config.max_backoff,
            self.observer.clone(),
            self.postgres.outbox.clone(),
            listener_stop.clone(),
        );
        let listener = tokio::spawn(listener.run());

        let (scheduler, outcomes) = Scheduler::new(
            wake,
            config.poll_interval,
            config.coalesce,
            config.max_in_flight,
            config.max_backoff,
            shutdown.clone(),
        );
        tracing::info!(
            batch_size = config.batch_size,
            max_in_flight = config.max_in_flight,
            poll_interval = ?config.poll_interval,
            sink = self.sink.name(),
            "relay started"
        );
        // A busy relay rescans from the oldest event at least this often (see Cursor).
        let cursor = crate::claim::Cursor::new(config.poll_interval.min(RESCAN_EVERY));
        let batch = BatchContext {
            cursor: &cursor,
            sql: &sql,
            pool: &pool,
            sink: &*self.sink,
            config,
            stats: &self.stats,
            observer: &self.observer,
            relay_id: &relay_id,
        };
        let pipeline =
            scheduler
                .into_stream()
                .for_each_concurrent(config.max_in_flight, |ticket| {
                    let (outcomes, batch) = (outcomes.clone(), &batch);
                    async move {
                        let _ = outcomes.send(deliver_batch(batch, ticket).await);
                    }
                });
        let mut pipeline = Box::pin(pipeline);
        let grace_over = async {
            shutdown.cancelled().await;
            self.observer.health.set_stopping();
            tracing::info!(grace = ?config.shutdown_grace, "shutdown requested: no new claims; finishing in-flight batches");
            tokio::time::sleep(config.shutdown_grace).await;
        };
        tokio::select! {
            _ = &mut pipeline => tracing::info!("in-flight batches finished"),
            _ = grace_over => tracing::warn!("shutdown grace period over: rolling back unfinished batches (their events stay for the next run)"),
        }
        // Dropping the pipeline rolls back what is still in flight and returns its connections.
        drop(pipeline);
        listener_stop.cancel();
        sampler_stop.cancel();
        let _ = tokio::join!(listener, sampler);
        // Best effort: a registration left behind would only make producers notify nobody
        // until the next listener to connect forgets it.
        let client = tokio::time::timeout(std::time::Duration::from_secs(2), pool.get()).await;
        if let Ok(Ok(client)) = client {
            if let Err(e) = client.execute(&sql.deregister, &[&relay_id]).await {
                tracing::debug!(error = %e, "could not end the registration at shutdown");
            }
        }
        Ok(())
    }

    /// Creates or checks the sink's table, retrying while the sink is unreachable. `false`
    /// when shutdown came first. Each attempt is bounded by `insert_timeout` and gives way
    /// to shutdown: a sink that accepts connections but never answers must neither hold the
    /// relay forever nor keep it from stopping.
    async fn init_sink(&self, shutdown: &CancellationToken) -> Result<bool> {
        let mut backoff = crate::backoff::Backoff::new(
            std::time::Duration::from_millis(100),
            self.config.max_backoff,
        );
        let timeout = self.config.insert_timeout;
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return Ok(false),
                attempt = tokio::time::timeout(timeout, self.sink.init()) => attempt,
            };
            let attempt = attempt.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{} did not answer within {timeout:?}", self.sink.name()),
                ))
            });
            match attempt {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Config => return Err(e),
                Err(e) => {
                    self.observer.metrics.error(self.sink.name(), &e);
                    if backoff.failures() == 0 {
                        tracing::warn!(error = %format_chain(&e), "sink not ready; retrying");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(false),
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }
}

/// An error and its causes on one line. A cause that its error's message already ends
/// with is not repeated: some errors (hyper's, the clickhouse crate's) print their source
/// and also return it from `source()`.
pub fn format_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::format_chain;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let refused = Layer("connection refused", None);
        let connect = Layer("client error (Connect)", Some(Box::new(refused)));
        // Prints its source and returns it too, like the clickhouse crate's network error.
        let network = Layer(
            "network error: client error (Connect)",
            Some(Box::new(connect)),
        );
        let top = Layer("cannot read system.columns", Some(Box::new(network)));
        assert_eq!(
            format_chain(&top),
            "cannot read system.columns: network error: client error (Connect): connection refused"
        );
    }
}
