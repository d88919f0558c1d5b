//! Stage 2, claim: lock up to a batch of the oldest events in a transaction of their own.
//!
//! A delivery may hold several claims: while each comes back full, the same transaction
//! claims the next `EVENT_BATCH_SIZE` rows after the last one it holds (up to
//! `CLAIMS_PER_INSERT`), so a backlog reaches the sink in few large inserts. ClickHouse
//! pays per insert (one part, about twenty files, and later merges), not per row.
//!
//! A relay's concurrent deliveries take turns through one [`Cursor`]: a delivery that
//! claims while another still holds rows starts after the last id claimed, instead of at
//! the oldest event. `SKIP LOCKED` skips a row another transaction holds, but only after
//! visiting it and trying its lock; starting every claim at the oldest event made each
//! delivery wade through the other's 10,000 locked rows. Taking turns raised the drain
//! from 0.74× to 0.87× of the raw drain, on average over six rounds of one run
//! (BENCHMARKS.md).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deadpool_postgres::Transaction;
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

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

/// Opens a transaction on `client` and locks up to `limit` unclaimed events with ids above
/// `after` (`i64::MIN`: the oldest first; see [`Turn::after`]).
pub async fn claim<'a>(
    client: &'a mut deadpool_postgres::Client,
    sql: &'a str,
    limit: usize,
    after: i64,
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
    claim.claim_from(after, limit).await?;
    Ok(claim)
}

impl Claim<'_> {
    /// Locks up to `limit` more unclaimed events after the last one held, in the same
    /// transaction; returns how many it got.
    pub async fn claim_more(&mut self, limit: usize) -> Result<usize> {
        let after = self.events.last().map_or(i64::MIN, |e| e.id);
        self.claim_from(after, limit).await
    }

    async fn claim_from(&mut self, after: i64, limit: usize) -> Result<usize> {
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
        self.events.extend(rows.iter().map(Event::from_row));
        Ok(rows.len())
    }
}

/// Where a relay's next claim starts, shared by its deliveries.
///
/// Claims take turns (the claiming phase of one delivery, up to `CLAIMS_PER_INSERT`
/// statements, at a time; inserts and acknowledgements still overlap). A turn starts at
/// the oldest event when no other delivery of this relay holds claimed rows, when the
/// ticket asks for it (an idle relay's re-check: polling is the truth), and at least once
/// per `rescan_every`; otherwise after the highest id this relay has claimed.
///
/// Why an event below that id is never stranded: ids are not commit order (a transaction
/// that took its id early can commit late), and a rolled-back delivery releases rows below
/// it. Such rows are claimed by the next turn that starts at the oldest event, which comes
/// within `rescan_every` while the relay is busy, and at once when it goes idle (its
/// re-check starts at the oldest event).
#[derive(Debug)]
pub struct Cursor {
    state: Mutex<Frontier>,
    /// Deliveries holding claimed rows (between their claim and their commit or rollback).
    holders: AtomicUsize,
    rescan_every: Duration,
}

#[derive(Debug)]
struct Frontier {
    /// The highest id claimed by this relay so far.
    last_id: i64,
    /// When a turn last started at the oldest event.
    last_rescan: Option<Instant>,
}

impl Cursor {
    pub fn new(rescan_every: Duration) -> Self {
        Cursor {
            state: Mutex::new(Frontier {
                last_id: i64::MIN,
                last_rescan: None,
            }),
            holders: AtomicUsize::new(0),
            rescan_every,
        }
    }

    /// Waits for this relay's turn to claim. `from_oldest` forces the turn to start at the
    /// oldest event.
    pub async fn turn(&self, from_oldest: bool) -> Turn<'_> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let rescan_due = state
            .last_rescan
            .is_none_or(|at| now.duration_since(at) >= self.rescan_every);
        let after = if from_oldest || rescan_due || self.holders.load(Ordering::Acquire) == 0 {
            state.last_rescan = Some(now);
            i64::MIN
        } else {
            state.last_id
        };
        Turn {
            state,
            cursor: self,
            after,
        }
    }
}

/// One delivery's turn to claim; the next turn waits until this one is [`Turn::claimed`]
/// or dropped (a failed claim).
#[derive(Debug)]
pub struct Turn<'a> {
    state: MutexGuard<'a, Frontier>,
    cursor: &'a Cursor,
    after: i64,
}

impl<'a> Turn<'a> {
    /// The id this turn's first claim starts after (`i64::MIN`: the oldest event).
    pub fn after(&self) -> i64 {
        self.after
    }

    /// Ends the turn once the delivery claimed up to `last_id`; the returned [`Held`] marks
    /// the delivery as holding rows until it is dropped (after commit or rollback).
    pub fn claimed(mut self, last_id: Option<i64>) -> Option<Held<'a>> {
        let last_id = last_id?;
        self.state.last_id = self.state.last_id.max(last_id);
        self.cursor.holders.fetch_add(1, Ordering::AcqRel);
        Some(Held(self.cursor))
    }
}

/// A delivery holding claimed rows; see [`Cursor`].
#[derive(Debug)]
pub struct Held<'a>(&'a Cursor);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.holders.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_turn_starts_at_the_oldest_event_unless_another_delivery_holds_rows() {
        let cursor = Cursor::new(Duration::from_secs(1));
        let first = cursor.turn(false).await;
        assert_eq!(first.after(), i64::MIN, "nothing held: from the oldest");
        let held = first.claimed(Some(10_000));
        let second = cursor.turn(false).await;
        assert_eq!(
            second.after(),
            10_000,
            "another delivery holds rows: after them"
        );
        let second_held = second.claimed(Some(20_000));
        drop(held);
        drop(second_held);
        assert_eq!(
            cursor.turn(false).await.after(),
            i64::MIN,
            "nothing held again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_relay_rescans_from_the_oldest_event_at_least_every_interval() {
        let cursor = Cursor::new(Duration::from_secs(1));
        let _held = cursor.turn(false).await.claimed(Some(100));
        assert_eq!(cursor.turn(false).await.after(), 100);
        assert_eq!(
            cursor.turn(true).await.after(),
            i64::MIN,
            "a re-check starts at the oldest"
        );
        assert_eq!(cursor.turn(false).await.after(), 100);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(cursor.turn(false).await.after(), i64::MIN, "rescan due");
        assert_eq!(cursor.turn(false).await.after(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn turns_are_taken_one_at_a_time() {
        let cursor = Cursor::new(Duration::from_secs(1));
        let turn = cursor.turn(false).await;
        let next = tokio::time::timeout(Duration::from_millis(10), cursor.turn(false)).await;
        assert!(next.is_err(), "the next turn waits for the current one");
        assert!(turn.claimed(None).is_none(), "an empty claim holds nothing");
        let _ = tokio::time::timeout(Duration::from_millis(10), cursor.turn(false))
            .await
            .expect("the turn is free again");
    }
}
