//! The relay beside its baselines, on real servers started by `scripts/services`
//! (PostgreSQL with fsync on, as in production). `cargo bench --bench relay` prints a
//! Markdown table; `-- --events N` sets the backlog size (default 200,000).
//!
//! 1. raw drain: one client empties `event_log` by itself (`SELECT … FOR UPDATE SKIP LOCKED`
//!    + `DELETE … = ANY`, 5000 per batch, rows fetched, sent nowhere): the physical limit;
//! 2. backlog drain: the same backlog through the relay binary with default settings, and
//!    the relay's peak RSS (1 and 2 alternate three times; the median pair's ratio counts);
//! 3. latency under load: producers commit 2,000 events/s (transactions of 10) for 10 s;
//!    probes measure commit → deleted; ClickHouse inserts per second in that window;
//! 4. idle latency: single events committed one at a time;
//! 5. producer cost of the trigger: pgbench, 8 clients, single-event transactions, with our
//!    trigger, with none, and with a plain always-NOTIFY trigger (the textbook design);
//! 6. the seed design: a poller taking 1000 rows `ORDER BY created_at … FOR UPDATE SKIP
//!    LOCKED` into ClickHouse, back to back (drain) and on a 1 s beat (latency).
//!
//! Files: `bench.rs` (servers, backlog, relay process), `measures.rs` (the measurements),
//! `full.rs` (the full run), `modes.rs` (`--long-drain`, `--drain-only`, `--sustained`,
//! `--scaling`), `outage.rs` (`--outage`).

mod bench;
mod full;
mod measures;
mod modes;
mod outage;

use outbox_relay::config::{ClickHouseConfig, PostgresConfig};
use outbox_relay::{ClickHouseSink, Sink};

use crate::bench::{connect, services, Bench, SCHEMA};

#[tokio::main]
async fn main() {
    let events: i64 = std::env::args()
        .skip_while(|a| a != "--events")
        .nth(1)
        .map(|n| n.parse().expect("--events N"))
        .unwrap_or(200_000);
    services(&["destroy"]);
    let env = services(&["start", "--fsync", "on"]);
    let url_of = |key: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap()
            .to_owned()
    };
    let (pg_url, ch_url) = (url_of("DATABASE_URL="), url_of("CLICKHOUSE_URL="));
    let database_url = format!("{pg_url}?options=-csearch_path%3D{SCHEMA}");
    connect(&pg_url)
        .await
        .batch_execute(&format!("CREATE SCHEMA {SCHEMA}"))
        .await
        .unwrap();
    let pg = PostgresConfig::parse(&database_url).unwrap();
    let ch = ClickHouseConfig {
        url: ch_url,
        database: SCHEMA.into(),
        user: None,
        password: None,
        cluster: None,
    };
    outbox_relay::migrate::migrate_postgres(&pg, false)
        .await
        .unwrap();
    let sink = ClickHouseSink::new(&ch).unwrap();
    sink.init().await.unwrap();
    let version = sink.server_version().await.unwrap();
    let mut b = Bench {
        client: connect(&database_url).await,
        database_url: database_url.clone(),
        ch,
    };
    let arg = |name: &str| std::env::args().any(|a| a == name);
    if arg("--long-drain") {
        modes::long_drain(&b, events).await;
    } else if arg("--sustained") {
        modes::sustained(&b).await;
    } else if arg("--scaling") {
        modes::scaling(&mut b, events).await;
    } else if arg("--producer-cost") {
        for row in full::producer_cost(&b).await {
            println!("{row}");
        }
    } else if arg("--outage") {
        outage::outage(&b).await;
    } else if arg("--drain-only") {
        modes::drain_only(&mut b, events).await;
    } else {
        full::run(&mut b, &sink, version, &database_url, events).await;
    }
    services(&["stop"]);
}
