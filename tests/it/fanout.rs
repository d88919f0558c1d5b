//! A second sink (a PostgreSQL archive written with COPY) and fan-out to both sinks.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use outbox_relay::sink::{EventFilter, PostgresSink, Sink};
use outbox_relay::{publish, NewEvent};
use serde_json::json;

use crate::harness::{bin, connect, shared, terminate, PrivateServer, TestEnv};

fn event(i: usize) -> NewEvent {
    NewEvent {
        event_type: "archived".into(),
        environment: "Production".into(),
        context: json!({ "i": i, "note": "übung \"quoted\"" }),
    }
}

/// A fresh archive database on the PostgreSQL server at `server_url`; returns its URL.
async fn archive_database(server_url: &str, name: &str) -> String {
    let admin = connect(server_url).await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = server_url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

fn archive_sink(url: &str) -> PostgresSink {
    let config = outbox_relay::sink::postgres::ArchiveConfig {
        postgres: outbox_relay::config::PostgresConfig::parse(url).unwrap(),
        table: "event_archive".into(),
    };
    PostgresSink::new(&config, 1).unwrap()
}

fn start_fanout(env: &TestEnv, archive_url: &str) -> Child {
    bin()
        .arg("run")
        .envs(env.bin_env())
        .env("SINKS", "clickhouse,postgres")
        .env("ARCHIVE_DATABASE_URL", archive_url)
        .env("MAX_BACKOFF", "300ms")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the outbox is empty and both sinks hold `n` events.
async fn wait_both(env: &TestEnv, archive: &PostgresSink, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let archived = archive
            .query(&EventFilter::default())
            .await
            .map_or(0, |e| e.len());
        let analytics = env.delivered().await.len();
        let pending = env.pending().await;
        if pending == 0 && archived >= n && analytics >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pending {pending}, archive {archived}, ClickHouse {analytics} of {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_both_sinks_intact() {
    let env = TestEnv::new("fanout").await;
    let archive_url = archive_database(&shared().database_url, "archive_fanout").await;
    let out = crate::harness::run(
        bin()
            .arg("migrate")
            .envs(env.bin_env())
            .env("SINKS", "clickhouse,postgres")
            .env("ARCHIVE_DATABASE_URL", &archive_url),
    );
    assert!(out.status.success(), "{}", crate::harness::text(&out));
    let relay = start_fanout(&env, &archive_url);
    for i in 0..50 {
        publish(&env.client, &event(i)).await.unwrap();
    }
    let archive = archive_sink(&archive_url);
    wait_both(&env, &archive, 50).await;
    terminate(relay);
    let archived = archive.query(&EventFilter::default()).await.unwrap();
    let analytics = env.delivered().await;
    assert_eq!(archived.len(), 50);
    for (a, c) in archived.iter().zip(&analytics) {
        assert_eq!(a.id, c.id);
        assert_eq!(a.event_type, c.event_type);
        assert_eq!(a.environment, "Production");
        // ClickHouse 18.16 stores DateTime (seconds); 20.1+ DateTime64(6) and the archive
        // keep microseconds.
        assert_eq!(a.created_at.unix_timestamp(), c.created_at.unix_timestamp());
        let (ja, jc): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(&a.context).unwrap(),
            serde_json::from_str(&c.context).unwrap(),
        );
        assert_eq!(ja, jc);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_is_down_holds_back_acknowledgement() {
    let env = TestEnv::new("fanout_down").await;
    let archive_server = PrivateServer::postgres("archive_down");
    let archive_url = archive_database(&archive_server.url, "archive").await;
    archive_sink(&archive_url).init().await.unwrap();
    let relay = start_fanout(&env, &archive_url);
    publish(&env.client, &event(0)).await.unwrap();
    let archive = archive_sink(&archive_url);
    wait_both(&env, &archive, 1).await;

    archive_server.stop();
    for i in 1..=20 {
        publish(&env.client, &event(i)).await.unwrap();
    }
    // ClickHouse takes every attempt, the archive none: nothing may leave the outbox.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.pending().await,
        20,
        "held back while the archive is down"
    );

    archive_server.restart();
    let archive = archive_sink(&archive_url);
    wait_both(&env, &archive, 21).await;
    terminate(relay);
    // The archive cannot collapse duplicates later: it must have none now.
    let archive_client = connect(&archive_url).await;
    let row = archive_client
        .query_one(
            "SELECT count(*), count(DISTINCT event_id) FROM event_archive",
            &[],
        )
        .await
        .unwrap();
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((rows, distinct), (21, 21));
    // ClickHouse saw retries of the held-back batches: duplicates there collapse by id.
    let ids: std::collections::BTreeSet<i64> = env.delivered().await.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_adds_nothing_to_the_archive() {
    let archive_url = archive_database(&shared().database_url, "archive_redeliver").await;
    let archive = archive_sink(&archive_url);
    archive.init().await.unwrap();
    archive.init().await.unwrap();
    let events: Vec<outbox_relay::Event> = (1..=3)
        .map(|i| outbox_relay::Event {
            id: i,
            event_type: "t".into(),
            created_at: time::OffsetDateTime::from_unix_timestamp(1_700_000_000 + i).unwrap(),
            environment: "Local".into(),
            context: format!(r#"{{"i": {i}}}"#),
        })
        .collect();
    archive.insert(&events[..2]).await.unwrap();
    archive.insert(&events).await.unwrap();
    let stored = archive.query(&EventFilter::default()).await.unwrap();
    assert_eq!(stored.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3]);
    // A context PostgreSQL cannot store as jsonb is refused for good (dead-lettered by the
    // relay), not retried forever.
    let bad = outbox_relay::Event {
        id: 9,
        context: r#"{"nul": "\u0000"}"#.into(),
        ..events[0].clone()
    };
    let err = archive.insert(&[bad]).await.unwrap_err();
    assert_eq!(err.kind(), outbox_relay::ErrorKind::Rejected, "{err}");
}
