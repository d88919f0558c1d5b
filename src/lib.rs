//! outbox-relay streams events from a PostgreSQL outbox table into ClickHouse.
//!
//! Producers insert into `event_log` inside their own transaction ([`publish`], or the SQL
//! function `outbox_publish`), so an event exists exactly when the business change
//! committed. A statement-level trigger NOTIFYs; the [`Relay`] wakes on it (or on a fallback
//! timer), claims batches with `SELECT … FOR UPDATE SKIP LOCKED`, inserts them into a
//! [`Sink`], and deletes them only after the sink has them.
//!
//! The data path, one module per stage:
//! [`listen`] → [`claim`] → encode and deliver ([`sink`]) → [`acknowledge`], scheduled by
//! [`schedule`] and chained by [`relay`]. Around it: [`outbox`] (the table's names and the
//! SQL rendered for them), [`observe`] (metrics, health), [`run`] (the configured sinks),
//! [`status`], [`migrate`].
//!
//! ```no_run
//! # async fn demo(pg: outbox_relay::config::PostgresConfig, ch: outbox_relay::config::ClickHouseConfig)
//! # -> outbox_relay::Result<()> {
//! use outbox_relay::{config::RelayConfig, ClickHouseSink, Relay};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! Relay::new(pg, ClickHouseSink::new(&ch)?, RelayConfig::default()).run(shutdown).await
//! # }
//! ```

pub mod acknowledge;
pub mod backoff;
mod batch;
pub mod claim;
pub mod cli;
pub mod config;
pub mod dead_letter;
pub mod deliver;
mod error;
mod event;
pub mod listen;
pub mod migrate;
pub mod observe;
pub mod outbox;
pub mod postgres;
mod producer;
pub mod relay;
pub mod run;
pub mod schedule;
pub mod sink;
pub mod status;
pub mod telemetry;
pub mod tls;

pub use error::{Error, ErrorKind, Result};
pub use event::{Event, NewEvent};
pub use producer::{create_user, publish, User};
pub use relay::Relay;
pub use sink::{ClickHouseSink, EventFilter, Sink};
