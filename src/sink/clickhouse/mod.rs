//! The ClickHouse sink: RowBinary inserts into `event_log` through the official crate.
//!
//! Two server facts shape this file (measured on ClickHouse 18.16, see the README):
//! - schema validation must be off: it relies on formats and settings old servers lack;
//! - the crate's default HTTP client does not set TCP_NODELAY, so each lz4 insert stalls
//!   ~40 ms on delayed ACKs. We hand it a hyper client with `set_nodelay(true)`.

use std::sync::OnceLock;
use std::time::Duration;

use clickhouse::{Client, Row};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{EventFilter, Sink};
use crate::config::{redact_url, ClickHouseConfig, ClusterConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;

mod schema;

use self::schema::{check_columns, classify, ClusterDdl, TimeColumn, TABLE};

/// The row for servers with DateTime64: `event_date_time` in microseconds.
#[derive(Row, Serialize)]
struct Row64<'a> {
    event_id: u64,
    event_type: &'a str,
    event_date_time: i64,
    environment: &'a str,
    event_context: &'a str,
}

/// The row for servers before 20.1: `event_date_time` in seconds.
#[derive(Row, Serialize)]
struct Row32<'a> {
    event_id: u64,
    event_type: &'a str,
    event_date_time: u32,
    environment: &'a str,
    event_context: &'a str,
}

#[derive(Row, Deserialize)]
struct StoredRow {
    event_id: u64,
    event_type: String,
    micros: i64,
    environment: String,
    event_context: String,
}

/// Delivers events to a ClickHouse `event_log` table.
pub struct ClickHouseSink {
    client: Client,
    /// The same connection settings with the `system` database, which always exists: the
    /// configured database may not yet when `init` runs.
    admin: Client,
    database: String,
    url: String,
    time: OnceLock<TimeColumn>,
    cluster: Option<ClusterConfig>,
}

impl ClickHouseSink {
    /// A sink for `config`. Reads the TLS roots; no network I/O until the first call.
    pub fn new(config: &ClickHouseConfig) -> Result<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        // Let https:// URLs through to the TLS layer below.
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::tls::client_config(None)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            // Below the server's keep-alive timeout (3 s before 23.11), so we never reuse a
            // connection the server is closing.
            .pool_idle_timeout(Duration::from_secs(2))
            .build(connector);
        let mut client = Client::with_http_client(http)
            .with_url(&config.url)
            .with_database(&config.database)
            .with_validation(false);
        if let Some(user) = &config.user {
            client = client.with_user(user);
        }
        if let Some(password) = &config.password {
            client = client.with_password(password);
        }
        if config.cluster.is_some() {
            // Into a Distributed table, an insert returns only once every shard has its
            // rows: the relay deletes events only after that. (The default queues them on
            // this node and forwards them later: a lost node would lose acknowledged events.)
            client = client.with_setting("insert_distributed_sync", "1");
        }
        Ok(ClickHouseSink {
            admin: client.clone().with_database("system"),
            client,
            database: config.database.clone(),
            url: redact_url(&config.url),
            time: OnceLock::new(),
            cluster: config.cluster.clone(),
        })
    }

    /// Creates the database (with `on_cluster`, e.g. ` ON CLUSTER `c``, or on this node
    /// alone) and runs `ddl` through `admin`.
    async fn create(&self, admin: &Client, ddl: &[String], on_cluster: &str) -> Result<()> {
        // The database name is a validated identifier (config::is_identifier).
        admin
            .query(&format!(
                "CREATE DATABASE IF NOT EXISTS `{}`{on_cluster}",
                self.database
            ))
            .execute()
            .await
            .map_err(|e| self.error("cannot create the database", e))?;
        for statement in ddl {
            admin
                .query(statement)
                .execute()
                .await
                .map_err(|e| self.error("cannot create table event_log", e))?;
        }
        Ok(())
    }

    fn error(&self, what: &str, e: clickhouse::error::Error) -> Error {
        let kind = match &e {
            clickhouse::error::Error::BadResponse(text) => classify(text),
            _ => ErrorKind::Sink,
        };
        Error::with_source(kind, format!("ClickHouse at {}: {what}", self.url), e)
    }

    /// The server's (major, minor) version.
    pub async fn server_version(&self) -> Result<(u32, u32)> {
        let version: String = self
            .admin
            .query("SELECT version()")
            .fetch_one()
            .await
            .map_err(|e| self.error("cannot read the server version", e))?;
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        Ok((parts.next().unwrap_or(0), parts.next().unwrap_or(0)))
    }

    /// The existing table's columns as (name, type), empty when the table is missing.
    async fn columns(&self) -> Result<Vec<(String, String)>> {
        self.admin
            .query("SELECT name, type FROM system.columns WHERE database = ? AND table = ?")
            .bind(&self.database)
            .bind(TABLE)
            .fetch_all::<(String, String)>()
            .await
            .map_err(|e| self.error("cannot read system.columns", e))
    }

    async fn time_column(&self) -> Result<TimeColumn> {
        if let Some(t) = self.time.get() {
            return Ok(*t);
        }
        self.init().await?;
        Ok(*self.time.get().expect("init sets the time column"))
    }
}

fn out_of_range(event: &Event, column: &str) -> Error {
    Error::new(
        ErrorKind::Rejected,
        format!(
            "event {}: created_at {} is outside the range of {column}",
            event.id, event.created_at
        ),
    )
}

fn seconds(event: &Event) -> Result<u32> {
    u32::try_from(event.created_at.unix_timestamp()).map_err(|_| out_of_range(event, "DateTime"))
}

/// DateTime64 holds 1900-01-01 to 2299-12-31; outside it ClickHouse would store garbage.
fn micros(event: &Event) -> Result<i64> {
    const MIN: i64 = -2_208_988_800; // 1900-01-01T00:00:00Z
    const MAX: i64 = 10_413_791_999; // 2299-12-31T23:59:59Z
    let seconds = event.created_at.unix_timestamp();
    if !(MIN..=MAX).contains(&seconds) {
        return Err(out_of_range(event, "DateTime64"));
    }
    Ok((event.created_at.unix_timestamp_nanos() / 1000) as i64)
}

impl Sink for ClickHouseSink {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    async fn init(&self) -> Result<()> {
        let mut columns = self.columns().await?;
        if columns.is_empty() {
            let time = TimeColumn::for_server(self.server_version().await?);
            match &self.cluster {
                None => {
                    let ddl = schema::single_table(&self.database, time);
                    self.create(&self.admin, &[ddl], "").await?;
                }
                Some(cluster) if cluster.nodes.is_empty() => {
                    let ddl = schema::cluster_tables(
                        &self.database,
                        &cluster.name,
                        time,
                        ClusterDdl::OnCluster,
                    );
                    let on = format!(" ON CLUSTER `{}`", cluster.name);
                    self.create(&self.admin, &ddl, &on).await?;
                }
                Some(cluster) => {
                    let ddl = schema::cluster_tables(
                        &self.database,
                        &cluster.name,
                        time,
                        ClusterDdl::PerNode,
                    );
                    for node in &cluster.nodes {
                        let admin = self.admin.clone().with_url(node);
                        self.create(&admin, &ddl, "").await.map_err(|e| {
                            Error::with_source(
                                e.kind(),
                                format!("on cluster node {}", redact_url(node)),
                                e,
                            )
                        })?;
                    }
                }
            }
            columns = self.columns().await?;
        }
        let time = check_columns(&self.database, &columns)?;
        let _ = self.time.set(time);
        Ok(())
    }

    async fn insert(&self, events: &[Event]) -> Result<()> {
        let fail = |e| self.error("insert failed", e);
        match self.time_column().await? {
            TimeColumn::DateTime64 => {
                let mut insert = self.client.insert::<Row64<'_>>(TABLE).await.map_err(fail)?;
                for e in events {
                    let row = Row64 {
                        event_id: e.id as u64,
                        event_type: &e.event_type,
                        event_date_time: micros(e)?,
                        environment: &e.environment,
                        event_context: &e.context,
                    };
                    insert.write(&row).await.map_err(fail)?;
                }
                insert.end().await.map_err(fail)
            }
            TimeColumn::DateTime => {
                let mut insert = self.client.insert::<Row32<'_>>(TABLE).await.map_err(fail)?;
                for e in events {
                    let row = Row32 {
                        event_id: e.id as u64,
                        event_type: &e.event_type,
                        event_date_time: seconds(e)?,
                        environment: &e.environment,
                        event_context: &e.context,
                    };
                    insert.write(&row).await.map_err(fail)?;
                }
                insert.end().await.map_err(fail)
            }
        }
    }

    async fn query(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let time = self.time_column().await?;
        let mut sql = format!(
            "SELECT event_id, event_type, {} AS micros, environment, event_context FROM {TABLE}",
            time.micros_expr()
        );
        if filter.event_type.is_some() {
            sql.push_str(" WHERE event_type = ?");
        }
        sql.push_str(" ORDER BY event_id");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let mut query = self.client.query(&sql);
        if let Some(t) = &filter.event_type {
            query = query.bind(t);
        }
        let rows = query
            .fetch_all::<StoredRow>()
            .await
            .map_err(|e| self.error("query failed", e))?;
        rows.into_iter()
            .map(|r| {
                let created_at =
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.micros) * 1000)
                        .map_err(|e| {
                            Error::with_source(
                                ErrorKind::Sink,
                                "stored event_date_time is out of range",
                                e,
                            )
                        })?;
                Ok(Event {
                    id: r.event_id as i64,
                    event_type: r.event_type,
                    created_at,
                    environment: r.environment,
                    context: r.event_context,
                })
            })
            .collect()
    }
}
