//! Fan-out: one batch to two sinks, acknowledged only when both have it.
//!
//! `FanOut<A, B>` is itself a [`Sink`], so three sinks are `FanOut<A, FanOut<B, C>>`. Both
//! inserts run at once; the batch succeeds only if both do, so a sink that is down holds
//! the batch back (rolled back, retried) without losing anything, and the sink that did take
//! it gets it again on the retry: each sink must absorb a redelivery (ClickHouse collapses by
//! `event_id`, the PostgreSQL archive skips conflicts).

use super::{EventFilter, Sink};
use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;

/// Two sinks as one.
pub struct FanOut<A, B> {
    first: A,
    second: B,
    name: &'static str,
}

impl<A: Sink, B: Sink> FanOut<A, B> {
    pub fn new(first: A, second: B) -> Self {
        // Once per relay: a name for logs and metrics labels, e.g. "clickhouse+postgres".
        let name = Box::leak(format!("{}+{}", first.name(), second.name()).into_boxed_str());
        FanOut {
            first,
            second,
            name,
        }
    }
}

/// Both results as one: the first error that a retry may fix wins (the batch is rolled back
/// and retried whole); only when every failure is a permanent refusal is the batch refused,
/// so the relay isolates and dead-letters the events a sink will never take.
fn combine(results: [Result<()>; 2]) -> Result<()> {
    let errors: Vec<Error> = results.into_iter().filter_map(|r| r.err()).collect();
    if errors.is_empty() {
        return Ok(());
    }
    let retryable = errors.iter().position(|e| e.kind() != ErrorKind::Rejected);
    let mut errors = errors;
    Err(errors.swap_remove(retryable.unwrap_or(0)))
}

impl<A: Sink, B: Sink> Sink for FanOut<A, B> {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn init(&self) -> Result<()> {
        self.first.init().await?;
        self.second.init().await
    }

    async fn insert(&self, events: &[Event]) -> Result<()> {
        let (a, b) = tokio::join!(self.first.insert(events), self.second.insert(events));
        combine([a, b])
    }

    /// Reads the first sink.
    async fn query(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        self.first.query(filter).await
    }

    async fn ping(&self) -> Result<()> {
        let (a, b) = tokio::join!(self.first.ping(), self.second.ping());
        a.and(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: ErrorKind) -> Result<()> {
        Err(Error::new(kind, format!("{kind}")))
    }

    #[test]
    fn a_retryable_failure_outranks_a_refusal() {
        assert!(combine([Ok(()), Ok(())]).is_ok());
        let e = combine([err(ErrorKind::Rejected), err(ErrorKind::Sink)]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Sink);
        let e = combine([Ok(()), err(ErrorKind::Rejected)]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected);
        let e = combine([err(ErrorKind::Timeout), Ok(())]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }
}
