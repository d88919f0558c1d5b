//! Stage 2, claim: lock up to a batch of the oldest events in a transaction of their own.

use deadpool_postgres::Transaction;

use crate::error::{Error, Result};
use crate::event::Event;

const CLAIM_SQL: &str = include_str!("../sql/postgres/claim.sql");

/// Claimed events and the transaction holding their row locks. Dropping a claim rolls the
/// transaction back: the events stay in `event_log` and are claimed again later.
pub struct Claim<'a> {
    pub(crate) tx: Transaction<'a>,
    pub events: Vec<Event>,
}

/// Opens a transaction on `client` and locks up to `limit` unclaimed events, oldest first.
pub async fn claim(client: &mut deadpool_postgres::Client, limit: usize) -> Result<Claim<'_>> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| Error::postgres("could not begin a claim", e))?;
    let statement = tx
        .prepare_cached(CLAIM_SQL)
        .await
        .map_err(|e| Error::postgres("could not prepare the claim query", e))?;
    let rows = tx
        .query(&statement, &[&(limit as i64)])
        .await
        .map_err(|e| Error::postgres("claim query failed", e))?;
    let events = rows
        .iter()
        .map(|row| Event {
            id: row.get(0),
            event_type: row.get(1),
            created_at: row.get(2),
            environment: row.get(3),
            context: row.get(4),
        })
        .collect();
    Ok(Claim { tx, events })
}
