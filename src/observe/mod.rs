//! What operators see of a running relay: Prometheus metrics, health, and the sampler that
//! keeps the backlog gauges and readiness current. Nothing here is on the data path's
//! critical section: stages record into [`Observer`] with atomic operations, and the HTTP
//! endpoints only read what was recorded or sampled.

pub mod health;
pub mod http;
pub mod metrics;
pub mod sample;

pub use health::Health;
pub use metrics::Metrics;

/// Metrics and health of one relay, shared by its stages, its sampler and its HTTP server.
#[derive(Default)]
pub struct Observer {
    pub metrics: Metrics,
    pub health: Health,
}
