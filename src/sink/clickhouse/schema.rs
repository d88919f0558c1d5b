//! The ClickHouse side's shape: the table DDL (one server, or a cluster's local tables
//! behind a `Distributed` table), the check of an existing table, how time is stored, and
//! which server errors are permanent.

use crate::error::{Error, ErrorKind, Result};

pub(super) const TABLE: &str = "event_log";
/// On a cluster, each shard's table; `event_log` is then the `Distributed` table over them.
pub(super) const LOCAL_TABLE: &str = "event_log_local";
const CREATE_TABLE_SQL: &str = include_str!("../../../sql/clickhouse/event_log.sql");
const CLUSTER_LOCAL_SQL: &str = include_str!("../../../sql/clickhouse/cluster_local.sql");
const CLUSTER_DISTRIBUTED_SQL: &str =
    include_str!("../../../sql/clickhouse/cluster_distributed.sql");

/// How `event_date_time` is stored: microseconds where the server has DateTime64 (20.1+),
/// whole seconds before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimeColumn {
    DateTime64,
    DateTime,
}

impl TimeColumn {
    /// The column a new table gets on a server of this (major, minor) version: DateTime64
    /// arrived in 20.1.
    pub(super) fn for_server(version: (u32, u32)) -> TimeColumn {
        if version >= (20, 1) {
            TimeColumn::DateTime64
        } else {
            TimeColumn::DateTime
        }
    }

    pub(super) fn ddl(self) -> &'static str {
        match self {
            TimeColumn::DateTime64 => "DateTime64(6, 'UTC')",
            TimeColumn::DateTime => "DateTime('UTC')",
        }
    }

    /// `event_date_time` as Int64 microseconds, for reading back.
    pub(super) fn micros_expr(self) -> &'static str {
        match self {
            TimeColumn::DateTime64 => "toUnixTimestamp64Micro(event_date_time)",
            TimeColumn::DateTime => "toInt64(toUInt32(event_date_time)) * 1000000",
        }
    }
}

/// The DDL for a single server: the database's `event_log`.
pub(super) fn single_table(database: &str, time: TimeColumn) -> String {
    CREATE_TABLE_SQL
        .replace("{database}", database)
        .replace("{datetime}", time.ddl())
}

/// How a cluster's tables are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClusterDdl {
    /// One `ON CLUSTER` statement through the distributed DDL queue (needs Keeper or
    /// ZooKeeper); replicated local tables.
    OnCluster,
    /// The same statements run on each node by `migrate` (no Keeper needed); plain
    /// ReplacingMergeTree local tables, one replica per shard.
    PerNode,
}

/// The DDL for a cluster: each shard's `event_log_local`, then `event_log` over them,
/// sharded by `event_id` (an event always lands on the same shard, so a redelivery
/// collapses there like on a single server).
pub(super) fn cluster_tables(
    database: &str,
    cluster: &str,
    time: TimeColumn,
    ddl: ClusterDdl,
) -> [String; 2] {
    let (on_cluster, engine) = match ddl {
        ClusterDdl::OnCluster => (
            format!("ON CLUSTER `{cluster}`"),
            format!(
                "ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{database}/{LOCAL_TABLE}', '{{replica}}')"
            ),
        ),
        ClusterDdl::PerNode => (String::new(), "ReplacingMergeTree()".to_owned()),
    };
    let render = |sql: &str| {
        sql.replace("{database}", database)
            .replace("{datetime}", time.ddl())
            .replace("{on_cluster}", &on_cluster)
            .replace("{engine}", &engine)
            .replace("{cluster}", cluster)
    };
    [render(CLUSTER_LOCAL_SQL), render(CLUSTER_DISTRIBUTED_SQL)]
}

/// Sorts a ClickHouse exception ("Code: 27, e.displayText() = …" on old servers, "Code: 27.
/// DB::Exception: …" on new ones) into data the server will never accept
/// ([`ErrorKind::Rejected`]) and everything else ([`ErrorKind::Sink`], retried). Unknown
/// codes are retried: a wrong guess there delays events, a wrong guess the other way would
/// dead-letter good ones.
pub(super) fn classify(response: &str) -> ErrorKind {
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
pub(super) fn check_columns(database: &str, columns: &[(String, String)]) -> Result<TimeColumn> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ddl_with_keeper_is_on_cluster_and_replicated() {
        let [local, distributed] = cluster_tables(
            "analytics",
            "main",
            TimeColumn::DateTime64,
            ClusterDdl::OnCluster,
        );
        assert!(
            local.contains("`analytics`.event_log_local ON CLUSTER `main`"),
            "{local}"
        );
        assert!(
            local.contains("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/analytics/event_log_local', '{replica}')"),
            "{local}"
        );
        assert!(local.contains("DateTime64(6, 'UTC')"));
        assert!(distributed.contains("`analytics`.event_log ON CLUSTER `main`"));
        assert!(
            distributed.contains("Distributed(`main`, `analytics`, event_log_local, event_id)"),
            "{distributed}"
        );
        let [local, _] = cluster_tables(
            "analytics",
            "main",
            TimeColumn::DateTime,
            ClusterDdl::PerNode,
        );
        assert!(
            !local.contains("ON CLUSTER `main`") && local.contains("ENGINE = ReplacingMergeTree()")
        );
    }

    #[test]
    fn the_time_column_follows_the_server_version() {
        assert_eq!(TimeColumn::for_server((18, 16)), TimeColumn::DateTime);
        assert_eq!(TimeColumn::for_server((19, 17)), TimeColumn::DateTime);
        assert_eq!(TimeColumn::for_server((20, 1)), TimeColumn::DateTime64);
        assert_eq!(TimeColumn::for_server((24, 8)), TimeColumn::DateTime64);
    }

    #[test]
    fn an_existing_table_decides_the_time_column() {
        let columns = |time: &str| -> Vec<(String, String)> {
            [
                ("event_id", "UInt64"),
                ("event_type", "String"),
                ("event_date_time", time),
                ("environment", "String"),
                ("event_context", "String"),
            ]
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
        };
        // As system.columns names them on 24.x and on 18.16.
        let modern = check_columns("db", &columns("DateTime64(6, 'UTC')")).unwrap();
        assert_eq!(modern, TimeColumn::DateTime64);
        let old = check_columns("db", &columns("DateTime('UTC')")).unwrap();
        assert_eq!(old, TimeColumn::DateTime);
        let err = check_columns("db", &columns("DateTime64(3)")).unwrap_err();
        assert!(
            err.to_string().contains("event_date_time is DateTime64(3)"),
            "{err}"
        );
    }

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
