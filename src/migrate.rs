//! `migrate`: installs the outbox in PostgreSQL and the table in the sink.
//!
//! Every statement is idempotent, and the PostgreSQL part runs under a transaction-level
//! advisory lock, so two `migrate`s at once serialise instead of racing on the catalog.

use crate::config::PostgresConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::outbox::{Outbox, MAX_IDENTIFIER};
use crate::sink::Sink;

const SCHEMA_SQL: &str = include_str!("../sql/postgres/schema.sql");
const RELAY_OBJECTS_SQL: &str = include_str!("../sql/postgres/relay_objects.sql");
const ADOPT_CHECK_SQL: &str = include_str!("../sql/postgres/adopt_check.sql");
const DEMO_SQL: &str = include_str!("../sql/postgres/demo.sql");

/// Any constant works; this one is "outbox-r" in ASCII, unlikely to collide with an app's.
const MIGRATE_LOCK: i64 = 0x6f75_7462_6f78_2d72;

/// What `migrate` installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The outbox table itself, `outbox_publish`, and the relay's objects.
    Install,
    /// Also the demo `users` table that `create-user` writes.
    Demo,
    /// Only the relay's objects beside an existing outbox table (registrations, the NOTIFY
    /// trigger, the dead-letter table) and, if the id column leads no index, one index.
    /// The table's rows and columns are left alone.
    Adopt,
}

/// Installs the PostgreSQL side into the current schema under an advisory lock. Returns
/// that schema's name.
pub async fn migrate_postgres(pg: &PostgresConfig, demo: bool) -> Result<String> {
    migrate_postgres_as(pg, if demo { Mode::Demo } else { Mode::Install }).await
}

/// [`migrate_postgres`] with an explicit [`Mode`].
pub async fn migrate_postgres_as(pg: &PostgresConfig, mode: Mode) -> Result<String> {
    let outbox = &pg.outbox;
    let mut client = crate::postgres::connect(pg).await?;
    let schema = crate::postgres::current_schema(&client).await?;
    let channel = outbox.channel_name(&schema);
    if channel.len() > MAX_IDENTIFIER {
        return Err(Error::new(
            ErrorKind::Config,
            format!("schema name '{schema}' is too long: the NOTIFY channel '{channel}' must fit in {MAX_IDENTIFIER} bytes"),
        ));
    }
    let tx = client
        .transaction()
        .await
        .map_err(|e| Error::postgres("could not begin the migration", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(|e| Error::postgres("could not take the migration lock", e))?;
    let installing = || format!("could not install the outbox in schema {schema}");
    match mode {
        Mode::Install | Mode::Demo => {
            tx.batch_execute(&outbox.render(SCHEMA_SQL))
                .await
                .map_err(|e| Error::postgres(installing(), e))?;
        }
        Mode::Adopt => adopt(&tx, outbox, &schema).await?,
    }
    tx.batch_execute(&outbox.render(RELAY_OBJECTS_SQL))
        .await
        .map_err(|e| Error::postgres(installing(), e))?;
    if mode == Mode::Demo {
        tx.batch_execute(DEMO_SQL)
            .await
            .map_err(|e| Error::postgres("could not install the demo users table", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| Error::postgres("could not commit the migration", e))?;
    Ok(schema)
}

/// Checks the existing table has every column the relay reads, and indexes the id column
/// if no index leads with it.
async fn adopt(tx: &tokio_postgres::Transaction<'_>, outbox: &Outbox, schema: &str) -> Result<()> {
    let columns = [
        &outbox.id,
        &outbox.event_type,
        &outbox.created_at,
        &outbox.environment,
        &outbox.context,
    ];
    let rows = tx
        .query(&outbox.render(ADOPT_CHECK_SQL), &[&columns.as_slice()])
        .await
        .map_err(|e| Error::postgres("could not inspect the table to adopt", e))?;
    let missing: Vec<String> = rows
        .iter()
        .filter(|r| !r.get::<_, bool>("present"))
        .map(|r| r.get("name"))
        .collect();
    if missing.len() == columns.len() {
        return Err(Error::new(
            ErrorKind::Config,
            format!("no table {schema}.{} to adopt (OUTBOX_TABLE)", outbox.table),
        ));
    }
    if !missing.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "table {schema}.{} has no column {} (set OUTBOX_*_COLUMN to the names it uses)",
                outbox.table,
                missing.join(", ")
            ),
        ));
    }
    let id_indexed: bool = rows[0].get("leads_an_index");
    if !id_indexed {
        let index = format!("{}_{}_outbox_idx", outbox.table, outbox.id);
        let index = &index[..index.len().min(MAX_IDENTIFIER)];
        tx.batch_execute(&outbox.render(&format!(
            "CREATE INDEX IF NOT EXISTS {} ON {{outbox}} ({{id}})",
            crate::postgres::quote_ident(index)
        )))
        .await
        .map_err(|e| Error::postgres("could not index the outbox's id column", e))?;
    }
    Ok(())
}

/// Creates (or checks) the sink's table.
pub async fn migrate_sink(sink: &impl Sink) -> Result<()> {
    sink.init().await
}
