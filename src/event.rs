//! The event as it travels: [`NewEvent`] from a producer, [`Event`] once committed.

use time::OffsetDateTime;

/// An event a producer writes. `created_at` and `id` are assigned by PostgreSQL.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The event type, e.g. `user_created`.
    pub event_type: String,
    /// Where it happened, e.g. `Local`, `Production`.
    pub environment: String,
    /// Free-form context.
    pub context: serde_json::Value,
}

/// A committed event, as claimed from `event_log` or read back from a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `event_log.id`; the sink's `event_id`, which makes redelivery idempotent.
    pub id: i64,
    pub event_type: String,
    pub created_at: OffsetDateTime,
    pub environment: String,
    /// The context's JSON text exactly as PostgreSQL renders the `jsonb` value.
    pub context: String,
}

impl Event {
    /// An event from a row whose first columns are, in order, its id, type, `created_at`,
    /// environment and context as text (as every statement that reads events selects them).
    pub fn from_row(row: &tokio_postgres::Row) -> Event {
        Event {
            id: row.get(0),
            event_type: row.get(1),
            created_at: row.get(2),
            environment: row.get(3),
            context: row.get(4),
        }
    }
}
