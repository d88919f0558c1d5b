//! One batch through the data path: claim → deliver → acknowledge, on one pooled
//! connection, with its log line, metrics and Sentry spans. [`crate::relay`] runs these
//! concurrently; this file owns what happens inside one.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::Instrument;

use crate::config::RelayConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::observe::Observer;
use crate::relay::{format_chain, Stats};
use crate::schedule::{Failure, Outcome, Ticket};
use crate::sink::Sink;

/// What every batch of one relay shares.
pub(crate) struct BatchContext<'a, S> {
    pub pool: &'a deadpool_postgres::Pool,
    pub sink: &'a S,
    pub config: &'a RelayConfig,
    pub stats: &'a Stats,
    pub observer: &'a Observer,
    pub relay_id: &'a str,
    /// The statements, rendered for the outbox's table and columns.
    pub sql: &'a crate::outbox::Statements,
    /// Where claims start; shared so deliveries do not claim through each other's rows.
    pub cursor: &'a crate::claim::Cursor,
}

/// What a delivery found: nothing, fewer rows than it could take, or only full claims (so
/// more are probably waiting).
enum Claimed {
    Empty,
    Partial(usize),
    Full,
}

/// The claimed events' span, known once the claim succeeded; reported with a failure.
#[derive(Default)]
struct ClaimedSpan {
    events: usize,
    first_id: i64,
    last_id: i64,
}

/// One batch: claim, insert, acknowledge. Never panics; reports how it went. The span is a
/// Sentry transaction when `SENTRY_TRACES_SAMPLE_RATE` samples it.
pub(crate) async fn deliver_batch<S: Sink>(cx: &BatchContext<'_, S>, ticket: Ticket) -> Outcome {
    let _in_flight = cx.observer.metrics.in_flight();
    let span = tracing::info_span!(
        target: "outbox_relay::batch",
        "batch",
        tags.sink = cx.sink.name(),
        events = tracing::field::Empty,
    );
    let mut claimed = ClaimedSpan::default();
    let result = try_deliver_batch(cx, ticket, &mut claimed)
        .instrument(span)
        .await;
    match result {
        Ok(Claimed::Empty) => Outcome::Empty(ticket),
        Ok(Claimed::Full) => Outcome::Full(ticket),
        Ok(Claimed::Partial(n)) => Outcome::Partial(ticket, n),
        Err(e) => {
            cx.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
            cx.observer.metrics.batch_failed(cx.sink.name(), &e);
            Outcome::Failed(
                ticket,
                Failure {
                    error: format_chain(&e),
                    kind: e.kind().to_string(),
                    sink: cx.sink.name(),
                    events: claimed.events,
                    first_id: claimed.first_id,
                    last_id: claimed.last_id,
                },
            )
        }
    }
}

async fn try_deliver_batch<S: Sink>(
    cx: &BatchContext<'_, S>,
    ticket: Ticket,
    claimed: &mut ClaimedSpan,
) -> Result<Claimed> {
    let config = cx.config;
    let started = Instant::now();
    let mut client = cx.pool.get().await.map_err(|e| {
        Error::with_source(
            ErrorKind::Postgres,
            "no PostgreSQL connection for a claim",
            e,
        )
    })?;
    if ticket.withdraw {
        // Autocommit: stays done even if this batch fails like the one before it.
        client
            .execute(&cx.sql.deregister, &[&cx.relay_id])
            .await
            .map_err(|e| Error::postgres("could not withdraw the waiting registration", e))?;
    }
    if ticket.register {
        // Committed before the claim's snapshot: an event this claim misses notifies us.
        client
            .execute(&cx.sql.register, &[&cx.relay_id])
            .await
            .map_err(|e| Error::postgres("could not register as a waiting relay", e))?;
    }
    let (claim, claims, full, _held) = async {
        let turn = cx.cursor.turn(ticket.register).await;
        let mut claim =
            crate::claim::claim(&mut client, &cx.sql.claim, config.batch_size, turn.after())
                .await?;
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
        let held = turn.claimed(claim.events.last().map(|e| e.id));
        Ok::<_, Error>((claim, claims, full, held))
    }
    .instrument(tracing::info_span!(target: "outbox_relay::batch", "claim"))
    .await?;
    let count = claim.events.len();
    if count == 0 {
        // Nothing to do; dropping the claim ends its (empty) transaction.
        return Ok(Claimed::Empty);
    }
    let (first_id, last_id) = (claim.events[0].id, claim.events[count - 1].id);
    *claimed = ClaimedSpan {
        events: count,
        first_id,
        last_id,
    };
    tracing::Span::current().record("events", count);
    let claimed_at = started.elapsed();
    let refused = crate::deliver::deliver(
        cx.sink,
        &claim.events,
        config.insert_timeout,
        config.max_event_bytes,
    )
    .instrument(tracing::info_span!(target: "outbox_relay::batch", "deliver", events = count))
    .await?;
    let inserted = started.elapsed();
    let deregister = ticket.deregister.then_some(cx.relay_id);
    crate::acknowledge::acknowledge(claim, cx.sql, &refused, deregister)
        .instrument(tracing::info_span!(target: "outbox_relay::batch", "acknowledge"))
        .await?;
    if !refused.is_empty() {
        cx.stats
            .dead_lettered
            .fetch_add(refused.len() as u64, Ordering::Relaxed);
        tracing::error!(
            count = refused.len(),
            ids = ?refused.iter().map(|r| r.id).collect::<Vec<_>>(),
            first_reason = %refused[0].reason,
            tags.sink = cx.sink.name(),
            "events refused by the sink moved to event_log_dead_letter"
        );
    }
    tracing::info!(
        count,
        claims,
        dead_lettered = refused.len(),
        first_id,
        last_id,
        claim_ms = claimed_at.as_secs_f64() * 1e3,
        insert_ms = (inserted - claimed_at).as_secs_f64() * 1e3,
        ack_ms = (started.elapsed() - inserted).as_secs_f64() * 1e3,
        duration_ms = started.elapsed().as_secs_f64() * 1e3,
        "batch delivered"
    );
    cx.observer.metrics.batch_committed(
        cx.sink.name(),
        count,
        refused.len(),
        inserted - claimed_at,
        started.elapsed(),
    );
    cx.stats
        .delivered
        .fetch_add((count - refused.len()) as u64, Ordering::Relaxed);
    cx.stats.batches.fetch_add(1, Ordering::Relaxed);
    Ok(if full {
        Claimed::Full
    } else {
        Claimed::Partial(count)
    })
}
