//! The Prometheus metrics one relay exports, and the few calls that record them.
//!
//! Names carry the `outbox_` prefix; counters gain `_total` in the exposition. Everything
//! here is in-memory and lock-free to record: the data path never waits on metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::error::{Error, ErrorKind};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkErrorLabels {
    sink: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// How a batch ended, for `outbox_batches_total{outcome}`.
#[derive(Debug, Clone, Copy)]
pub enum BatchOutcome {
    /// Committed; the sink took every event.
    Delivered,
    /// Committed; the sink refused some events, now in the dead-letter table.
    DeadLettered,
    /// Rolled back after a failure; its events are claimed again later.
    Retried,
}

/// One relay's metrics.
pub struct Metrics {
    registry: Registry,
    delivered: Family<SinkLabel, Counter>,
    batches: Family<OutcomeLabel, Counter>,
    batch_size: Histogram,
    delivery_seconds: Family<SinkLabel, Histogram>,
    claim_to_commit_seconds: Histogram,
    backlog: Gauge,
    lag_seconds: Gauge<f64, AtomicU64>,
    dead_letters: Gauge,
    sink_errors: Family<SinkErrorLabels, Counter>,
    postgres_errors: Family<KindLabel, Counter>,
    listener_reconnects: Counter,
    in_flight: Gauge,
}

fn duration_histogram() -> Histogram {
    // 1 ms … ~33 s: an idle insert on ClickHouse 18.16 is ~15 ms, a timeout is 10 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("outbox");
        let m = Metrics {
            delivered: Family::default(),
            batches: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            delivery_seconds: Family::new_with_constructor(duration_histogram),
            claim_to_commit_seconds: duration_histogram(),
            backlog: Gauge::default(),
            lag_seconds: Gauge::default(),
            dead_letters: Gauge::default(),
            sink_errors: Family::default(),
            postgres_errors: Family::default(),
            listener_reconnects: Counter::default(),
            in_flight: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_delivered",
            "Events the sink stored and the relay deleted from event_log",
            m.delivered.clone(),
        );
        registry.register(
            "batches",
            "Batches by outcome: delivered, dead_lettered (committed, some events refused), retried (rolled back)",
            m.batches.clone(),
        );
        registry.register(
            "batch_size_events",
            "Events per delivered batch",
            m.batch_size.clone(),
        );
        registry.register(
            "delivery_duration_seconds",
            "Time the sink took to store a batch",
            m.delivery_seconds.clone(),
        );
        registry.register(
            "claim_to_commit_duration_seconds",
            "Time from a batch's claim to the commit that deleted it (row locks held)",
            m.claim_to_commit_seconds.clone(),
        );
        registry.register(
            "backlog_events",
            "Events pending in event_log (sampled; exact up to 100000, an id-span estimate above)",
            m.backlog.clone(),
        );
        registry.register(
            "lag_seconds",
            "Age of the oldest pending event in event_log (sampled); 0 when empty",
            m.lag_seconds.clone(),
        );
        registry.register(
            "dead_letter_events",
            "Rows in event_log_dead_letter not yet replayed (sampled)",
            m.dead_letters.clone(),
        );
        registry.register(
            "sink_errors",
            "Failed sink inserts by kind: unavailable, timeout, rejected",
            m.sink_errors.clone(),
        );
        registry.register(
            "postgres_errors",
            "PostgreSQL errors by kind: connection, statement",
            m.postgres_errors.clone(),
        );
        registry.register(
            "listener_reconnects",
            "Times the LISTEN connection was re-established after losing it",
            m.listener_reconnects.clone(),
        );
        registry.register(
            "in_flight_batches",
            "Batches claimed and not yet committed or rolled back",
            m.in_flight.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "outbox-relay's version; always 1", build);
        Metrics { registry, ..m }
    }

    /// Creates every series of `sink` at zero, so dashboards and alerts see 0 from the
    /// start rather than an absent series (which `rate()` and comparisons skip).
    pub fn init_sink(&self, sink: &str) {
        let label = SinkLabel { sink: sink.into() };
        // get_or_create returns a read guard; dropping it at once is all we want.
        let _ = self.delivered.get_or_create(&label);
        let _ = self.delivery_seconds.get_or_create(&label);
        for outcome in ["delivered", "dead_lettered", "retried"] {
            let _ = self.batches.get_or_create(&OutcomeLabel { outcome });
        }
        for kind in ["unavailable", "timeout", "rejected"] {
            let _ = self.sink_errors.get_or_create(&SinkErrorLabels {
                sink: sink.into(),
                kind,
            });
        }
        for kind in ["connection", "statement"] {
            let _ = self.postgres_errors.get_or_create(&KindLabel { kind });
        }
    }

    /// The exposition, in the OpenMetrics text format Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// A committed batch: `events` claimed, `refused` of them dead-lettered.
    pub fn batch_committed(
        &self,
        sink: &str,
        events: usize,
        refused: usize,
        delivery: std::time::Duration,
        claim_to_commit: std::time::Duration,
    ) {
        let sink = SinkLabel { sink: sink.into() };
        self.delivered
            .get_or_create(&sink)
            .inc_by((events - refused) as u64);
        let outcome = if refused == 0 {
            BatchOutcome::Delivered
        } else {
            BatchOutcome::DeadLettered
        };
        self.batch(outcome);
        self.batch_size.observe(events as f64);
        self.delivery_seconds
            .get_or_create(&sink)
            .observe(delivery.as_secs_f64());
        self.claim_to_commit_seconds
            .observe(claim_to_commit.as_secs_f64());
    }

    /// A batch that failed and was rolled back, and the error that ended it.
    pub fn batch_failed(&self, sink: &str, error: &Error) {
        self.batch(BatchOutcome::Retried);
        self.error(sink, error);
    }

    fn batch(&self, outcome: BatchOutcome) {
        let outcome = match outcome {
            BatchOutcome::Delivered => "delivered",
            BatchOutcome::DeadLettered => "dead_lettered",
            BatchOutcome::Retried => "retried",
        };
        self.batches.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Counts an error under the system it came from.
    pub fn error(&self, sink: &str, error: &Error) {
        let sink_kind = match error.kind() {
            ErrorKind::Sink => Some("unavailable"),
            ErrorKind::Timeout => Some("timeout"),
            ErrorKind::Rejected => Some("rejected"),
            _ => None,
        };
        match sink_kind {
            Some(kind) => self
                .sink_errors
                .get_or_create(&SinkErrorLabels {
                    sink: sink.into(),
                    kind,
                })
                .inc(),
            None => self
                .postgres_errors
                .get_or_create(&KindLabel {
                    kind: error.postgres_kind(),
                })
                .inc(),
        };
    }

    /// A PostgreSQL error outside a batch (the listener, the sampler).
    pub fn postgres_error(&self, error: &Error) {
        self.postgres_errors
            .get_or_create(&KindLabel {
                kind: error.postgres_kind(),
            })
            .inc();
    }

    pub fn listener_reconnected(&self) {
        self.listener_reconnects.inc();
    }

    /// Marks a batch in flight until the returned guard drops.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// The sampled view of the outbox.
    pub fn sampled(&self, backlog: i64, lag_seconds: f64, dead_letters: i64) {
        self.backlog.set(backlog);
        self.lag_seconds.set(lag_seconds);
        self.dead_letters.set(dead_letters);
    }
}

/// Decrements the in-flight gauge when the batch ends, however it ends (even dropped at
/// shutdown).
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
