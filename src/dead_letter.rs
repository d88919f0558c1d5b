//! The dead-letter table: events a sink refused for good, kept with the reason, and moved
//! back into `event_log` on request.

use crate::error::{Error, Result};

use crate::outbox::Outbox;

const LIST_SQL: &str = include_str!("../sql/postgres/dead_letter_list.sql");
const REPLAY_SQL: &str = include_str!("../sql/postgres/dead_letter_replay.sql");

/// One dead-lettered event (its context shortened to 200 characters).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub event_type: String,
    pub created_at: String,
    pub environment: String,
    pub context_preview: String,
    pub error: String,
    pub failed_at: String,
    pub attempts: i32,
}

/// Dead letters not yet replayed, oldest id first.
pub async fn list(client: &tokio_postgres::Client, outbox: &Outbox) -> Result<Vec<DeadLetter>> {
    let rows = client
        .query(&outbox.render(LIST_SQL), &[])
        .await
        .map_err(|e| Error::postgres("could not read the dead-letter table", e))?;
    Ok(rows
        .iter()
        .map(|r| DeadLetter {
            id: r.get(0),
            event_type: r.get(1),
            created_at: r.get(2),
            environment: r.get(3),
            context_preview: r.get(4),
            error: r.get(5),
            failed_at: r.get(6),
            attempts: r.get(7),
        })
        .collect())
}

/// Moves the dead letters `ids` (or all, with `all`) back into `event_log` with their
/// original ids, in one transaction. Returns the ids replayed.
pub async fn replay(
    client: &mut tokio_postgres::Client,
    outbox: &Outbox,
    ids: &[i64],
    all: bool,
) -> Result<Vec<i64>> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| Error::postgres("could not begin the replay", e))?;
    let rows = tx
        .query(&outbox.render(REPLAY_SQL), &[&ids, &all])
        .await
        .map_err(|e| Error::postgres("could not replay dead letters", e))?;
    tx.commit()
        .await
        .map_err(|e| Error::postgres("could not commit the replay", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
