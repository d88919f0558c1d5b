//! The measurements themselves: drains, latency probes, producer throughput.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_relay::{ClickHouseSink, Event, Sink};
use tokio::sync::Mutex;

use crate::bench::{connect, peak_rss_mib, root, stop, Bench};

pub async fn raw_drain(client: &mut tokio_postgres::Client) -> u64 {
    let sql = outbox_relay::outbox::Outbox::default().statements();
    let (claim, delete) = (sql.claim.as_str(), sql.acknowledge.as_str());
    let mut total = 0;
    loop {
        let tx = client.transaction().await.unwrap();
        let rows = tx.query(claim, &[&5000i64, &i64::MIN]).await.unwrap();
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

/// The seed's Celery task: one batch of 1000 by created_at into ClickHouse, then delete.
pub async fn seed_poll_once(client: &mut tokio_postgres::Client, sink: &ClickHouseSink) -> usize {
    let tx = client.transaction().await.unwrap();
    let rows = tx
        .query(
            "SELECT id, type, created_at, environment, context::text FROM event_log
             ORDER BY created_at LIMIT 1000 FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await
        .unwrap();
    let events: Vec<Event> = rows.iter().map(Event::from_row).collect();
    if !events.is_empty() {
        sink.insert(&events).await.unwrap();
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        tx.execute("DELETE FROM event_log WHERE id = ANY($1)", &[&ids])
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    events.len()
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Commits `tx_per_s` transactions of 10 events for `duration`, over 4 connections; every
/// 10th transaction is a probe whose deletion is awaited. Returns the probes' latencies.
pub async fn load_with_probes(
    database_url: &str,
    tx_per_s: u32,
    duration: Duration,
) -> Vec<Duration> {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let producers = 4;
    let mut tasks = Vec::new();
    for p in 0..producers {
        let url = database_url.to_owned();
        let latencies = latencies.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect(&url).await;
            let prober = Arc::new(connect(&url).await);
            let mut tick = tokio::time::interval(Duration::from_secs(1) / (tx_per_s / producers));
            let started = Instant::now();
            let mut n = 0u64;
            let mut probes = Vec::new();
            while started.elapsed() < duration {
                tick.tick().await;
                let row = client
                    .query_one(
                        "WITH ins AS (INSERT INTO event_log (type, environment, context)
                           SELECT 'load', 'Production', jsonb_build_object('p', $1::int, 'g', g, 'note', repeat('x', 150))
                           FROM generate_series(1, 10) g RETURNING id)
                         SELECT max(id) FROM ins",
                        &[&(p as i32)],
                    )
                    .await
                    .unwrap();
                let committed = Instant::now();
                n += 1;
                if n.is_multiple_of(10) {
                    let id: i64 = row.get(0);
                    let (prober, latencies) = (prober.clone(), latencies.clone());
                    probes.push(tokio::spawn(async move {
                        loop {
                            let gone: bool = prober
                                .query_one("SELECT NOT EXISTS (SELECT 1 FROM event_log WHERE id = $1)", &[&id])
                                .await
                                .unwrap()
                                .get(0);
                            if gone {
                                latencies.lock().await.push(committed.elapsed());
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }));
                }
            }
            for probe in probes {
                probe.await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut v = latencies.lock().await.clone();
    v.sort();
    v
}

pub async fn idle_latency(
    client: &tokio_postgres::Client,
    n: usize,
    pause: Duration,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for i in 0..n {
        let id: i64 = client
            .query_one(
                "SELECT outbox_publish('probe', jsonb_build_object('i', $1::int))",
                &[&(i as i32)],
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
        tokio::time::sleep(pause).await;
    }
    latencies.sort();
    latencies
}

/// pgbench: 8 clients committing single-event transactions for 10 s; returns tps.
pub fn pgbench(database_url: &str) -> f64 {
    let script = root().join(".services/bench/pgbench.sql");
    std::fs::write(
        &script,
        "INSERT INTO bench.event_log (type, environment, context) VALUES ('pgbench', 'Production', '{\"a\": 1}');\n",
    )
    .unwrap();
    let out = Command::new("/usr/lib/postgresql/15/bin/pgbench")
        .args([
            "-n",
            "-c",
            "8",
            "-j",
            "2",
            "-T",
            "10",
            "-f",
            script.to_str().unwrap(),
            database_url,
        ])
        .output()
        .expect("pgbench runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("pgbench: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

/// Loads `events` and empties the table with [`raw_drain`]; rows/s.
pub async fn raw_drain_rate(b: &mut Bench, events: i64) -> f64 {
    b.load(events).await;
    let started = Instant::now();
    let drained = raw_drain(&mut b.client).await;
    drained as f64 / started.elapsed().as_secs_f64()
}

/// Loads `events` and drains them with the relay binary (`env` added to its environment);
/// rows/s from its start to an empty table, and its peak RSS in MiB.
pub async fn relay_drain_rate(b: &Bench, events: i64, env: &[(&str, &str)]) -> (f64, f64) {
    b.load(events).await;
    let started = Instant::now();
    let relay = b.relay_with(env);
    let pid = relay.id();
    let mut peak = 0.0f64;
    while b.any_left().await {
        peak = peak.max(peak_rss_mib(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    peak = peak.max(peak_rss_mib(pid));
    stop(relay);
    (rate, peak)
}
