//! The PostgreSQL sink: an archive table in another database, e.g. for long-term audit.
//!
//! Mapping from an [`Event`]: `event_id` ← id, `event_type`, `created_at`, `environment`,
//! `context` (jsonb), plus `archived_at`. A batch is written with `COPY … FROM STDIN
//! BINARY` into a session-local staging table and moved into the archive with
//! `ON CONFLICT (event_id) DO NOTHING`, in one transaction: PostgreSQL cannot collapse
//! duplicates later the way ClickHouse's ReplacingMergeTree does, so a redelivered batch
//! must add nothing.

use std::pin::pin;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::{EventFilter, Sink};
use crate::config::PostgresConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;
use crate::postgres::quote_ident;

const TABLE_SQL: &str = include_str!("../../sql/postgres/archive/table.sql");
const STAGING_SQL: &str = include_str!("../../sql/postgres/archive/staging.sql");
const COPY_SQL: &str = include_str!("../../sql/postgres/archive/copy.sql");
const MOVE_SQL: &str = include_str!("../../sql/postgres/archive/move.sql");

/// Where the PostgreSQL sink writes.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// The archive database (`ARCHIVE_DATABASE_URL`).
    pub postgres: PostgresConfig,
    /// The archive table, in the first schema of that URL's search_path (`ARCHIVE_TABLE`).
    pub table: String,
}

/// Delivers events to a PostgreSQL archive table.
pub struct PostgresSink {
    pool: deadpool_postgres::Pool,
    table: String,
    redacted_url: String,
}

impl PostgresSink {
    /// A sink with up to `connections` connections (one per batch in flight).
    pub fn new(config: &ArchiveConfig, connections: usize) -> Result<Self> {
        let tls = crate::tls::postgres(&config.postgres)?;
        let mut pg = config.postgres.config.clone();
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(std::time::Duration::from_secs(10));
        }
        Ok(PostgresSink {
            pool: crate::postgres::pool(pg, tls, connections.max(1))?,
            table: quote_ident(&config.table),
            redacted_url: config.postgres.redacted_url.clone(),
        })
    }

    fn sql(&self, template: &str) -> String {
        template.replace("{archive}", &self.table)
    }

    /// Data the archive refuses for good (SQLSTATE class 22, data exception, e.g. JSON
    /// PostgreSQL cannot store) is `Rejected`, so the relay dead-letters those events;
    /// anything else (connection, locks, disk) is retried.
    fn error(&self, what: &str, e: tokio_postgres::Error) -> Error {
        let kind = match e.code().map(|c| c.code()) {
            Some(code) if code.starts_with("22") => ErrorKind::Rejected,
            _ => ErrorKind::Sink,
        };
        Error::with_source(
            kind,
            format!("PostgreSQL archive at {}: {what}", self.redacted_url),
            e,
        )
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|e| {
            Error::with_source(
                ErrorKind::Sink,
                format!("PostgreSQL archive at {}: no connection", self.redacted_url),
                e,
            )
        })
    }
}

impl Sink for PostgresSink {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn init(&self) -> Result<()> {
        let client = self.client().await?;
        client
            .batch_execute(&self.sql(TABLE_SQL))
            .await
            .map_err(|e| self.error("cannot create the archive table", e))?;
        // An existing table must have the columns the insert writes.
        client
            .batch_execute(&self.sql(
                "SELECT event_id, event_type, created_at, environment, context FROM {archive} LIMIT 0",
            ))
            .await
            .map_err(|e| {
                Error::with_source(
                    ErrorKind::Config,
                    format!("the archive table {} does not have the expected columns", self.table),
                    e,
                )
            })
    }

    async fn insert(&self, events: &[Event]) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.error("cannot begin", e))?;
        tx.batch_execute(STAGING_SQL)
            .await
            .map_err(|e| self.error("cannot create the staging table", e))?;
        let sink = tx
            .copy_in(COPY_SQL)
            .await
            .map_err(|e| self.error("cannot start COPY", e))?;
        let types = [
            Type::INT8,
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::TEXT,
        ];
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
        for e in events {
            writer
                .as_mut()
                .write(&[
                    &e.id,
                    &e.event_type,
                    &e.created_at,
                    &e.environment,
                    &e.context,
                ])
                .await
                .map_err(|err| self.error("COPY failed", err))?;
        }
        writer
            .finish()
            .await
            .map_err(|e| self.error("COPY failed", e))?;
        tx.execute(&self.sql(MOVE_SQL), &[])
            .await
            .map_err(|e| self.error("cannot move the batch into the archive", e))?;
        tx.commit()
            .await
            .map_err(|e| self.error("cannot commit the batch", e))
    }

    async fn query(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let client = self.client().await?;
        let mut sql = self.sql(
            "SELECT event_id, event_type, created_at, environment, context::text FROM {archive}",
        );
        if filter.event_type.is_some() {
            sql.push_str(" WHERE event_type = $1");
        }
        sql.push_str(" ORDER BY event_id");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let rows = match &filter.event_type {
            Some(t) => client.query(&sql, &[t]).await,
            None => client.query(&sql, &[]).await,
        }
        .map_err(|e| self.error("query failed", e))?;
        Ok(rows.iter().map(Event::from_row).collect())
    }
}
