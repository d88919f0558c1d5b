//! Validated configuration. [`validate`] is pure: it turns the raw [`Cli`] into a [`Config`]
//! or one error naming the flag and environment variable at fault, before any I/O.

use std::time::Duration;

use crate::cli::{self, Cli};

mod text;

use text::take_param;
pub use text::{is_identifier, redact_url};

/// Everything a subcommand needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub telemetry: TelemetryConfig,
    pub command: Command,
}

/// A validated subcommand.
#[derive(Debug, Clone)]
pub enum Command {
    Migrate {
        postgres: PostgresConfig,
        sinks: SinksConfig,
        mode: crate::migrate::Mode,
    },
    Run {
        postgres: PostgresConfig,
        sinks: SinksConfig,
        relay: RelayConfig,
        /// The HTTP listener for metrics and health; off when `None`.
        metrics_addr: Option<std::net::SocketAddr>,
    },
    CreateUser {
        postgres: PostgresConfig,
        environment: String,
        email: String,
        name: String,
    },
    Emit {
        postgres: PostgresConfig,
        event: crate::NewEvent,
    },
    Status {
        postgres: PostgresConfig,
        status: crate::status::StatusConfig,
    },
    DeadLetterList {
        postgres: PostgresConfig,
        json: bool,
    },
    DeadLetterReplay {
        postgres: PostgresConfig,
        ids: Vec<i64>,
        all: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Text or JSON log lines.
    pub log_format: LogFormat,
    /// Where errors (and sampled transactions) go; none when unset.
    pub sentry_dsn: Option<sentry::types::Dsn>,
    /// Sentry's environment tag.
    pub sentry_environment: String,
    /// Share of batches sent as Sentry transactions, 0.0–1.0.
    pub sentry_traces_sample_rate: f32,
}

/// Where the outbox lives.
#[derive(Clone)]
pub struct PostgresConfig {
    /// Parsed connection settings (may hold a password: never log this struct's fields).
    pub config: tokio_postgres::Config,
    /// The URL with its password replaced, for logs and errors.
    pub redacted_url: String,
    /// `sslrootcert` from the URL: extra roots to verify the server's certificate with.
    pub ssl_root_cert: Option<std::path::PathBuf>,
    /// The outbox table's name and columns (the contract's `event_log` by default).
    pub outbox: crate::outbox::Outbox,
}

impl PostgresConfig {
    /// Parses a libpq URL or key=value string. `sslrootcert`, which tokio-postgres does not
    /// know, is taken out and kept for the TLS setup.
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        const SETTING: &str = "DATABASE_URL (--database-url)";
        let redacted_url = redact_url(url);
        if url.trim().is_empty() {
            return Err(invalid(SETTING, "must not be empty"));
        }
        let (url_without, ssl_root_cert) = take_param(url, "sslrootcert");
        // tokio-postgres' own error text never echoes the URL, so the password cannot leak here.
        let config: tokio_postgres::Config = url_without
            .parse()
            .map_err(|e| invalid(SETTING, format!("cannot parse '{redacted_url}': {e}")))?;
        if config.get_hosts().is_empty() {
            return Err(invalid(SETTING, format!("'{redacted_url}' names no host")));
        }
        Ok(PostgresConfig {
            config,
            redacted_url,
            ssl_root_cert: ssl_root_cert.map(Into::into),
            outbox: crate::outbox::Outbox::default(),
        })
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.redacted_url)
            .finish()
    }
}

/// Where events go.
#[derive(Clone)]
pub struct ClickHouseConfig {
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// A cluster to create the tables on and insert through (a `Distributed` table).
    pub cluster: Option<ClusterConfig>,
}

/// A ClickHouse cluster, as named in the servers' `remote_servers`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The cluster's name (`CLICKHOUSE_CLUSTER`).
    pub name: String,
    /// HTTP URLs of every node (`CLICKHOUSE_CLUSTER_NODES`): `migrate` then creates the
    /// tables on each itself, which needs no Keeper. Empty: one `ON CLUSTER` statement.
    pub nodes: Vec<String>,
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &redact_url(&self.url))
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// How the relay claims and delivers.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Most events per claim.
    pub batch_size: usize,
    /// Most claims one delivery combines into one sink insert while they come back full.
    pub claims_per_insert: usize,
    /// A delivery claims no more once its events hold this many bytes.
    pub max_insert_bytes: usize,
    /// How often backlog, lag, dead letters and readiness are sampled.
    pub sample_interval: Duration,
    /// Fallback wake-up when no notification arrives.
    pub poll_interval: Duration,
    /// Most batches in flight (and pooled connections).
    pub max_in_flight: usize,
    /// Bound on one sink insert, and so on how long a claim transaction stays open.
    pub insert_timeout: Duration,
    /// Bound on finishing in-flight batches after a shutdown request.
    pub shutdown_grace: Duration,
    /// Cap of the retry backoff after failed batches.
    pub max_backoff: Duration,
    /// Events larger than this (context + type + environment bytes) are dead-lettered
    /// instead of sent.
    pub max_event_bytes: usize,
    /// While events keep arriving, claim at most this often (unless batches come back
    /// full), so they reach the sink in fewer, larger inserts.
    pub coalesce: Duration,
}

impl RelayConfig {
    /// The server-side backstop for claim transactions: if the relay vanishes mid-batch
    /// without its TCP connection closing, PostgreSQL ends the session after this long
    /// idle in a transaction, releasing the claimed rows.
    pub fn idle_in_transaction_timeout(&self) -> Duration {
        self.insert_timeout + Duration::from_secs(10)
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 1000,
            claims_per_insert: 10,
            max_insert_bytes: 16 * 1024 * 1024,
            sample_interval: Duration::from_secs(5),
            poll_interval: Duration::from_secs(5),
            max_in_flight: 2,
            insert_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            max_backoff: Duration::from_secs(5),
            max_event_bytes: 8 * 1024 * 1024,
            coalesce: Duration::from_millis(100),
        }
    }
}

/// A configuration error: which setting, and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid {setting}: {reason}")]
pub struct ConfigError {
    /// The flag and environment variable, e.g. `EVENT_BATCH_SIZE (--batch-size)`.
    pub setting: &'static str,
    pub reason: String,
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}

/// Turns raw command-line input into a [`Config`]. Pure: no I/O.
pub fn validate(cli: Cli) -> Result<Config, ConfigError> {
    let telemetry = TelemetryConfig {
        log_format: match cli.telemetry.log_format.to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "LOG_FORMAT (--log-format)",
                    format!("'{other}' is not one of: text, json"),
                ))
            }
        },
        sentry_dsn: match cli.telemetry.sentry_dsn.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(dsn) => Some(dsn.parse().map_err(|e| {
                invalid(
                    "SENTRY_DSN (--sentry-dsn)",
                    format!("not a Sentry DSN ({e})"),
                )
            })?),
        },
        sentry_environment: cli.telemetry.sentry_environment.trim().to_owned(),
        sentry_traces_sample_rate: match cli.telemetry.sentry_traces_sample_rate.trim().parse() {
            Ok(rate) if (0.0..=1.0).contains(&rate) => rate,
            _ => {
                return Err(invalid(
                    "SENTRY_TRACES_SAMPLE_RATE (--sentry-traces-sample-rate)",
                    format!(
                        "'{}' is not a number from 0 to 1",
                        cli.telemetry.sentry_traces_sample_rate
                    ),
                ))
            }
        },
    };
    let command = match cli.command {
        cli::Command::Migrate {
            postgres,
            clickhouse,
            sinks,
            demo,
            adopt,
        } => {
            use crate::migrate::Mode;
            let postgres = postgres_config(&postgres)?;
            let mode = match (demo, adopt) {
                (true, _) => Mode::Demo,
                (false, true) => Mode::Adopt,
                (false, false) => Mode::Install,
            };
            Command::Migrate {
                postgres,
                sinks: sinks_config(clickhouse, sinks)?,
                mode,
            }
        }
        cli::Command::Run {
            postgres,
            clickhouse,
            sinks,
            relay,
        } => Command::Run {
            postgres: postgres_config(&postgres)?,
            sinks: sinks_config(clickhouse, sinks)?,
            metrics_addr: match relay.metrics_addr.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(addr) => Some(addr.parse().map_err(|_| {
                    invalid(
                        "METRICS_ADDR (--metrics-addr)",
                        format!("'{addr}' is not a HOST:PORT address like 127.0.0.1:9187"),
                    )
                })?),
            },
            relay: relay_config(&relay)?,
        },
        cli::Command::CreateUser {
            postgres,
            event,
            email,
            name,
        } => {
            if !email.contains('@') {
                return Err(invalid(
                    "--email",
                    format!("'{email}' is not an email address"),
                ));
            }
            if name.trim().is_empty() {
                return Err(invalid("--name", "must not be empty"));
            }
            Command::CreateUser {
                postgres: postgres_config(&postgres)?,
                environment: environment(&event)?,
                email,
                name,
            }
        }
        cli::Command::Status { postgres, status } => Command::Status {
            postgres: postgres_config(&postgres)?,
            status: crate::status::StatusConfig {
                json: status.json,
                watch: status.watch,
                interval: duration("--interval", &status.interval)?,
                max_lag: status
                    .max_lag
                    .as_deref()
                    .map(|lag| duration("--max-lag", lag))
                    .transpose()?,
            },
        },
        cli::Command::DeadLetter { command } => match command {
            cli::DeadLetterCommand::List { postgres, json } => Command::DeadLetterList {
                postgres: postgres_config(&postgres)?,
                json,
            },
            cli::DeadLetterCommand::Replay { postgres, ids, all } => Command::DeadLetterReplay {
                postgres: postgres_config(&postgres)?,
                ids,
                all,
            },
        },
        cli::Command::Emit {
            postgres,
            event,
            event_type,
            context,
        } => {
            let context = serde_json::from_str(&context)
                .map_err(|e| invalid("--context", format!("not valid JSON: {e}")))?;
            Command::Emit {
                postgres: postgres_config(&postgres)?,
                event: crate::NewEvent {
                    event_type,
                    environment: environment(&event)?,
                    context,
                },
            }
        }
    };
    Ok(Config { telemetry, command })
}

fn environment(args: &cli::EventArgs) -> Result<String, ConfigError> {
    if args.environment.trim().is_empty() {
        return Err(invalid("ENVIRONMENT (--environment)", "must not be empty"));
    }
    Ok(args.environment.clone())
}

mod relay;
mod servers;
#[cfg(test)]
mod tests;

use relay::{duration, relay_config};
pub use servers::SinksConfig;
use servers::{postgres_config, sinks_config};
