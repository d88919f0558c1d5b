//! The flag groups the subcommands flatten: each flag with its environment variable, as
//! raw strings; `config::validate` turns them into typed settings.

use clap::Args;

#[derive(Debug, Args)]
pub struct PostgresArgs {
    /// PostgreSQL connection URL (libpq form). The outbox lives in the first schema of its
    /// search_path, e.g. `?options=-csearch_path%3Dapp`.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "DATABASE_URL"
    )]
    pub database_url: String,
    /// The outbox table, in the first schema of the search_path. Another name adopts an
    /// existing table (see `migrate --adopt`).
    #[arg(
        long,
        env = "OUTBOX_TABLE",
        default_value = "event_log",
        value_name = "NAME"
    )]
    pub outbox_table: String,
    /// The outbox's id column: unique, increasing with insertion (an identity or serial).
    #[arg(
        long,
        env = "OUTBOX_ID_COLUMN",
        default_value = "id",
        value_name = "NAME"
    )]
    pub outbox_id_column: String,
    /// The outbox's event type column (text or varchar).
    #[arg(
        long,
        env = "OUTBOX_TYPE_COLUMN",
        default_value = "type",
        value_name = "NAME"
    )]
    pub outbox_type_column: String,
    /// The outbox's creation time column (timestamptz; a timestamp is read in the session's
    /// TimeZone).
    #[arg(
        long,
        env = "OUTBOX_CREATED_AT_COLUMN",
        default_value = "created_at",
        value_name = "NAME"
    )]
    pub outbox_created_at_column: String,
    /// The outbox's environment column (text or varchar).
    #[arg(
        long,
        env = "OUTBOX_ENVIRONMENT_COLUMN",
        default_value = "environment",
        value_name = "NAME"
    )]
    pub outbox_environment_column: String,
    /// The outbox's context column (jsonb, json or text holding JSON).
    #[arg(
        long,
        env = "OUTBOX_CONTEXT_COLUMN",
        default_value = "context",
        value_name = "NAME"
    )]
    pub outbox_context_column: String,
}

#[derive(Debug, Args)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP endpoint, e.g. `http://127.0.0.1:8123` (required when SINKS lists
    /// clickhouse, as it does by default).
    #[arg(
        long,
        env = "CLICKHOUSE_URL",
        hide_env_values = true,
        value_name = "CLICKHOUSE_URL"
    )]
    pub clickhouse_url: Option<String>,
    /// ClickHouse database holding the `event_log` table.
    #[arg(
        long,
        env = "CLICKHOUSE_DATABASE",
        default_value = "default",
        value_name = "NAME"
    )]
    pub clickhouse_database: String,
    /// ClickHouse user (server default when unset).
    #[arg(long, env = "CLICKHOUSE_USER", value_name = "USER")]
    pub clickhouse_user: Option<String>,
    /// ClickHouse password.
    #[arg(
        long,
        env = "CLICKHOUSE_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub clickhouse_password: Option<String>,
    /// A ClickHouse cluster (a name in the servers' `remote_servers`): `migrate` creates a
    /// local table per shard and a `Distributed` table `event_log` over them, sharded by
    /// event_id, and the relay inserts through it.
    #[arg(long, env = "CLICKHOUSE_CLUSTER", value_name = "NAME")]
    pub clickhouse_cluster: Option<String>,
    /// For a cluster without Keeper: HTTP URLs of every node, comma-separated; `migrate`
    /// creates the tables on each. Unset: one `ON CLUSTER` statement (needs Keeper).
    #[arg(
        long,
        env = "CLICKHOUSE_CLUSTER_NODES",
        hide_env_values = true,
        value_name = "URLS"
    )]
    pub clickhouse_cluster_nodes: Option<String>,
}

#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Where events go, comma-separated: `clickhouse`, `postgres` (the archive below), or
    /// both. With several, an event is deleted from the outbox only when every sink has it.
    #[arg(long, env = "SINKS", default_value = "clickhouse", value_name = "LIST")]
    pub sinks: String,
    /// PostgreSQL URL of the archive database (required when SINKS lists postgres).
    #[arg(
        long,
        env = "ARCHIVE_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub archive_database_url: Option<String>,
    /// The archive table, in the first schema of the archive URL's search_path.
    #[arg(
        long,
        env = "ARCHIVE_TABLE",
        default_value = "event_archive",
        value_name = "NAME"
    )]
    pub archive_table: String,
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Most events claimed (and inserted) per batch.
    #[arg(
        long,
        env = "EVENT_BATCH_SIZE",
        default_value = "1000",
        value_name = "N"
    )]
    pub batch_size: String,
    /// While claims come back full (a backlog), one delivery keeps claiming: up to this many
    /// claims of EVENT_BATCH_SIZE rows in one transaction and one sink insert. ClickHouse
    /// pays per insert, not per row. 1 = one claim per insert.
    #[arg(
        long,
        env = "CLAIMS_PER_INSERT",
        default_value = "10",
        value_name = "N"
    )]
    pub claims_per_insert: String,
    /// Address of the HTTP listener for `/metrics`, `/healthz` and `/readyz`, e.g.
    /// `127.0.0.1:9187` (`0.0.0.0:9187` in a container). Off when unset.
    #[arg(long, env = "METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// How often the backlog, lag and dead-letter gauges and readiness are sampled (one
    /// cheap query and a sink ping each time).
    #[arg(
        long,
        env = "SAMPLE_INTERVAL",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub sample_interval: String,
    /// A delivery stops claiming more once its events hold this many bytes (of context, type
    /// and environment), which bounds memory when events are large. The first claim is
    /// always taken whole.
    #[arg(
        long,
        env = "MAX_INSERT_BYTES",
        default_value = "16777216",
        value_name = "BYTES"
    )]
    pub max_insert_bytes: String,
    /// Fallback poll interval: the relay looks for events this often even without a
    /// notification (humantime, e.g. `5s`, `500ms`).
    #[arg(
        long,
        env = "POLL_INTERVAL",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub poll_interval: String,
    /// Most batches in flight at once (each holds one PostgreSQL connection).
    #[arg(long, env = "MAX_IN_FLIGHT", default_value = "2", value_name = "N")]
    pub max_in_flight: String,
    /// Longest a sink insert may take; past it the batch is rolled back and retried. Also
    /// bounds how long a claim transaction stays open.
    #[arg(
        long,
        env = "INSERT_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub insert_timeout: String,
    /// On SIGTERM/Ctrl-C, how long in-flight batches may take to finish before they are
    /// rolled back (their events stay for the next run).
    #[arg(
        long,
        env = "SHUTDOWN_GRACE",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub shutdown_grace: String,
    /// Longest wait between retries after a failed batch (backoff starts at 100ms, doubles,
    /// with jitter).
    #[arg(
        long,
        env = "MAX_BACKOFF",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub max_backoff: String,
    /// Largest event sent (context + type + environment, in bytes); larger ones go to the
    /// dead-letter table with the reason.
    #[arg(
        long,
        env = "MAX_EVENT_BYTES",
        default_value = "8388608",
        value_name = "BYTES"
    )]
    pub max_event_bytes: String,
    /// While events keep arriving, claim at most this often (a full batch is claimed at
    /// once): fewer, larger ClickHouse inserts under load. A lone event on an idle relay is
    /// claimed at once, woken by its notification.
    #[arg(
        long,
        env = "COALESCE_INTERVAL",
        default_value = "100ms",
        value_name = "DURATION"
    )]
    pub coalesce_interval: String,
}

#[derive(Debug, Args)]
pub struct EventArgs {
    /// Environment written on new events, e.g. `Local`, `Production`.
    #[arg(
        long,
        env = "ENVIRONMENT",
        default_value = "Local",
        value_name = "NAME"
    )]
    pub environment: String,
}

#[derive(Debug, Args)]
pub struct TelemetryArgs {
    /// Log format: `text` (human-readable) or `json` (one object per line). Filter with
    /// RUST_LOG (default `info`).
    #[arg(
        long,
        env = "LOG_FORMAT",
        default_value = "text",
        global = true,
        value_name = "FORMAT"
    )]
    pub log_format: String,
    /// Sentry DSN; errors are reported there when set.
    #[arg(
        long,
        env = "SENTRY_DSN",
        hide_env_values = true,
        global = true,
        value_name = "DSN"
    )]
    pub sentry_dsn: Option<String>,
    /// Sentry environment tag on every error and transaction, e.g. `production`, `staging`.
    #[arg(
        long,
        env = "SENTRY_ENVIRONMENT",
        default_value = "production",
        global = true,
        value_name = "NAME"
    )]
    pub sentry_environment: String,
    /// Share of batches (0.0–1.0) sent to Sentry as performance transactions, with claim,
    /// deliver and acknowledge as spans. 0 sends none.
    #[arg(
        long,
        env = "SENTRY_TRACES_SAMPLE_RATE",
        default_value = "0",
        global = true,
        value_name = "RATE"
    )]
    pub sentry_traces_sample_rate: String,
}
