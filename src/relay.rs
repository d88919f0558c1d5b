//! The relay: listen → claim → encode → deliver → acknowledge, as one stream.
//!
//! [`Scheduler`] tickets flow through `for_each_concurrent(max_in_flight)`; each ticket
//! becomes one batch on its own pooled connection: claim (`FOR UPDATE SKIP LOCKED`), insert
//! into the sink within `insert_timeout`, delete, commit. Any failure rolls the batch back,
//! so an event leaves PostgreSQL only after the sink has it.
//!
//! Shutdown has two phases: the ticket stream ends (no new claims), then in-flight batches
//! finish; past `shutdown_grace` they are dropped, which rolls them back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{PostgresConfig, RelayConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::listen::Listener;
use crate::schedule::{Outcome, Scheduler, Ticket};
use crate::sink::Sink;

const REGISTER_SQL: &str = include_str!("../sql/postgres/register.sql");

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
}

impl<S: Sink> Relay<S> {
    pub fn new(postgres: PostgresConfig, sink: S, config: RelayConfig) -> Self {
        Relay {
            postgres,
            sink: Arc::new(sink),
            config,
            stats: Arc::default(),
        }
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
        if !self.init_sink(&shutdown).await? {
            tracing::info!("shutdown requested before the sink was ready; nothing was claimed");
            return Ok(());
        }
        let relay_id = format!("{:016x}", rand::random::<u64>());
        let session = crate::postgres::session_config(
            &self.postgres,
            config.idle_in_transaction_timeout(),
            &relay_id,
        );
        // One TLS setup (it reads the root certificates) for the pool and the listener.
        let tls = crate::tls::postgres(&self.postgres)?;
        let pool = crate::postgres::pool(session.clone(), tls.clone(), config.max_in_flight)?;

        let wake = Arc::new(Notify::new());
        let listener_stop = CancellationToken::new();
        let listener = Listener::new(
            session,
            tls,
            wake.clone(),
            config.max_backoff,
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
        let pipeline =
            scheduler
                .into_stream()
                .for_each_concurrent(config.max_in_flight, |ticket| {
                    let outcomes = outcomes.clone();
                    let (pool, sink, stats, relay_id) =
                        (&pool, &*self.sink, &*self.stats, relay_id.as_str());
                    async move {
                        let outcome =
                            deliver_batch(pool, sink, config, stats, relay_id, ticket).await;
                        let _ = outcomes.send(outcome);
                    }
                });
        let mut pipeline = Box::pin(pipeline);
        let grace_over = async {
            shutdown.cancelled().await;
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
        let _ = listener.await;
        // Best effort: a registration left behind would only make producers notify nobody
        // until the next listener to connect forgets it.
        let client = tokio::time::timeout(std::time::Duration::from_secs(2), pool.get()).await;
        if let Ok(Ok(client)) = client {
            if let Err(e) = client
                .execute(crate::acknowledge::DEREGISTER_SQL, &[&relay_id])
                .await
            {
                tracing::debug!(error = %e, "could not end the registration at shutdown");
            }
        }
        Ok(())
    }

    /// Creates or checks the sink's table, retrying while the sink is unreachable. `false`
    /// when shutdown came first.
    async fn init_sink(&self, shutdown: &CancellationToken) -> Result<bool> {
        let mut backoff = crate::backoff::Backoff::new(
            std::time::Duration::from_millis(100),
            self.config.max_backoff,
        );
        loop {
            match self.sink.init().await {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Config => return Err(e),
                Err(e) => {
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

/// One batch: claim, insert, acknowledge. Never panics; reports how it went.
async fn deliver_batch<S: Sink>(
    pool: &deadpool_postgres::Pool,
    sink: &S,
    config: &RelayConfig,
    stats: &Stats,
    relay_id: &str,
    ticket: Ticket,
) -> Outcome {
    match try_deliver_batch(pool, sink, config, stats, relay_id, ticket).await {
        Ok(Claimed::Empty) => Outcome::Empty(ticket),
        Ok(Claimed::Full) => Outcome::Full(ticket),
        Ok(Claimed::Partial(n)) => Outcome::Partial(ticket, n),
        Err(e) => {
            stats.failed_batches.fetch_add(1, Ordering::Relaxed);
            Outcome::Failed(format!(
                "{} ({} error, sink {})",
                format_chain(&e),
                e.kind(),
                sink.name()
            ))
        }
    }
}

async fn try_deliver_batch<S: Sink>(
    pool: &deadpool_postgres::Pool,
    sink: &S,
    config: &RelayConfig,
    stats: &Stats,
    relay_id: &str,
    ticket: Ticket,
) -> Result<Claimed> {
    let started = Instant::now();
    let mut client = pool.get().await.map_err(|e| {
        Error::with_source(
            ErrorKind::Postgres,
            "no PostgreSQL connection for a claim",
            e,
        )
    })?;
    if ticket.register {
        // Committed before the claim's snapshot: an event this claim misses notifies us.
        client
            .execute(REGISTER_SQL, &[&relay_id])
            .await
            .map_err(|e| Error::postgres("could not register as a waiting relay", e))?;
    }
    let mut claim = crate::claim::claim(&mut client, config.batch_size).await?;
    let mut claims = 1;
    let mut full = claim.events.len() == config.batch_size;
    let mut bytes: usize = claim.events.iter().map(crate::deliver::event_size).sum();
    while full && claims < config.claims_per_insert && bytes < config.max_insert_bytes {
        let before = claim.events.len();
        full = claim.claim_more(config.batch_size).await? == config.batch_size;
        bytes += claim.events[before..]
            .iter()
            .map(crate::deliver::event_size)
            .sum::<usize>();
        claims += 1;
    }
    let count = claim.events.len();
    if count == 0 {
        // Nothing to do; dropping the claim ends its (empty) transaction.
        return Ok(Claimed::Empty);
    }
    let (first_id, last_id) = (claim.events[0].id, claim.events[count - 1].id);
    let claimed = started.elapsed();
    let refused = crate::deliver::deliver(
        sink,
        &claim.events,
        config.insert_timeout,
        config.max_event_bytes,
    )
    .await?;
    let inserted = started.elapsed();
    crate::acknowledge::acknowledge(claim, &refused, ticket.deregister.then_some(relay_id)).await?;
    if !refused.is_empty() {
        stats
            .dead_lettered
            .fetch_add(refused.len() as u64, Ordering::Relaxed);
        tracing::error!(
            count = refused.len(),
            ids = ?refused.iter().map(|r| r.id).collect::<Vec<_>>(),
            first_reason = %refused[0].reason,
            "events refused by the sink moved to event_log_dead_letter"
        );
    }
    tracing::info!(
        count,
        claims,
        dead_lettered = refused.len(),
        first_id,
        last_id,
        claim_ms = claimed.as_secs_f64() * 1e3,
        insert_ms = (inserted - claimed).as_secs_f64() * 1e3,
        ack_ms = (started.elapsed() - inserted).as_secs_f64() * 1e3,
        duration_ms = started.elapsed().as_secs_f64() * 1e3,
        "batch delivered"
    );
    stats
        .delivered
        .fetch_add((count - refused.len()) as u64, Ordering::Relaxed);
    stats.batches.fetch_add(1, Ordering::Relaxed);
    Ok(if full {
        Claimed::Full
    } else {
        Claimed::Partial(count)
    })
}

/// What a delivery found: nothing, fewer rows than it could take, or only full claims (so
/// more are probably waiting).
enum Claimed {
    Empty,
    Partial(usize),
    Full,
}

/// An error and its causes on one line.
pub fn format_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
