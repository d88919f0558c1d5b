//! Several relays on one outbox: every event exactly once, and the work spread.

use std::time::{Duration, Instant};

use outbox_relay::config::RelayConfig;

use crate::harness::{clickhouse_sql, relay_config, TestEnv};

/// The value of `outbox_events_delivered_total{sink="clickhouse"}` in a relay's /metrics.
async fn delivered_by(base: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("outbox_events_delivered_total{sink=\"clickhouse\"} "))
        .expect("the delivered counter")
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_share_a_sustained_load_exactly_once() {
    let env = TestEnv::new("three_relays").await;
    // Counts every delivery as it arrives, before ReplacingMergeTree could collapse a
    // duplicate: "exactly once" is checked before any FINAL or merge.
    clickhouse_sql(&env.ch.url)(&format!(
        "CREATE MATERIALIZED VIEW {db}.deliveries ENGINE = MergeTree() ORDER BY event_id AS SELECT event_id FROM {db}.event_log",
        db = env.ch.database
    ));
    let config = RelayConfig {
        batch_size: 100,
        ..relay_config()
    };
    let mut relays = Vec::new();
    for _ in 0..3 {
        relays.push(env.spawn_observed_relay(config.clone()).await);
    }
    // 4 producers, each committing a transaction of 10 events every 10 ms for 4 s:
    // ≈4,000 events/s offered, sustained.
    let deadline = Instant::now() + Duration::from_secs(4);
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let url = env.database_url.clone();
            tokio::spawn(async move {
                let mut client = crate::harness::connect(&url).await;
                let mut written = 0usize;
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                while Instant::now() < deadline {
                    tick.tick().await;
                    let tx = client.transaction().await.unwrap();
                    tx.execute(
                        "INSERT INTO event_log (type, environment, context)
                         SELECT 'load', 'Local', jsonb_build_object('p', $1::int, 'i', g)
                         FROM generate_series(1, 10) g",
                        &[&p],
                    )
                    .await
                    .unwrap();
                    tx.commit().await.unwrap();
                    written += 10;
                }
                written
            })
        })
        .collect();
    let mut written = 0;
    for p in producers {
        written += p.await.unwrap();
    }
    env.wait_delivered(written, Duration::from_secs(60)).await;
    let mut per_relay = Vec::new();
    for (_, base) in &relays {
        per_relay.push(delivered_by(base).await);
    }
    for (relay, _) in relays {
        relay.stop().await;
    }
    let deliveries: usize = clickhouse_sql(&env.ch.url)(&format!(
        "SELECT count() FROM {}.deliveries",
        env.ch.database
    ))
    .trim()
    .parse()
    .unwrap();
    let distinct: usize = clickhouse_sql(&env.ch.url)(&format!(
        "SELECT uniqExact(event_id) FROM {}.deliveries",
        env.ch.database
    ))
    .trim()
    .parse()
    .unwrap();
    eprintln!("FIGURES three_relays: {written} events written, {deliveries} deliveries, per relay {per_relay:?}");
    assert_eq!(distinct, written, "every event arrived");
    assert_eq!(deliveries, written, "and each exactly once");
    assert_eq!(per_relay.iter().sum::<u64>(), written as u64);
    assert!(
        per_relay.iter().all(|&n| n > 0),
        "the work is spread: {per_relay:?}"
    );
}
