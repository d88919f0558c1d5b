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
use crate::config::{redact_url, ClickHouseConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;

const TABLE: &str = "event_log";
const CREATE_TABLE_SQL: &str = include_str!("../../sql/clickhouse/event_log.sql");

/// How `event_date_time` is stored: microseconds where the server has DateTime64 (20.1+),
/// whole seconds before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeColumn {
    DateTime64,
    DateTime,
}

impl TimeColumn {
    fn ddl(self) -> &'static str {
        match self {
            TimeColumn::DateTime64 => "DateTime64(6, 'UTC')",
            TimeColumn::DateTime => "DateTime('UTC')",
        }
    }

    /// `event_date_time` as Int64 microseconds, for reading back.
    fn micros_expr(self) -> &'static str {
        match self {
            TimeColumn::DateTime64 => "toUnixTimestamp64Micro(event_date_time)",
            TimeColumn::DateTime => "toInt64(toUInt32(event_date_time)) * 1000000",
        }
    }
}

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
        Ok(ClickHouseSink {
            admin: client.clone().with_database("system"),
            client,
            database: config.database.clone(),
            url: redact_url(&config.url),
            time: OnceLock::new(),
        })
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

/// Sorts a ClickHouse exception ("Code: 27, e.displayText() = …" on old servers, "Code: 27.
/// DB::Exception: …" on new ones) into data the server will never accept
/// ([`ErrorKind::Rejected`]) and everything else ([`ErrorKind::Sink`], retried). Unknown
/// codes are retried: a wrong guess there delays events, a wrong guess the other way would
/// dead-letter good ones.
fn classify(response: &str) -> ErrorKind {
    let code = response
        .split("Code:")
        .nth(1)
        .and_then(|rest| {
            rest.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
        })
        .and_then(|digits| digits.parse::<u32>().ok());
    match code {
        // Parse, type, conversion and size errors: this data cannot be stored as it is.
        Some(
            6   // CANNOT_PARSE_TEXT
            | 26 | 27 // CANNOT_PARSE_QUOTED_STRING, CANNOT_PARSE_INPUT_ASSERTION_FAILED
            | 32 | 33 // ATTEMPT_TO_READ_AFTER_EOF, CANNOT_READ_ALL_DATA
            | 38 | 41 // CANNOT_PARSE_DATE, CANNOT_PARSE_DATETIME
            | 53 | 70 | 72 // TYPE_MISMATCH, CANNOT_CONVERT_TYPE, CANNOT_PARSE_NUMBER
            | 69 // ARGUMENT_OUT_OF_BOUND
            | 117 // INCORRECT_DATA
            | 131 // TOO_LARGE_STRING_SIZE
            | 321 // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
            | 395 // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (throwIf in a materialized view)
            | 469 // VIOLATED_CONSTRAINT
            | 1001, // STD_EXCEPTION while parsing
        ) => ErrorKind::Rejected,
        // Everything else, notably network errors, timeouts (159, 209, 210), TOO_MANY_PARTS
        // (252), memory limits (241), too many queries (202), missing tables or columns
        // (60, 16: an operator can fix those), and authentication (516, 192, 193).
        _ => ErrorKind::Sink,
    }
}

/// Checks an existing table against what we write; returns how it stores time.
fn check_columns(database: &str, columns: &[(String, String)]) -> Result<TimeColumn> {
    let type_of = |name: &str| {
        columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    };
    let mut problems = Vec::new();
    for (name, expected) in [
        ("event_id", "UInt64"),
        ("event_type", "String"),
        ("environment", "String"),
        ("event_context", "String"),
    ] {
        match type_of(name) {
            Some(t) if t == expected => {}
            Some(t) => problems.push(format!("column {name} is {t}, expected {expected}")),
            None => problems.push(format!("column {name} is missing")),
        }
    }
    let time = match type_of("event_date_time") {
        Some(t) if t == TimeColumn::DateTime64.ddl() => Some(TimeColumn::DateTime64),
        Some(t) if t == TimeColumn::DateTime.ddl() => Some(TimeColumn::DateTime),
        Some(t) => {
            problems.push(format!(
                "column event_date_time is {t}, expected DateTime64(6, 'UTC') or DateTime('UTC')"
            ));
            None
        }
        None => {
            problems.push("column event_date_time is missing".into());
            None
        }
    };
    match time {
        Some(time) if problems.is_empty() => Ok(time),
        _ => Err(Error::new(
            ErrorKind::Config,
            format!(
                "ClickHouse table {database}.{TABLE} does not match what outbox-relay writes: {}",
                problems.join("; ")
            ),
        )),
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
            let (major, minor) = self.server_version().await?;
            let time = if (major, minor) >= (20, 1) {
                TimeColumn::DateTime64
            } else {
                TimeColumn::DateTime
            };
            // The database name is a validated identifier (config::is_identifier).
            let ddl = CREATE_TABLE_SQL
                .replace("{database}", &self.database)
                .replace("{datetime}", time.ddl());
            self.admin
                .query(&format!(
                    "CREATE DATABASE IF NOT EXISTS `{}`",
                    self.database
                ))
                .execute()
                .await
                .map_err(|e| self.error("cannot create the database", e))?;
            self.admin
                .query(&ddl)
                .execute()
                .await
                .map_err(|e| self.error("cannot create table event_log", e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clickhouse_errors_are_classified() {
        let old = "Code: 27, e.displayText() = DB::Exception: Cannot parse input, e.what() = DB::Exception";
        let new = "Code: 395. DB::Exception: Value passed to 'throwIf' function is non-zero. (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO)";
        assert_eq!(classify(old), ErrorKind::Rejected);
        assert_eq!(classify(new), ErrorKind::Rejected);
        assert_eq!(
            classify("Code: 252. DB::Exception: Too many parts (300)."),
            ErrorKind::Sink
        );
        assert_eq!(
            classify("Code: 241, e.displayText() = DB::Exception: Memory limit exceeded"),
            ErrorKind::Sink
        );
        assert_eq!(
            classify("Code: 60. DB::Exception: Table x.event_log does not exist."),
            ErrorKind::Sink
        );
        assert_eq!(classify("502 Bad Gateway"), ErrorKind::Sink);
    }
}
