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
    let down = std::time::Instant::now();
    for i in 1..=20 {
        publish(&env.client, &event(i)).await.unwrap();
    }
    // The relay tries, fails, rolls back, backs off: nothing leaves PostgreSQL.
    crate::harness::wait_for_failed_batches(&relay.stats, 2, "the relay never tried to deliver")
        .await;
    // A 3-second outage: several backoff rounds (capped at 500 ms here).
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(down.elapsed())).await;
    assert_eq!(
        env.pending().await,
        20,
        "nothing is deleted while ClickHouse is down"
    );

    clickhouse.restart();
    let back = std::time::Instant::now();
    let delivered = env.wait_delivered(21, Duration::from_secs(30)).await;
    eprintln!(
        "FIGURES clickhouse_down: 21 written, {} in ClickHouse, {} failed attempts while down, backlog delivered {:.0} ms after restart",
        delivered.len(),
        relay.stats.failed_batches.load(Ordering::Relaxed),
        back.elapsed().as_secs_f64() * 1e3
    );
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
    // Hang ClickHouse once the relay is running (the start-up check is another test).
    relay.wait_listening().await;
    clickhouse.signal("STOP");
    for i in 0..5 {
        publish(&env.client, &event(i)).await.unwrap();
    }
    crate::harness::wait_for_failed_batches(&relay.stats, 1, "the insert never timed out").await;
    // The claim was rolled back: between retries (each bounded by the insert timeout) the
    // rows are unlocked, so another session can lock them. Without the timeout they would
    // stay locked for as long as ClickHouse hangs.
    env.wait_unlocked(5, "the hanging insert kept its claim")
        .await;
    assert_eq!(env.pending().await, 5);
    clickhouse.signal("CONT");
    let resumed = std::time::Instant::now();
    let delivered = env.wait_delivered(5, Duration::from_secs(30)).await;
    let mut ids: Vec<i64> = delivered.iter().map(|e| e.id).collect();
    ids.dedup();
    eprintln!(
        "FIGURES clickhouse_hang: 5 written, {} rows in ClickHouse ({} distinct), delivered {:.0} ms after SIGCONT",
        delivered.len(),
        ids.len(),
        resumed.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(ids.len(), 5);
    relay.stop().await;
}

/// A relay (re)started while ClickHouse accepts connections but never answers: each
/// start-up check times out and is retried, and a stop request ends the wait at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_started_against_a_hung_clickhouse_retries_and_still_stops() {
    let clickhouse = PrivateClickHouse::start("ch_hung_start");
    let env = TestEnv::with_clickhouse("ch_hung_start", &clickhouse.url).await;
    publish(&env.client, &event(0)).await.unwrap();
    clickhouse.signal("STOP");
    let config = RelayConfig {
        insert_timeout: Duration::from_millis(300),
        ..relay_config()
    };
    let relay = env.spawn_relay(config.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let started = std::time::Instant::now();
    relay.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopped after {:?}",
        started.elapsed()
    );
    assert_eq!(env.pending().await, 1, "nothing claimed or deleted");

    let relay = env.spawn_relay(config);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !relay.observer.metrics.encode().lines().any(|l| {
        l.starts_with("outbox_sink_errors_total{sink=\"clickhouse\",kind=\"timeout\"} ")
            && !l.ends_with(" 0")
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "no start-up check timed out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    clickhouse.signal("CONT");
    env.wait_delivered(1, Duration::from_secs(20)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_is_survived_without_restarting_the_relay() {
    let postgres = crate::harness::PrivateServer::postgres("pg_restart");
    let env = TestEnv::on(
        &postgres.url,
        "pg_restart",
        &crate::harness::shared().clickhouse_url,
    )
    .await;
    // The timer is an hour: only the listener's drain-on-reconnect and notifications can
    // deliver in time.
    let relay = env.spawn_relay(RelayConfig {
        poll_interval: Duration::from_secs(3600),
        ..relay_config()
    });
    publish(&env.client, &event(0)).await.unwrap();
    env.wait_delivered(1, Duration::from_secs(20)).await;

    postgres.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    postgres.restart();
    let back = std::time::Instant::now();
    // A fresh client: the test's own connection died with the server too. Events committed
    // right after the restart may be before the listener is back: the drain on reconnect
    // must pick them up.
    let env = TestEnv {
        client: crate::harness::connect(&env.database_url).await,
        ..env
    };
    for i in 1..=10 {
        publish(&env.client, &event(i)).await.unwrap();
    }
    env.wait_delivered(11, Duration::from_secs(20)).await;
    eprintln!(
        "FIGURES postgres_restart: 10 written after the restart, all delivered {:.0} ms after it, relay not restarted",
        back.elapsed().as_secs_f64() * 1e3
    );
    // And notifications work again after the reconnect.
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish(&env.client, &event(11)).await.unwrap();
    env.wait_delivered(12, Duration::from_secs(10)).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_grace_period_in_flight_batches_roll_back() {
    let clickhouse = PrivateClickHouse::start("grace");
    let env = TestEnv::with_clickhouse("grace", &clickhouse.url).await;
    let relay = env.spawn_relay(RelayConfig {
        shutdown_grace: Duration::from_millis(500),
        insert_timeout: Duration::from_secs(60),
        ..relay_config()
    });
    relay.wait_listening().await;
    clickhouse.signal("STOP");
    for i in 0..5 {
        publish(&env.client, &event(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // a batch is now stuck in its insert
    let started = std::time::Instant::now();
    relay.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped after {:?}",
        started.elapsed()
    );
    clickhouse.signal("CONT");
    // The stuck batch was rolled back: its rows are still there, and unlocked.
    env.wait_unlocked(5, "the stuck batch's rows stayed locked")
        .await;
    // ClickHouse may still complete the insert it received before SIGSTOP: the events are
    // then in both places, and the next run's redelivery collapses by event_id. What must
    // hold is that nothing left PostgreSQL unacknowledged.
    assert_eq!(env.pending().await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_but_legal_events_arrive_byte_exact() {
    let env = TestEnv::new("odd").await;
    let mut deep = json!("bottom");
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let contexts = [
        json!({"controls": "tab\there\u{1}\u{1f}\u{7f} bell\u{7}", "newline": "a\nb\r\n"}),
        json!({"unicode": "ÅÄÖ ∑ 𝄞 👩‍👩‍👧 \u{200b} \u{fffd}"}),
        deep,
        json!({"big": "é".repeat(512 * 1024)}), // 1 MiB of UTF-8
    ];
    for (i, context) in contexts.iter().enumerate() {
        let event_type = if i == 0 {
            String::new()
        } else {
            format!("odd_{i}")
        };
        publish(
            &env.client,
            &NewEvent {
                event_type,
                environment: "Local".into(),
                context: context.clone(),
            },
        )
        .await
        .unwrap();
    }
    let expected: Vec<String> = env
        .client
        .query("SELECT context::text FROM event_log ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let relay = env.spawn_relay(relay_config());
    let delivered = env
        .wait_delivered(contexts.len(), Duration::from_secs(30))
        .await;
    relay.stop().await;
    assert_eq!(delivered[0].event_type, "", "an empty type is kept");
    for (got, want) in delivered.iter().zip(&expected) {
        assert_eq!(&got.context, want, "byte-exact");
    }
}
