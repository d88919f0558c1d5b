//! Destinations. A sink owns its table and its mapping from an [`Event`]; the relay only
//! calls [`Sink::insert`] with a claimed batch and deletes the batch when that succeeds.
//!
//! Adding a destination is one new type implementing [`Sink`] with its own mapping from an
//! event: see [`clickhouse`] and [`postgres`], and README "Adding a destination". [`FanOut`]
//! sends each batch to two sinks and succeeds only when both have it.

use std::future::Future;

use crate::error::Result;
use crate::event::Event;

pub mod clickhouse;
pub mod fanout;
pub mod postgres;

pub use self::clickhouse::ClickHouseSink;
pub use self::fanout::FanOut;
pub use self::postgres::PostgresSink;

/// Which events [`Sink::query`] reads back.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events of this type.
    pub event_type: Option<String>,
    /// At most this many rows (all when `None`).
    pub limit: Option<u64>,
}

/// A destination for events.
pub trait Sink: Send + Sync + 'static {
    /// A short name for logs, e.g. `clickhouse`.
    fn name(&self) -> &'static str;

    /// Creates the destination table if it is missing, and checks that an existing one has
    /// the columns [`Sink::insert`] writes. Fails, naming the mismatch, rather than letting
    /// the relay delete events it could not store.
    fn init(&self) -> impl Future<Output = Result<()>> + Send;

    /// Stores a batch. Must be all-or-nothing from the relay's point of view: on `Ok` every
    /// event is durable in the sink; on `Err` the relay rolls back and retries the batch, so
    /// a sink must tolerate an event arriving twice (ClickHouse collapses by `event_id`).
    fn insert(&self, events: &[Event]) -> impl Future<Output = Result<()>> + Send;

    /// Reads stored events back, ordered by id, duplicates included.
    fn query(&self, filter: &EventFilter) -> impl Future<Output = Result<Vec<Event>>> + Send;

    /// Checks that the destination answers, for readiness. The default reads no rows
    /// through [`Sink::query`]; override it when the sink has something cheaper.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send {
        async {
            let none = EventFilter {
                limit: Some(0),
                ..EventFilter::default()
            };
            self.query(&none).await.map(|_| ())
        }
    }
}
