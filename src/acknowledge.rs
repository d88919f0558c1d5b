//! Stage 5, acknowledge: delete what the sink has, and commit the claim.

use crate::claim::Claim;
use crate::error::{Error, Result};

const ACKNOWLEDGE_SQL: &str = include_str!("../sql/postgres/acknowledge.sql");

/// Deletes the claim's events and commits. Call only after the sink stored them all.
pub async fn acknowledge(claim: Claim<'_>) -> Result<()> {
    let ids: Vec<i64> = claim.events.iter().map(|e| e.id).collect();
    let statement = claim
        .tx
        .prepare_cached(ACKNOWLEDGE_SQL)
        .await
        .map_err(|e| Error::postgres("could not prepare the delete", e))?;
    claim
        .tx
        .execute(&statement, &[&ids])
        .await
        .map_err(|e| Error::postgres("could not delete delivered events", e))?;
    claim
        .tx
        .commit()
        .await
        .map_err(|e| Error::postgres("could not commit delivered events", e))
}
