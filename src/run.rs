//! The `run` command's wiring: build the configured sinks (one, or a fan-out of them),
//! serve the metrics endpoints, and run the relay until shutdown. Also `migrate`'s sink side.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::config::{PostgresConfig, RelayConfig, SinksConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::sink::{ClickHouseSink, FanOut, PostgresSink, Sink};
use crate::Relay;

/// Runs a relay to the configured sinks until `shutdown` and its drain are done.
pub async fn run(
    postgres: PostgresConfig,
    sinks: &SinksConfig,
    relay: RelayConfig,
    metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
) -> Result<()> {
    let connections = relay.max_in_flight;
    match (&sinks.clickhouse, &sinks.archive) {
        (Some(ch), None) => {
            let sink = ClickHouseSink::new(ch)?;
            serve(postgres, sink, relay, metrics_addr, shutdown).await
        }
        (None, Some(archive)) => {
            let sink = PostgresSink::new(archive, connections)?;
            serve(postgres, sink, relay, metrics_addr, shutdown).await
        }
        (Some(ch), Some(archive)) => {
            let sink = FanOut::new(
                ClickHouseSink::new(ch)?,
                PostgresSink::new(archive, connections)?,
            );
            serve(postgres, sink, relay, metrics_addr, shutdown).await
        }
        (None, None) => Err(no_sink()),
    }
}

/// Creates (or checks) every configured sink's table.
pub async fn init_sinks(sinks: &SinksConfig) -> Result<()> {
    if sinks.clickhouse.is_none() && sinks.archive.is_none() {
        return Err(no_sink());
    }
    if let Some(ch) = &sinks.clickhouse {
        ClickHouseSink::new(ch)?.init().await?;
        tracing::info!(database = %ch.database, "ClickHouse table event_log ready");
    }
    if let Some(archive) = &sinks.archive {
        PostgresSink::new(archive, 1)?.init().await?;
        tracing::info!(table = %archive.table, "PostgreSQL archive table ready");
    }
    Ok(())
}

fn no_sink() -> Error {
    Error::new(ErrorKind::Config, "no sink configured (SINKS)")
}

async fn serve<S: Sink>(
    postgres: PostgresConfig,
    sink: S,
    config: RelayConfig,
    metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
) -> Result<()> {
    let relay = Relay::new(postgres, sink, config);
    // The endpoints outlive the relay's drain, so readiness can say "shutting down".
    let http_stop = CancellationToken::new();
    let http = match metrics_addr {
        Some(addr) => {
            let listener = crate::observe::http::bind(addr).await?;
            Some(tokio::spawn(crate::observe::http::serve(
                listener,
                relay.observer(),
                http_stop.clone(),
            )))
        }
        None => None,
    };
    let result = relay.run(shutdown).await;
    http_stop.cancel();
    if let Some(http) = http {
        let _ = http.await;
    }
    result
}
