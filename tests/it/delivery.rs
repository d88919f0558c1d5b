//! Events committed in PostgreSQL arrive in ClickHouse intact, once, and only if committed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use outbox_relay::config::RelayConfig;
use outbox_relay::{publish, NewEvent};
use serde_json::json;

use crate::harness::{relay_config, TestEnv};

fn event(event_type: &str, context: serde_json::Value) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        environment: "Production".into(),
        context,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_arrive_intact() {
    let mut env = TestEnv::new("fields").await;
    let big: String = "x".repeat(100 * 1024);
    let contexts = [
        json!({"name": "Zoë 北京 🚀", "quote": "it's \"quoted\"", "backslash": "a\\b"}),
        json!({"nested": {"a": [1, 2, {"b": [null, true, 1.5e10]}], "empty": {}}}),
        json!({"big": big}),
        json!({}),
    ];
    let tx = env.client.transaction().await.unwrap();
    for (i, c) in contexts.iter().enumerate() {
        publish(&tx, &event(&format!("type_{i}"), c.clone()))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    // What PostgreSQL holds, to compare byte for byte after delivery.
    let rows = env
        .client
        .query(
            "SELECT id, type, created_at, environment, context::text FROM event_log ORDER BY id",
            &[],
        )
        .await
        .unwrap();

    let relay = env.spawn_relay(relay_config());
    let delivered = env
        .wait_delivered(contexts.len(), Duration::from_secs(20))
        .await;
    relay.stop().await;

    assert_eq!(delivered.len(), rows.len());
    let version = env.sink().server_version().await.unwrap();
    for (row, got) in rows.iter().zip(&delivered) {
        assert_eq!(got.id, row.get::<_, i64>(0));
        assert_eq!(got.event_type, row.get::<_, String>(1));
        assert_eq!(got.environment, row.get::<_, String>(3));
        assert_eq!(got.context, row.get::<_, String>(4), "context byte-exact");
        let created: time::OffsetDateTime = row.get(2);
        if version >= (20, 1) {
            assert_eq!(got.created_at, created, "DateTime64(6) keeps microseconds");
        } else {
            assert_eq!(
                got.created_at.unix_timestamp(),
                created.unix_timestamp(),
                "DateTime keeps seconds"
            );
        }
        let parsed: serde_json::Value = serde_json::from_str(&got.context).unwrap();
        assert_eq!(parsed, contexts[(got.id - delivered[0].id) as usize]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_events_never_arrive() {
    let mut env = TestEnv::new("rollback").await;
    let relay = env.spawn_relay(relay_config());
    let tx = env.client.transaction().await.unwrap();
    publish(&tx, &event("ghost", json!({}))).await.unwrap();
    tx.rollback().await.unwrap();
    publish(&env.client, &event("marker", json!({})))
        .await
        .unwrap();
    let delivered = env.wait_delivered(1, Duration::from_secs(20)).await;
    // Give a stray ghost every chance to show up before we look.
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.stop().await;
    let delivered_after = env.delivered().await;
    assert_eq!(delivered_after.len(), 1, "{delivered_after:?}");
    assert_eq!(delivered[0].event_type, "marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_hold_at_most_event_batch_size() {
    let env = TestEnv::new("batching").await;
    for i in 0..25 {
        publish(&env.client, &event("b", json!({ "i": i })))
            .await
            .unwrap();
    }
    let relay = env.spawn_relay(RelayConfig {
        batch_size: 10,
        claims_per_insert: 1,
        max_in_flight: 1,
        ..relay_config()
    });
    env.wait_delivered(25, Duration::from_secs(20)).await;
    let stats = relay.stats.clone();
    relay.stop().await;
    assert_eq!(
        stats.delivered.load(std::sync::atomic::Ordering::Relaxed),
        25
    );
    assert_eq!(
        stats.batches.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "10 + 10 + 5"
    );
    // Each batch is one ClickHouse insert, so one part per batch before merges.
    let parts = crate::harness::clickhouse_sql(&env.ch.url)(&format!(
        "SELECT count() FROM system.parts WHERE database = '{}' AND table = 'event_log' AND level = 0",
        env.ch.database
    ));
    assert!(parts.trim().parse::<u32>().unwrap() <= 3, "parts: {parts}");
}

/// Level-0 parts of the test's ClickHouse table: one per insert, before merges.
fn inserted_parts(env: &TestEnv) -> u32 {
    let parts = crate::harness::clickhouse_sql(&env.ch.url)(&format!(
        "SELECT count() FROM system.parts WHERE database = '{}' AND table = 'event_log' AND level = 0",
        env.ch.database
    ));
    parts.trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_claims_combine_into_one_insert() {
    let env = TestEnv::new("multiclaim").await;
    for i in 0..25 {
        publish(&env.client, &event("m", json!({ "i": i })))
            .await
            .unwrap();
    }
    let relay = env.spawn_relay(RelayConfig {
        batch_size: 10,
        claims_per_insert: 2,
        max_in_flight: 1,
        ..relay_config()
    });
    env.wait_delivered(25, Duration::from_secs(20)).await;
    let stats = relay.stats.clone();
    relay.stop().await;
    // Claims of 10 + 10 in one delivery (both full), then 5 in the next.
    assert_eq!(stats.batches.load(Ordering::Relaxed), 2);
    assert_eq!(inserted_parts(&env), 2);
    // The second claim of a transaction starts after the first's rows: none twice.
    let delivered = env.delivered().await;
    let mut ids: Vec<_> = delivered.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((delivered.len(), ids.len()), (25, 25));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_events_stop_a_delivery_from_claiming_more() {
    let env = TestEnv::new("insertbytes").await;
    let note = "x".repeat(1000);
    for i in 0..25 {
        publish(&env.client, &event("big", json!({ "i": i, "note": note })))
            .await
            .unwrap();
    }
    let relay = env.spawn_relay(RelayConfig {
        batch_size: 10,
        claims_per_insert: 10,
        // One claim of ten ~1 KB events is past this: no delivery claims a second time.
        max_insert_bytes: 5_000,
        max_in_flight: 1,
        ..relay_config()
    });
    env.wait_delivered(25, Duration::from_secs(20)).await;
    let stats = relay.stats.clone();
    relay.stop().await;
    assert_eq!(stats.batches.load(Ordering::Relaxed), 3, "10 + 10 + 5");
    assert_eq!(inserted_parts(&env), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_wakes_the_relay_long_before_the_timer() {
    let env = TestEnv::new("wakeup").await;
    let relay = env.spawn_relay(RelayConfig {
        poll_interval: Duration::from_secs(3600),
        ..relay_config()
    });
    // Let the start-up drain run and the relay go idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        let started = std::time::Instant::now();
        publish(&env.client, &event("wake", json!({ "i": i })))
            .await
            .unwrap();
        env.wait_delivered(i + 1, Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_deliver_every_event_exactly_once() {
    let env = TestEnv::new("two_relays").await;
    let config = RelayConfig {
        batch_size: 50,
        ..relay_config()
    };
    let a = env.spawn_relay(config.clone());
    let b = env.spawn_relay(config);
    // Producers write while both relays claim.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let url = env.database_url.clone();
            tokio::spawn(async move {
                let client = crate::harness::connect(&url).await;
                for i in 0..500 {
                    client
                        .execute("SELECT outbox_publish('load', jsonb_build_object('w', $1::int, 'i', $2::int))", &[&w, &i])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let delivered = env.wait_delivered(2000, Duration::from_secs(60)).await;
    let (sa, sb) = (a.stats.clone(), b.stats.clone());
    a.stop().await;
    b.stop().await;
    let mut ids: Vec<i64> = delivered.iter().map(|e| e.id).collect();
    ids.dedup();
    assert_eq!(delivered.len(), 2000, "no duplicates before FINAL");
    assert_eq!(ids.len(), 2000);
    let (da, db) = (
        sa.delivered.load(std::sync::atomic::Ordering::Relaxed),
        sb.delivered.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert_eq!(da + db, 2000, "a delivered {da}, b delivered {db}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_in_any_language_use_plain_sql() {
    let env = TestEnv::new("plain_sql").await;
    let relay = env.spawn_relay(relay_config());
    // What a Python or Go producer would run: the function, with and without environment,
    // and a plain INSERT.
    env.client
        .batch_execute(
            "BEGIN;
             SELECT outbox_publish('order_paid', '{\"order\": 7}');
             SELECT outbox_publish('order_shipped', '{\"order\": 7}', 'Production');
             INSERT INTO event_log (type, environment, context) VALUES ('raw', 'Staging', '[1,2]');
             COMMIT;",
        )
        .await
        .unwrap();
    let delivered = env.wait_delivered(3, Duration::from_secs(20)).await;
    relay.stop().await;
    let got: Vec<(&str, &str, &str)> = delivered
        .iter()
        .map(|e| {
            (
                e.event_type.as_str(),
                e.environment.as_str(),
                e.context.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("order_paid", "Local", "{\"order\": 7}"),
            ("order_shipped", "Production", "{\"order\": 7}"),
            ("raw", "Staging", "[1, 2]")
        ]
    );
}

/// Ids are not commit order: an event whose transaction took its id early and committed
/// late lies below ids the relay already claimed. While the relay is busy its claims start
/// past those ids (src/claim.rs, `Cursor`); the periodic rescan from the oldest event must
/// still deliver the late one before the backlog is gone, not only when the relay goes idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_late_below_claimed_ids_is_delivered_while_busy() {
    let env = TestEnv::new("late_commit").await;
    let mut late = crate::harness::connect(&env.database_url).await;
    let late_tx = late.transaction().await.unwrap();
    publish(&late_tx, &event("late", json!({}))).await.unwrap();
    let backlog: i64 = 20_000;
    env.client
        .execute(
            "INSERT INTO event_log (type, environment, context)
             SELECT 'load', 'Production', jsonb_build_object('i', g)
             FROM generate_series(1, $1::bigint) g",
            &[&backlog],
        )
        .await
        .unwrap();
    // Small batches keep the relay busy for several seconds on this backlog.
    let relay = env.spawn_relay(RelayConfig {
        batch_size: 10,
        claims_per_insert: 1,
        ..relay_config()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while relay.stats.delivered.load(Ordering::Relaxed) < 1_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the relay never got going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    late_tx.commit().await.unwrap();
    let committed = std::time::Instant::now();
    let ch = crate::harness::clickhouse_sql(&env.ch.url);
    let late_arrived = format!(
        "SELECT count() FROM {}.event_log WHERE event_type = 'late'",
        env.ch.database
    );
    while ch(&late_arrived).trim() != "1" {
        assert!(
            committed.elapsed() < Duration::from_secs(20),
            "the late event never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waited = committed.elapsed();
    let pending = env.pending().await;
    println!("FIGURES late commit: delivered {waited:?} after its commit, {pending} of {backlog} still pending");
    assert!(
        pending > 0,
        "the late event waited for the backlog to drain ({waited:?})"
    );
    env.wait_delivered(backlog as usize + 1, Duration::from_secs(60))
        .await;
    relay.stop().await;
}
