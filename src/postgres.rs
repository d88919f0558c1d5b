//! PostgreSQL connections: the pool the claims use, single connections for one-shot
//! commands, and the session settings every relay session carries.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::config::PostgresConfig;
use crate::error::{Error, ErrorKind, Result};

/// Connection settings for relay sessions: `idle_in_transaction_session_timeout` is a
/// backstop so claimed rows are released even if the relay hangs mid-batch, and TCP
/// keepalives notice a vanished server long before the kernel default of two hours.
/// `application_name` is `outbox-relay/<relay_id>`: it tells which relay a session belongs
/// to, so registrations of relays without sessions can be forgotten.
pub fn session_config(
    pg: &PostgresConfig,
    idle_in_tx: Duration,
    relay_id: &str,
) -> tokio_postgres::Config {
    let mut config = pg.config.clone();
    let options = format!(
        "{} -c idle_in_transaction_session_timeout={} -c application_name=outbox-relay/{relay_id}",
        config.get_options().unwrap_or(""),
        idle_in_tx.as_millis()
    );
    config
        .options(options.trim())
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10));
    config
}

/// A pool of `size` connections. Recycling is `Fast`: a claim's transaction always ends in
/// commit or rollback, and `Clean` would run `DISCARD ALL`, losing prepared statements.
pub fn pool(
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    size: usize,
) -> Result<Pool> {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager).max_size(size).build().map_err(|e| {
        Error::with_source(ErrorKind::Config, "could not build the connection pool", e)
    })
}

/// One connection, its driver spawned: for one-shot commands that need no notifications.
pub async fn connect(pg: &PostgresConfig) -> Result<tokio_postgres::Client> {
    let mut config = pg.config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    let (client, connection) = config
        .connect(crate::tls::postgres(pg)?)
        .await
        .map_err(|e| {
            Error::postgres(
                format!("cannot connect to PostgreSQL at {}", pg.redacted_url),
                e,
            )
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

/// The schema `event_log` lives in: the first of the session's search_path.
pub async fn current_schema(client: &tokio_postgres::Client) -> Result<String> {
    let row = client
        .query_one("SELECT current_schema()", &[])
        .await
        .map_err(|e| Error::postgres("could not read current_schema()", e))?;
    row.get::<_, Option<String>>(0).ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            "the search_path names no existing schema for event_log",
        )
    })
}

/// Quotes an identifier for PostgreSQL (doubling embedded quotes).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
