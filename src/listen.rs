//! Stage 1, listen: the wake-up service.
//!
//! A dedicated PostgreSQL connection (never pooled: deadpool's recycling may `UNLISTEN *`)
//! LISTENs on the outbox's channel and turns each notification into a wake-up. The
//! connection is driven with `poll_message`, because spawning it as a plain future drops
//! notifications. It reconnects with backoff, and after every (re)connect it wakes the
//! relay at once: notifications sent while it was away are gone, so NOTIFY is only a hint
//! and the claim query is the truth.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::observe::Observer;

/// Owns the LISTEN connection; [`Listener::run`] until shutdown.
pub struct Listener {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    wake: Arc<Notify>,
    observer: Arc<Observer>,
    outbox: crate::outbox::Outbox,
    forget_dead_relays: String,
    max_backoff: Duration,
    shutdown: CancellationToken,
}

impl Listener {
    pub fn new(
        config: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        wake: Arc<Notify>,
        max_backoff: Duration,
        observer: Arc<Observer>,
        outbox: crate::outbox::Outbox,
        shutdown: CancellationToken,
    ) -> Self {
        Listener {
            config,
            tls,
            wake,
            observer,
            forget_dead_relays: outbox.statements().forget_dead_relays,
            outbox,
            max_backoff,
            shutdown,
        }
    }

    /// Listens, reconnecting with backoff, until shutdown.
    pub async fn run(self) {
        let mut backoff = Backoff::new(Duration::from_millis(100), self.max_backoff);
        let mut listened = false;
        loop {
            let ended = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                ended = self.session(&mut backoff, &mut listened) => ended,
            };
            self.observer.health.set_listener(false);
            let delay = backoff.next_delay();
            // Log once per outage, not once per attempt.
            if backoff.failures() == 1 {
                tracing::warn!(error = %ended, "listener lost its PostgreSQL connection; reconnecting with backoff");
            } else {
                tracing::debug!(error = %ended, ?delay, "listener reconnect failed");
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One connection's life: connect, LISTEN, forward notifications until it fails.
    async fn session(&self, backoff: &mut Backoff, listened: &mut bool) -> String {
        let (client, connection) = match self.config.connect(self.tls.clone()).await {
            Ok(pair) => pair,
            Err(e) => return format!("cannot connect: {e}"),
        };
        let mut connection = connection;
        let mut messages = Box::pin(futures::stream::poll_fn(move |cx| {
            connection.poll_message(cx)
        }));
        let listen = async {
            let schema = client.query_one("SELECT current_schema()", &[]).await?;
            let schema: Option<String> = schema.get(0);
            let channel = self.outbox.channel(schema.as_deref().unwrap_or("public"));
            client.batch_execute(&format!("LISTEN {channel}")).await?;
            client.execute(&self.forget_dead_relays, &[]).await?;
            Ok::<_, tokio_postgres::Error>(channel)
        };
        let channel = match drive(listen, &mut messages, &self.wake).await {
            Ok(channel) => channel,
            Err(e) => return format!("cannot LISTEN: {e}"),
        };
        if backoff.failures() > 0 {
            tracing::info!(%channel, "listener reconnected");
        } else {
            tracing::info!(%channel, "listening for notifications");
        }
        backoff.reset();
        self.observer.health.set_listener(true);
        if std::mem::replace(listened, true) {
            self.observer.metrics.listener_reconnected();
        }
        // Drain at once: anything committed while we were not listening sent no wake-up we saw.
        self.wake.notify_one();
        let pending = futures::future::pending::<Result<(), tokio_postgres::Error>>();
        match drive(pending, &mut messages, &self.wake).await {
            Ok(()) => unreachable!("a pending future never completes"),
            Err(e) => e.to_string(),
        }
    }
}

/// Runs `fut` while pumping the connection's messages, turning notifications into wake-ups.
/// Ends with the first error, from either.
async fn drive<T>(
    fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
    messages: &mut (impl Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Unpin),
    wake: &Notify,
) -> Result<T, String> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            result = &mut fut => return result.map_err(|e| e.to_string()),
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("connection closed".into()),
            },
        }
    }
}
