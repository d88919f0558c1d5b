//! The `outbox-relay` binary: parse, validate, then run one subcommand.
//!
//! Exit codes: 0 success, 1 runtime failure (a server unreachable, a statement refused),
//! 2 invalid usage or configuration, 3 `status --max-lag`: the lag is over the limit.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use outbox_relay::cli::Cli;
use outbox_relay::config::{self, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version exit 0; usage errors exit 2, with clap's message.
        Err(e) => e.exit(),
    };
    let config = match config::validate(cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("outbox-relay: {e}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = outbox_relay::telemetry::init(&config.telemetry);
    match try_main(config.command) {
        Ok(code) => code,
        Err(e) => {
            tracing::debug!(error = ?e, "exiting with an error");
            // Reported to Sentry when SENTRY_DSN is set (a no-op otherwise); the guard
            // flushes it when main returns.
            sentry::capture_error(e.as_ref() as &(dyn std::error::Error + 'static));
            eprintln!("outbox-relay: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Exit code of `status` when the lag is over `--max-lag`.
const LAG_OVER_MAX: u8 = 3;

fn try_main(command: Command) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_command(command))
}

async fn status_command(
    postgres: &outbox_relay::config::PostgresConfig,
    config: &outbox_relay::status::StatusConfig,
) -> anyhow::Result<ExitCode> {
    use outbox_relay::status::{render, status};
    let client = outbox_relay::postgres::connect(postgres).await?;
    // `--watch` runs until Ctrl-C or SIGTERM, and then exits 0.
    let stop = CancellationToken::new();
    if config.watch {
        tokio::spawn(signal_shutdown(stop.clone()));
    }
    loop {
        let status = tokio::select! {
            _ = stop.cancelled() => return Ok(ExitCode::SUCCESS),
            status = status(&client, &postgres.outbox, config) => status?,
        };
        let text = if config.json {
            format!("{}\n", serde_json::to_string(&status)?)
        } else {
            render(&status)
        };
        if !config.watch {
            print!("{text}");
            return Ok(if status.lag_over_max {
                ExitCode::from(LAG_OVER_MAX)
            } else {
                ExitCode::SUCCESS
            });
        }
        if config.json {
            // One object per line: a stream for scripts, with no screen control in it.
            print!("{text}");
        } else {
            // Clear the screen and home the cursor: a refresh in place, like watch(1).
            print!("\x1b[2J\x1b[H{text}");
        }
        use std::io::Write;
        std::io::stdout().flush()?;
    }
}

async fn run_command(command: Command) -> anyhow::Result<ExitCode> {
    let done: anyhow::Result<()> = {
        match command {
            Command::Migrate {
                postgres,
                sinks,
                mode,
            } => {
                let schema = outbox_relay::migrate::migrate_postgres_as(&postgres, mode).await?;
                tracing::info!(%schema, table = %postgres.outbox.table, ?mode, "PostgreSQL outbox installed");
                outbox_relay::run::init_sinks(&sinks).await?;
                Ok(())
            }
            Command::Run {
                postgres,
                sinks,
                relay,
                metrics_addr,
            } => {
                tracing::info!(?postgres, ?sinks, ?relay, ?metrics_addr, "configuration");
                let shutdown = CancellationToken::new();
                tokio::spawn(signal_shutdown(shutdown.clone()));
                outbox_relay::run::run(postgres, &sinks, relay, metrics_addr, shutdown).await?;
                Ok(())
            }
            Command::Status { postgres, status } => {
                return status_command(&postgres, &status).await
            }
            Command::CreateUser {
                postgres,
                environment,
                email,
                name,
            } => {
                let mut client = outbox_relay::postgres::connect(&postgres).await?;
                let (user, event_id) =
                    outbox_relay::create_user(&mut client, &email, &name, &environment).await?;
                println!(
                    "{}",
                    serde_json::json!({"user": user, "event_id": event_id})
                );
                Ok(())
            }
            Command::DeadLetterList { postgres, json } => {
                let client = outbox_relay::postgres::connect(&postgres).await?;
                let letters = outbox_relay::dead_letter::list(&client, &postgres.outbox).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&letters)?);
                } else if letters.is_empty() {
                    println!("no dead letters");
                } else {
                    println!(
                        "{:>10}  {:<20}  {:<29}  {:>8}  error",
                        "id", "type", "failed_at", "attempts"
                    );
                    for l in &letters {
                        println!(
                            "{:>10}  {:<20}  {:<29}  {:>8}  {}",
                            l.id, l.event_type, l.failed_at, l.attempts, l.error
                        );
                    }
                }
                Ok(())
            }
            Command::DeadLetterReplay { postgres, ids, all } => {
                let mut client = outbox_relay::postgres::connect(&postgres).await?;
                let replayed =
                    outbox_relay::dead_letter::replay(&mut client, &postgres.outbox, &ids, all)
                        .await?;
                let missing: Vec<i64> = ids
                    .iter()
                    .copied()
                    .filter(|id| !replayed.contains(id))
                    .collect();
                println!("replayed {} event(s) into event_log", replayed.len());
                if !missing.is_empty() {
                    anyhow::bail!("no dead letter waiting for id(s) {missing:?}");
                }
                Ok(())
            }
            Command::Emit { postgres, event } => {
                let client = outbox_relay::postgres::connect(&postgres).await?;
                let id = outbox_relay::publish(&client, &event).await?;
                println!("{id}");
                Ok(())
            }
        }
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C (SIGINT).
async fn signal_shutdown(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the relay");
                let _ = ctrl_c.await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => tracing::info!("Ctrl-C received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    shutdown.cancel();
}
