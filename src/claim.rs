//! Stage 2, claim: lock up to a batch of the oldest events in a transaction of their own.
//!
//! A delivery may hold several claims: while each comes back full, the same transaction
//! claims the next `EVENT_BATCH_SIZE` rows after the last one it holds (up to
//! `CLAIMS_PER_INSERT`), so a backlog reaches the sink in few large inserts. ClickHouse
//! pays per insert (one part, about twenty files, and later merges), not per row.

use deadpool_postgres::Transaction;

use crate::error::{Error, Result};
use crate::event::Event;

/// Claimed events and the transaction holding their row locks. Dropping a claim rolls the
/// transaction back: the events stay in `event_log` and are claimed again later.
pub struct Claim<'a> {
    pub(crate) tx: Transaction<'a>,
    pub events: Vec<Event>,
    /// The rendered claim statement (`sql/postgres/claim.sql`).
    sql: &'a str,
}

/// Opens a transaction on `client` and locks up to `limit` unclaimed events, oldest first.
pub async fn claim<'a>(
    client: &'a mut deadpool_postgres::Client,
    sql: &'a str,
    limit: usize,
) -> Result<Claim<'a>> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| Error::postgres("could not begin a claim", e))?;
    let mut claim = Claim {
        tx,
        events: Vec::new(),
        sql,
    };
    claim.claim_more(limit).await?;
    Ok(claim)
}

impl Claim<'_> {
    /// Locks up to `limit` more unclaimed events after the last one held, in the same
    /// transaction; returns how many it got.
    pub async fn claim_more(&mut self, limit: usize) -> Result<usize> {
        let after = self.events.last().map_or(i64::MIN, |e| e.id);
        let statement = self
            .tx
            .prepare_cached(self.sql)
            .await
            .map_err(|e| Error::postgres("could not prepare the claim query", e))?;
        let rows = self
            .tx
            .query(&statement, &[&(limit as i64), &after])
            .await
            .map_err(|e| Error::postgres("claim query failed", e))?;
        self.events.reserve(rows.len());
        self.events.extend(rows.iter().map(|row| Event {
            id: row.get(0),
            event_type: row.get(1),
            created_at: row.get(2),
            environment: row.get(3),
            context: row.get(4),
        }));
        Ok(rows.len())
    }
}
