//! Failures that must lose nothing.

use std::sync::atomic::Ordering;
use std::time::Duration;

use outbox_relay::config::RelayConfig;
use outbox_relay::{publish, NewEvent};
use serde_json::json;

use crate::harness::{relay_config, PrivateClickHouse, TestEnv};

fn event(i: i32) -> NewEvent {
    NewEvent {
        event_type: "fault".into(),
        environment: "Local".into(),
        context: json!({ "i": i }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_keeps_events_until_it_returns() {
    let clickhouse = PrivateClickHouse::start("ch_down");
    let env = TestEnv::with_clickhouse("ch_down", &clickhouse.url).await;
    let relay = env.spawn_relay(relay_config());
    publish(&env.client, &event(0)).await.unwrap();
    env.wait_delivered(1, Duration::from_secs(20)).await;

    clickhouse.stop();
    for i in 1..=20 {
        publish(&env.client, &event(i)).await.unwrap();
    }
    // The relay tries, fails, rolls back, backs off: nothing leaves PostgreSQL.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while relay.stats.failed_batches.load(Ordering::Relaxed) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the relay never tried to deliver"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        env.pending().await,
        20,
        "nothing is deleted while ClickHouse is down"
    );

    clickhouse.restart();
    let delivered = env.wait_delivered(21, Duration::from_secs(30)).await;
    relay.stop().await;
    assert_eq!(delivered.len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_clickhouse_times_out_and_releases_the_claim() {
    let clickhouse = PrivateClickHouse::start("ch_hang");
    let env = TestEnv::with_clickhouse("ch_hang", &clickhouse.url).await;
    let relay = env.spawn_relay(RelayConfig {
        insert_timeout: Duration::from_millis(500),
        ..relay_config()
    });
    crate::harness::services(&["signal", "STOP", "--only", "clickhouse"], &clickhouse.dir);
    for i in 0..5 {
        publish(&env.client, &event(i)).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while relay.stats.failed_batches.load(Ordering::Relaxed) < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the insert never timed out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The claim was rolled back: the rows are unlocked, so another session can lock them.
    let locked: i64 = env
        .client
        .query_one(
            "SELECT count(*) FROM (SELECT id FROM event_log FOR UPDATE SKIP LOCKED) t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // A retry may hold them again at this instant; what matters is they are never lost.
    assert!(locked <= 5);
    assert_eq!(env.pending().await, 5);
    crate::harness::services(&["signal", "CONT", "--only", "clickhouse"], &clickhouse.dir);
    env.wait_delivered(5, Duration::from_secs(30)).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatched_clickhouse_table_stops_the_relay_before_any_delete() {
    let env = TestEnv::unmigrated("mismatch", &crate::harness::shared().clickhouse_url).await;
    outbox_relay::migrate::migrate_postgres(&env.pg, false)
        .await
        .unwrap();
    crate::harness::clickhouse_sql(&env.ch.url)(&format!(
        "CREATE TABLE {}.event_log (event_id String, event_type String) ENGINE = MergeTree() ORDER BY event_id",
        env.ch.database
    ));
    publish(&env.client, &event(1)).await.unwrap();
    let relay = env.spawn_relay(relay_config());
    let err = tokio::time::timeout(Duration::from_secs(10), relay.handle)
        .await
        .expect("the relay gives up at once")
        .unwrap()
        .expect_err("a mismatched table is an error");
    let text = err.to_string();
    assert!(
        text.contains("column event_id is String, expected UInt64"),
        "{text}"
    );
    assert!(text.contains("column event_date_time is missing"), "{text}");
    assert_eq!(env.pending().await, 1, "nothing deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_a_missing_clickhouse_database() {
    let env = TestEnv::unmigrated("ch_nodb", &crate::harness::shared().clickhouse_url).await;
    crate::harness::clickhouse_sql(&env.ch.url)(&format!("DROP DATABASE {}", env.ch.database));
    outbox_relay::Sink::init(&env.sink())
        .await
        .expect("init creates the database and the table");
    assert!(env.delivered().await.is_empty());
}
