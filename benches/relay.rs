//! The relay beside its physical limit, on real servers started by `scripts/services`
//! (PostgreSQL with fsync on, as in production).
//!
//! `cargo bench --bench relay` (optionally `-- --events N`) prints a Markdown table:
//! 1. raw drain: a client emptying `event_log` by itself (`SELECT … FOR UPDATE SKIP LOCKED`
//!    + `DELETE … = ANY`, 5000 per batch, rows fetched and sent nowhere);
//! 2. relay drain: the same backlog through the relay with default settings into ClickHouse;
//! 3. idle latency: single events committed one at a time, commit → deleted from PostgreSQL.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use outbox_relay::config::{ClickHouseConfig, PostgresConfig, RelayConfig};
use outbox_relay::{ClickHouseSink, Relay, Sink};
use tokio_util::sync::CancellationToken;

const SCHEMA: &str = "bench";

fn services(args: &[&str]) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/services"))
        .args(args)
        .args(["--dir", root.join(".services/bench").to_str().unwrap()])
        .output()
        .expect("scripts/services runs");
    assert!(
        out.status.success(),
        "scripts/services failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

/// `n` events with ~200-byte contexts, as one statement; then VACUUM ANALYZE so every
/// measurement starts from the same table state.
async fn load(client: &tokio_postgres::Client, n: i64) {
    client
        .execute(
            "INSERT INTO event_log (type, environment, context)
             SELECT 'user_created', 'Production', jsonb_build_object(
                 'id', g, 'email', 'user' || g || '@example.com', 'name', 'User ' || g,
                 'plan', 'pro', 'note', repeat('x', 120))
             FROM generate_series(1, $1::bigint) g",
            &[&n],
        )
        .await
        .unwrap();
    client
        .batch_execute("VACUUM ANALYZE event_log")
        .await
        .unwrap();
}

async fn pending(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM event_log", &[])
        .await
        .unwrap()
        .get(0)
}

async fn raw_drain(client: &mut tokio_postgres::Client) -> u64 {
    let claim = include_str!("../sql/postgres/claim.sql");
    let delete = include_str!("../sql/postgres/acknowledge.sql");
    let mut total = 0;
    loop {
        let tx = client.transaction().await.unwrap();
        let rows = tx.query(claim, &[&5000i64]).await.unwrap();
        if rows.is_empty() {
            return total;
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        // Fetch every column as the relay does, then send it nowhere.
        let bytes: usize = rows
            .iter()
            .map(|r| r.get::<_, &str>(4).len() + r.get::<_, &str>(1).len())
            .sum();
        std::hint::black_box(bytes);
        tx.execute(delete, &[&ids]).await.unwrap();
        tx.commit().await.unwrap();
        total += ids.len() as u64;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let events: i64 = std::env::args()
        .skip_while(|a| a != "--events")
        .nth(1)
        .map(|n| n.parse().expect("--events N"))
        .unwrap_or(100_000);
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
    };
    outbox_relay::migrate::migrate_postgres(&pg, false)
        .await
        .unwrap();
    let sink = ClickHouseSink::new(&ch).unwrap();
    sink.init().await.unwrap();
    let version = sink.server_version().await.unwrap();
    let mut client = connect(&database_url).await;

    // 1. Raw drain.
    load(&client, events).await;
    let started = Instant::now();
    let drained = raw_drain(&mut client).await;
    let raw_rate = drained as f64 / started.elapsed().as_secs_f64();

    // 2. Relay drain, default settings.
    load(&client, events).await;
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let relay = tokio::spawn(
        Relay::new(
            pg.clone(),
            ClickHouseSink::new(&ch).unwrap(),
            RelayConfig::default(),
        )
        .run(shutdown.clone()),
    );
    while pending(&client).await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let relay_rate = events as f64 / started.elapsed().as_secs_f64();

    // 3. Idle latency: one event at a time, commit → gone from PostgreSQL.
    let mut latencies = Vec::new();
    for i in 0..200 {
        let id: i64 = client
            .query_one(
                "SELECT outbox_publish('probe', jsonb_build_object('i', $1::int))",
                &[&i],
            )
            .await
            .unwrap()
            .get(0);
        let committed = Instant::now();
        while client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM event_log WHERE id = $1)",
                &[&id],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(committed.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    relay.await.unwrap().unwrap();
    latencies.sort();

    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    println!(
        "\noutbox-relay bench: {events} events, ClickHouse {}.{}, PostgreSQL fsync on",
        version.0, version.1
    );
    println!("| measure | outbox-relay | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| backlog drain, rows/s | {relay_rate:.0} | raw SKIP LOCKED + DELETE drain: {raw_rate:.0} | {:.2}× |",
        relay_rate / raw_rate
    );
    println!(
        "| idle latency commit → deleted, p50 / p99 | {} / {} | — | — |",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    services(&["stop"]);
}
