//! One bad event must not stop the stream: it is isolated, dead-lettered with its reason in
//! the transaction that deletes it, and the rest of its batch is delivered.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use outbox_relay::config::RelayConfig;

use crate::harness::{bin, clickhouse_sql, relay_config, TestEnv};

/// Nine good events around one bad one, committed together so they share a batch.
async fn write_batch(env: &TestEnv, bad: &str) {
    env.client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO event_log (type, environment, context)
               SELECT 'good', 'Local', jsonb_build_object('i', g) FROM generate_series(1, 5) g;
             {bad};
             INSERT INTO event_log (type, environment, context)
               SELECT 'good', 'Local', jsonb_build_object('i', g) FROM generate_series(6, 9) g;
             COMMIT;"
        ))
        .await
        .unwrap();
}

async fn wait_dead_lettered(env: &TestEnv, n: i64) -> Vec<(i64, String, i32)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = env
            .client
            .query("SELECT id, error, attempts FROM event_log_dead_letter WHERE replayed_at IS NULL ORDER BY id", &[])
            .await
            .unwrap();
        if rows.len() as i64 >= n && env.pending().await == 0 {
            return rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} dead letters, {} pending",
            rows.len(),
            env.pending().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn good_delivered(env: &TestEnv) -> usize {
    clickhouse_sql(&env.ch.url)(&format!(
        "SELECT uniqExact(event_id) FROM {}.event_log WHERE event_type = 'good'",
        env.ch.database
    ))
    .trim()
    .parse()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_clickhouse_cannot_store_is_dead_lettered_and_can_be_replayed() {
    let env = TestEnv::new("poison_date").await;
    // Legal in PostgreSQL, outside every ClickHouse DateTime/DateTime64 range.
    write_batch(
        &env,
        "INSERT INTO event_log (type, environment, context, created_at) VALUES ('bad', 'Local', '{\"why\": \"year\"}', '2400-01-01')",
    )
    .await;
    let relay = env.spawn_relay(relay_config());
    let letters = wait_dead_lettered(&env, 1).await;
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].1.contains("outside the range"),
        "{}",
        letters[0].1
    );
    assert_eq!(good_delivered(&env), 9, "the rest of the batch arrives");
    assert_eq!(relay.stats.dead_lettered.load(Ordering::Relaxed), 1);

    // The operator sees it, replays it, and (still unstorable) it comes back with attempts 2.
    let out = bin()
        .args(["dead-letter", "list", "--json"])
        .envs(env.bin_env())
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["id"], letters[0].0);
    assert_eq!(listed[0]["event_type"], "bad");
    let out = bin()
        .args(["dead-letter", "replay", "--id", &letters[0].0.to_string()])
        .envs(env.bin_env())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let first_id = letters[0].0;
    loop {
        let letters = wait_dead_lettered(&env, 1).await;
        if letters[0].2 == 2 {
            assert_eq!(letters[0].0, first_id, "same id after replay");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never dead-lettered again: {letters:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relay.stop().await;
    let out = bin()
        .args(["dead-letter", "replay", "--id", "999999"])
        .envs(env.bin_env())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "replaying an unknown id fails clearly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_over_the_size_limit_is_dead_lettered_unsent() {
    let env = TestEnv::new("poison_size").await;
    write_batch(
        &env,
        "INSERT INTO event_log (type, environment, context) VALUES ('bad', 'Local', jsonb_build_object('blob', repeat('x', 5000)))",
    )
    .await;
    let relay = env.spawn_relay(RelayConfig {
        max_event_bytes: 1000,
        ..relay_config()
    });
    let letters = wait_dead_lettered(&env, 1).await;
    relay.stop().await;
    assert!(
        letters[0].1.contains("over the limit MAX_EVENT_BYTES=1000"),
        "{}",
        letters[0].1
    );
    assert_eq!(good_delivered(&env), 9);
    let bad_in_clickhouse = clickhouse_sql(&env.ch.url)(&format!(
        "SELECT count() FROM {}.event_log WHERE event_type = 'bad'",
        env.ch.database
    ));
    assert_eq!(bad_in_clickhouse.trim(), "0", "never sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_server_rejects_is_isolated_by_splitting_the_batch() {
    let env = TestEnv::new("poison_server").await;
    // A real server-side refusal: a materialized view that throws on one event type
    // (ClickHouse error 395, classified as permanent).
    clickhouse_sql(&env.ch.url)(&format!(
        "CREATE MATERIALIZED VIEW {db}.guard ENGINE = Null AS SELECT throwIf(event_type = 'bad') AS refused FROM {db}.event_log",
        db = env.ch.database
    ));
    write_batch(
        &env,
        "SELECT outbox_publish('bad', '{\"why\": \"server\"}')",
    )
    .await;
    let relay = env.spawn_relay(relay_config());
    let letters = wait_dead_lettered(&env, 1).await;
    relay.stop().await;
    assert_eq!(letters.len(), 1);
    assert!(letters[0].1.contains("Code: 395"), "{}", letters[0].1);
    assert_eq!(
        good_delivered(&env),
        9,
        "every good event of the batch arrives"
    );
}
