//! `migrate`: installs the outbox in PostgreSQL and the table in the sink.
//!
//! Every statement is idempotent, and the PostgreSQL part runs under a transaction-level
//! advisory lock, so two `migrate`s at once serialise instead of racing on the catalog.

use crate::config::PostgresConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::sink::Sink;

const SCHEMA_SQL: &str = include_str!("../sql/postgres/schema.sql");
const DEMO_SQL: &str = include_str!("../sql/postgres/demo.sql");

/// Any constant works; this one is "outbox-r" in ASCII, unlikely to collide with an app's.
const MIGRATE_LOCK: i64 = 0x6f75_7462_6f78_2d72;

/// PostgreSQL channel names are identifiers: at most 63 bytes.
const MAX_CHANNEL_LEN: usize = 63;

/// Installs the PostgreSQL outbox (and with `demo`, the `users` table) into the current
/// schema. Returns that schema's name.
pub async fn migrate_postgres(pg: &PostgresConfig, demo: bool) -> Result<String> {
    let mut client = crate::postgres::connect(pg).await?;
    let schema = crate::postgres::current_schema(&client).await?;
    if schema.len() + ".event_log".len() > MAX_CHANNEL_LEN {
        return Err(Error::new(
            ErrorKind::Config,
            format!("schema name '{schema}' is too long: the NOTIFY channel '{schema}.event_log' must fit in 63 bytes"),
        ));
    }
    let tx = client
        .transaction()
        .await
        .map_err(|e| Error::postgres("could not begin the migration", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(|e| Error::postgres("could not take the migration lock", e))?;
    tx.batch_execute(SCHEMA_SQL).await.map_err(|e| {
        Error::postgres(
            format!("could not install the outbox in schema {schema}"),
            e,
        )
    })?;
    if demo {
        tx.batch_execute(DEMO_SQL)
            .await
            .map_err(|e| Error::postgres("could not install the demo users table", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| Error::postgres("could not commit the migration", e))?;
    Ok(schema)
}

/// Creates (or checks) the sink's table.
pub async fn migrate_sink(sink: &impl Sink) -> Result<()> {
    sink.init().await
}
