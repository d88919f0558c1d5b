//! Stage 5, acknowledge: delete what the sink has (and move what it refused to the
//! dead-letter table), and commit the claim.

use crate::claim::Claim;
use crate::deliver::Refused;
use crate::error::{Error, Result};
use crate::outbox::Statements;

/// Dead-letters `refused`, deletes all the claim's events, ends the relay's registration as
/// a waiter when `deregister` names it, and commits, atomically. Call only after the sink
/// stored every event not in `refused`.
pub async fn acknowledge(
    claim: Claim<'_>,
    sql: &Statements,
    refused: &[Refused],
    deregister: Option<&str>,
) -> Result<()> {
    if let Some(relay) = deregister {
        claim
            .tx
            .execute(&sql.deregister, &[&relay])
            .await
            .map_err(|e| Error::postgres("could not end the relay's registration", e))?;
    }
    if !refused.is_empty() {
        let ids: Vec<i64> = refused.iter().map(|r| r.id).collect();
        let reasons: Vec<&str> = refused.iter().map(|r| r.reason.as_str()).collect();
        claim
            .tx
            .execute(&sql.dead_letter, &[&ids, &reasons])
            .await
            .map_err(|e| {
                Error::postgres("could not move refused events to the dead-letter table", e)
            })?;
    }
    let ids: Vec<i64> = claim.events.iter().map(|e| e.id).collect();
    let statement = claim
        .tx
        .prepare_cached(&sql.acknowledge)
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
