//! The command line as clap sees it: raw strings, each flag with its environment variable.
//!
//! Nothing here is interpreted; [`crate::config::validate`] turns a [`Cli`] into a
//! [`crate::config::Config`] (or one clear error) before any I/O happens.

use clap::{Args, Parser, Subcommand};

/// Streams events from a PostgreSQL outbox table (event_log) into ClickHouse.
#[derive(Debug, Parser)]
#[command(name = "outbox-relay", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub telemetry: TelemetryArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start-up; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Install the PostgreSQL outbox (table, trigger, outbox_publish) and the ClickHouse table.
    /// Idempotent; safe to run from several places at once.
    Migrate {
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
        #[command(flatten)]
        sinks: SinkArgs,
        /// Also install the demo `users` table used by `create-user`.
        #[arg(long, conflicts_with = "adopt")]
        demo: bool,
        /// Adopt an existing outbox table (OUTBOX_TABLE, OUTBOX_*_COLUMN): install only the
        /// relay's trigger, registrations and dead-letter tables beside it (and an index on
        /// its id column if none leads with it), leaving its rows and columns alone.
        #[arg(long)]
        adopt: bool,
    },
    /// Run the relay until SIGTERM or Ctrl-C: claim events, deliver them, delete them.
    Run {
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
        #[command(flatten)]
        sinks: SinkArgs,
        #[command(flatten)]
        relay: RelayArgs,
    },
    /// Demo producer: insert a user and its `user_created` event in one transaction.
    CreateUser {
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        event: EventArgs,
        /// The new user's email (unique).
        #[arg(long)]
        email: String,
        /// The new user's name.
        #[arg(long)]
        name: String,
    },
    /// Show the outbox at a glance: backlog, lag, dead letters, delivery rate. Exit code 3
    /// when the lag is over `--max-lag`, for cron or Nagios-style checks.
    Status {
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        status: StatusArgs,
    },
    /// Inspect events the sink refused, and move them back to be delivered again.
    DeadLetter {
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
    /// Write one event into the outbox.
    Emit {
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        event: EventArgs,
        /// Event type, e.g. `user_created`.
        #[arg(long = "type", value_name = "TYPE")]
        event_type: String,
        /// Event context: a JSON document.
        #[arg(long, value_name = "JSON", default_value = "{}")]
        context: String,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Refresh in place every interval until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Time between the two samples the delivery rate is computed from (and between
    /// refreshes with `--watch`).
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    pub interval: String,
    /// Exit with code 3 when the oldest pending event is older than this (e.g. `60s`).
    #[arg(long, value_name = "DURATION")]
    pub max_lag: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List dead-lettered events not yet replayed, with the reason each was refused.
    List {
        #[command(flatten)]
        postgres: PostgresArgs,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move dead-lettered events back into event_log, keeping their ids.
    Replay {
        #[command(flatten)]
        postgres: PostgresArgs,
        /// An event id to replay (repeatable).
        #[arg(
            long = "id",
            value_name = "ID",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        ids: Vec<i64>,
        /// Replay every dead-lettered event.
        #[arg(long)]
        all: bool,
    },
}

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
