//! Stage 4, deliver: hand a claimed batch to the sink within the insert timeout, and keep one
//! bad event from stopping the stream.
//!
//! When the sink refuses a batch for good ([`ErrorKind::Rejected`]), the batch is split in
//! halves and each half retried, down to the single events that are refused: those are
//! returned as [`Refused`] for the dead-letter table and everything else is delivered. A
//! refusal costs about `2·log2(batch)` extra inserts per bad event, paid only when one
//! occurs. Any other error (network, timeout, overload) fails the whole batch, which the
//! relay rolls back and retries later.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;
use crate::relay::format_chain;
use crate::sink::Sink;

/// An event the sink will not take, and why.
#[derive(Debug, Clone)]
pub struct Refused {
    pub id: i64,
    pub reason: String,
}

/// The bytes an event's variable-size fields take.
pub fn event_size(event: &Event) -> usize {
    event.context.len() + event.event_type.len() + event.environment.len()
}

/// Delivers `events`; returns those refused for good. Events over `max_event_bytes` are
/// refused without being sent.
pub async fn deliver<S: Sink>(
    sink: &S,
    events: &[Event],
    timeout: Duration,
    max_event_bytes: usize,
) -> Result<Vec<Refused>> {
    let (sendable, oversized): (Vec<&Event>, Vec<&Event>) = events
        .iter()
        .partition(|e| event_size(e) <= max_event_bytes);
    let mut refused: Vec<Refused> = oversized
        .iter()
        .map(|e| Refused {
            id: e.id,
            reason: format!(
                "event is {} bytes, over the limit MAX_EVENT_BYTES={max_event_bytes}",
                event_size(e)
            ),
        })
        .collect();
    if sendable.len() == events.len() {
        refused.extend(bisect(sink, events, timeout).await?);
    } else if !sendable.is_empty() {
        let sendable: Vec<Event> = sendable.into_iter().cloned().collect();
        refused.extend(bisect(sink, &sendable, timeout).await?);
    }
    Ok(refused)
}

fn bisect<'a, S: Sink>(
    sink: &'a S,
    events: &'a [Event],
    timeout: Duration,
) -> Pin<Box<dyn Future<Output = Result<Vec<Refused>>> + Send + 'a>> {
    Box::pin(async move {
        match insert(sink, events, timeout).await {
            Ok(()) => Ok(Vec::new()),
            Err(e) if e.kind() == ErrorKind::Rejected => {
                if let [event] = events {
                    tracing::warn!(event_id = event.id, error = %format_chain(&e), "event refused by the sink; dead-lettering it");
                    return Ok(vec![Refused {
                        id: event.id,
                        reason: format_chain(&e),
                    }]);
                }
                let (left, right) = events.split_at(events.len() / 2);
                let mut refused = bisect(sink, left, timeout).await?;
                refused.extend(bisect(sink, right, timeout).await?);
                Ok(refused)
            }
            Err(e) => Err(e),
        }
    })
}

async fn insert<S: Sink>(sink: &S, events: &[Event], timeout: Duration) -> Result<()> {
    match tokio::time::timeout(timeout, sink.insert(events)).await {
        Ok(result) => result,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "{} insert of events {}..={} took longer than {timeout:?}",
                sink.name(),
                events.first().map_or(0, |e| e.id),
                events.last().map_or(0, |e| e.id)
            ),
        )),
    }
}
