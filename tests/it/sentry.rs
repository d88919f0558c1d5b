//! Errors and performance data reach Sentry: a stand-in endpoint records what the SDK sends.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbox_relay::publish;
use serde_json::Value;

use crate::harness::{bin, terminate, TestEnv};
use crate::observe::event;

/// A stand-in Sentry: records every envelope the SDK posts.
async fn fake_sentry() -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::routing::post;
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    let app = axum::Router::new().route(
        "/api/{project}/envelope/",
        post(move |body: String| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body);
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://public@{addr}/1"), received)
}

/// The relay binary with `SENTRY_DSN` set to the fake endpoint, plus `extra` settings.
fn relay_reporting_to(env: &TestEnv, dsn: &str, extra: &[(&str, &str)]) -> std::process::Child {
    bin()
        .arg("run")
        .envs(env.bin_env())
        .env("SENTRY_DSN", dsn)
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The items of one type (`event` for errors, `transaction`) in the recorded envelopes.
fn items(envelopes: &[String], kind: &str) -> Vec<Value> {
    let mut events = Vec::new();
    for envelope in envelopes {
        let mut lines = envelope.lines().skip(1);
        while let Some(header) = lines.next() {
            let Ok(header) = serde_json::from_str::<Value>(header) else {
                continue;
            };
            let payload = lines.next().unwrap_or_default();
            if header["type"] == kind {
                events.push(serde_json::from_str(payload).unwrap());
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_error_reaches_sentry_once_with_its_tags() {
    let env = TestEnv::new("sentry").await;
    let (dsn, received) = fake_sentry().await;
    let relay = relay_reporting_to(
        &env,
        &dsn,
        &[("SENTRY_ENVIRONMENT", "it-test"), ("MAX_BACKOFF", "200ms")],
    );
    publish(&env.client, &event(0)).await.unwrap();
    env.wait_delivered(1, Duration::from_secs(20)).await;
    // Break delivery without touching the server: the sink's table disappears.
    crate::harness::clickhouse_sql(&env.ch.url)(&format!(
        "DROP TABLE {}.event_log",
        env.ch.database
    ));
    for i in 1..=3 {
        publish(&env.client, &event(i)).await.unwrap();
    }
    // Several retries fail (backoff capped at 200 ms), yet Sentry hears of it once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.pending().await, 3, "nothing deleted while failing");
    let out = terminate(relay);
    let events = items(&received.lock().unwrap(), "event");
    // SENTRY_TRACES_SAMPLE_RATE defaults to 0: no performance data.
    assert!(items(&received.lock().unwrap(), "transaction").is_empty());
    assert_eq!(
        events.len(),
        1,
        "{events:#?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = &events[0];
    // The SDK leaves `level` out when it is the default, error.
    assert!(e["level"].is_null() || e["level"] == "error", "{e}");
    assert_eq!(e["environment"], "it-test");
    assert!(
        e["release"].as_str().unwrap().starts_with("outbox-relay@"),
        "{e}"
    );
    assert_eq!(e["tags"]["sink"], "clickhouse", "{e}");
    assert_eq!(e["tags"]["error_kind"], "sink", "{e}");
    let text = e.to_string();
    assert!(text.contains("delivery is failing"), "{text}");
    for field in ["batch_size", "first_id", "last_id"] {
        assert!(text.contains(field), "{field} missing: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_batch_is_a_sentry_transaction_when_sampled() {
    let env = TestEnv::new("sentry_tx").await;
    let (dsn, received) = fake_sentry().await;
    let relay = relay_reporting_to(&env, &dsn, &[("SENTRY_TRACES_SAMPLE_RATE", "1")]);
    publish(&env.client, &event(0)).await.unwrap();
    env.wait_delivered(1, Duration::from_secs(20)).await;
    terminate(relay);
    let transactions = items(&received.lock().unwrap(), "transaction");
    let delivered: Vec<&Value> = transactions
        .iter()
        .filter(|t| t["spans"].as_array().is_some_and(|s| s.len() == 3))
        .collect();
    assert!(!delivered.is_empty(), "{transactions:#?}");
    let t = delivered[0];
    assert_eq!(t["transaction"], "batch", "{t}");
    assert_eq!(t["tags"]["sink"], "clickhouse", "{t}");
    let mut spans: Vec<&str> = t["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["description"].as_str().unwrap())
        .collect();
    spans.sort_unstable();
    assert_eq!(spans, ["acknowledge", "claim", "deliver"], "{t}");
    assert!(items(&received.lock().unwrap(), "event").is_empty());
}
