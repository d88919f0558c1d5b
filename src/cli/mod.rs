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
    /// Print one JSON object instead of a table (with `--watch`, one per line).
    #[arg(long)]
    pub json: bool,
    /// Refresh in place every interval until Ctrl-C or SIGTERM (then exit 0); with `--json`,
    /// print one object per line instead. `--max-lag` does not end a watch.
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

mod args;
pub use args::*;
