//! Readiness: is each dependency of the relay reachable right now, as last seen.
//!
//! The listener reports its LISTEN connection as it changes; the sampler reports PostgreSQL
//! and the sink once per interval. `/readyz` reads these, so a probe never costs a query.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::Serialize;

/// Health of one relay's dependencies.
#[derive(Default)]
pub struct Health {
    listener: AtomicBool,
    postgres: Mutex<Check>,
    sink: Mutex<Check>,
    stopping: AtomicBool,
}

#[derive(Debug, Clone, Default)]
enum Check {
    /// Not checked yet (the relay is starting).
    #[default]
    Unknown,
    Ok,
    Failed(String),
}

impl Check {
    fn describe(&self) -> (bool, String) {
        match self {
            Check::Unknown => (false, "not checked yet".into()),
            Check::Ok => (true, "ok".into()),
            Check::Failed(why) => (false, why.clone()),
        }
    }
}

/// The body of `/readyz`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub postgres: String,
    pub listener: String,
    pub sink: String,
}

impl Health {
    pub fn set_listener(&self, connected: bool) {
        self.listener.store(connected, Ordering::Relaxed);
    }

    pub fn set_postgres(&self, result: Result<(), String>) {
        *self.postgres.lock().unwrap_or_else(|p| p.into_inner()) = result.into();
    }

    pub fn set_sink(&self, result: Result<(), String>) {
        *self.sink.lock().unwrap_or_else(|p| p.into_inner()) = result.into();
    }

    /// A relay that is shutting down is no longer ready, whatever its dependencies say.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn readiness(&self) -> Readiness {
        let (pg_ok, postgres) = self
            .postgres
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .describe();
        let (sink_ok, sink) = self
            .sink
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .describe();
        let listening = self.listener.load(Ordering::Relaxed);
        let stopping = self.stopping.load(Ordering::Relaxed);
        Readiness {
            ready: pg_ok && sink_ok && listening && !stopping,
            postgres,
            listener: match (stopping, listening) {
                (true, _) => "shutting down".into(),
                (false, true) => "ok".into(),
                (false, false) => "not listening (connecting or reconnecting)".into(),
            },
            sink,
        }
    }
}

impl From<Result<(), String>> for Check {
    fn from(result: Result<(), String>) -> Self {
        match result {
            Ok(()) => Check::Ok,
            Err(why) => Check::Failed(why),
        }
    }
}
