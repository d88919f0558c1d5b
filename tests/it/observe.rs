//! What operators see: `/metrics`, `/healthz`, `/readyz`, `status`, and logs (Sentry:
//! `sentry.rs`).

use std::process::Stdio;
use std::time::{Duration, Instant};

use outbox_relay::config::RelayConfig;
use outbox_relay::{publish, NewEvent};
use serde_json::{json, Value};

use crate::harness::{bin, relay_config, terminate, PrivateClickHouse, TestEnv};

pub fn event(i: usize) -> NewEvent {
    NewEvent {
        event_type: "observed".into(),
        environment: "Local".into(),
        context: json!({ "i": i }),
    }
}

fn observed_config() -> RelayConfig {
    RelayConfig {
        sample_interval: Duration::from_millis(100),
        ..relay_config()
    }
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The value of one series in a Prometheus exposition, e.g. `outbox_backlog_events` or
/// `outbox_batches_total{outcome="delivered"}`; `None` when absent.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// Scrapes until `check` holds, or fails with the last scrape.
async fn scrape_until(base: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, text) = get(&format!("{base}/metrics")).await;
        assert_eq!(status, 200);
        if check(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}; last scrape:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readiness_until(base: &str, ready: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(&format!("{base}/readyz")).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status == 200, body["ready"] == true, "{body}");
        if body["ready"] == ready {
            return body;
        }
        assert!(Instant::now() < deadline, "never ready={ready}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_was_delivered() {
    let env = TestEnv::new("metrics").await;
    for i in 0..25 {
        publish(&env.client, &event(i)).await.unwrap();
    }
    let (relay, base) = env
        .spawn_observed_relay(RelayConfig {
            batch_size: 10,
            claims_per_insert: 1,
            ..observed_config()
        })
        .await;
    env.wait_delivered(25, Duration::from_secs(20)).await;
    // Gauges are sampled: wait for a sample taken after the drain. An idle relay still
    // claims now and then (the empty re-check claim, the fallback timer), so wait for a
    // moment with none in flight too.
    let text = scrape_until(&base, "backlog never sampled as 0", |t| {
        series(t, "outbox_backlog_events") == Some(0.0)
            && series(t, "outbox_in_flight_batches") == Some(0.0)
    })
    .await;
    assert_eq!(
        series(&text, "outbox_events_delivered_total{sink=\"clickhouse\"}"),
        Some(25.0),
        "{text}"
    );
    assert_eq!(
        series(&text, "outbox_batches_total{outcome=\"delivered\"}"),
        Some(3.0)
    );
    assert_eq!(series(&text, "outbox_lag_seconds"), Some(0.0));
    assert_eq!(series(&text, "outbox_dead_letter_events"), Some(0.0));
    assert_eq!(series(&text, "outbox_in_flight_batches"), Some(0.0));
    assert_eq!(series(&text, "outbox_batch_size_events_count"), Some(3.0));
    assert_eq!(series(&text, "outbox_batch_size_events_sum"), Some(25.0));
    assert!(text.contains("outbox_build_info{version=\""), "{text}");
    assert!(
        text.contains("outbox_delivery_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.contains("outbox_claim_to_commit_duration_seconds_count 3"),
        "{text}"
    );

    let (status, body) = get(&format!("{base}/healthz")).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let ready = readiness_until(&base, true).await;
    assert_eq!(ready["postgres"], "ok");
    assert_eq!(ready["listener"], "ok");
    assert_eq!(ready["sink"], "ok");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_outage_shows_in_backlog_lag_errors_and_readiness() {
    let clickhouse = PrivateClickHouse::start("observe_down");
    let env = TestEnv::with_clickhouse("observe_down", &clickhouse.url).await;
    let (relay, base) = env.spawn_observed_relay(observed_config()).await;
    publish(&env.client, &event(0)).await.unwrap();
    env.wait_delivered(1, Duration::from_secs(20)).await;
    readiness_until(&base, true).await;

    clickhouse.stop();
    for i in 1..=5 {
        publish(&env.client, &event(i)).await.unwrap();
    }
    let not_ready = readiness_until(&base, false).await;
    assert_eq!(not_ready["postgres"], "ok", "{not_ready}");
    assert_ne!(not_ready["sink"], "ok", "{not_ready}");
    let first = scrape_until(&base, "backlog of 5 never seen", |t| {
        series(t, "outbox_backlog_events") == Some(5.0)
            && series(t, "outbox_batches_total{outcome=\"retried\"}").unwrap_or(0.0) > 0.0
    })
    .await;
    let lag = series(&first, "outbox_lag_seconds").unwrap();
    assert!(lag > 0.0, "{first}");
    // The lag keeps rising while nothing is delivered.
    let later = scrape_until(&base, "lag never rose", |t| {
        series(t, "outbox_lag_seconds").unwrap() > lag + 0.3
    })
    .await;
    let sink_errors: f64 = later
        .lines()
        .filter(|l| l.starts_with("outbox_sink_errors_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(sink_errors > 0.0, "{later}");
    assert_eq!(
        series(&later, "outbox_events_delivered_total{sink=\"clickhouse\"}"),
        Some(1.0)
    );

    clickhouse.restart();
    readiness_until(&base, true).await;
    env.wait_delivered(6, Duration::from_secs(30)).await;
    scrape_until(&base, "backlog and lag never back to 0", |t| {
        series(t, "outbox_backlog_events") == Some(0.0)
            && series(t, "outbox_lag_seconds") == Some(0.0)
    })
    .await;
    relay.stop().await;
}

/// `--watch` refreshes until SIGTERM and then exits 0: the table after a clear-screen each
/// time, or with `--json` one object per line with no screen control in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_refreshes_until_stopped() {
    let env = TestEnv::new("status_watch").await;
    for i in 0..3 {
        publish(&env.client, &event(i)).await.unwrap();
    }
    let watch = |json: bool| {
        let mut cmd = bin();
        cmd.args(["status", "--watch", "--interval", "100ms"])
            .args(json.then_some("--json"))
            .envs(env.bin_env())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let (table, json) = (watch(false), watch(true));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let table = String::from_utf8(terminate(table).stdout).unwrap();
    let refreshes: Vec<&str> = table.split("\x1b[2J\x1b[H").skip(1).collect();
    assert!(refreshes.len() >= 3, "{table:?}");
    assert!(
        refreshes.iter().all(|r| r.contains("3 events")),
        "{table:?}"
    );
    let json = String::from_utf8(terminate(json).stdout).unwrap();
    assert!(!json.contains('\x1b'), "{json:?}");
    let objects: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(objects.len() >= 3, "{json}");
    assert!(objects.iter().all(|o| o["backlog"] == 3), "{json}");
}

/// A relay (re)started while ClickHouse is down waits for its sink, and meanwhile reports
/// what an operator alerts on: the backlog, the lag rising, sink errors, and not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_started_during_a_clickhouse_outage_reports_backlog_and_lag() {
    let clickhouse = PrivateClickHouse::start("observe_start_down");
    let env = TestEnv::with_clickhouse("observe_start_down", &clickhouse.url).await;
    for i in 0..4 {
        publish(&env.client, &event(i)).await.unwrap();
    }
    clickhouse.stop();
    let (relay, base) = env.spawn_observed_relay(observed_config()).await;
    let first = scrape_until(&base, "backlog of 4 never seen", |t| {
        series(t, "outbox_backlog_events") == Some(4.0)
            && series(
                t,
                "outbox_sink_errors_total{sink=\"clickhouse\",kind=\"unavailable\"}",
            )
            .unwrap_or(0.0)
                > 0.0
    })
    .await;
    let lag = series(&first, "outbox_lag_seconds").unwrap();
    assert!(lag > 0.0, "{first}");
    scrape_until(&base, "lag never rose", |t| {
        series(t, "outbox_lag_seconds").unwrap() > lag + 0.3
    })
    .await;
    let not_ready = readiness_until(&base, false).await;
    assert_eq!(not_ready["postgres"], "ok", "{not_ready}");
    assert_ne!(not_ready["sink"], "ok", "{not_ready}");

    clickhouse.restart();
    env.wait_delivered(4, Duration::from_secs(30)).await;
    readiness_until(&base, true).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_a_known_backlog() {
    let env = TestEnv::new("status").await;
    for i in 0..7 {
        publish(&env.client, &event(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = crate::harness::run(
        bin()
            .args(["status", "--json", "--interval", "100ms"])
            .envs(env.bin_env()),
    );
    assert_eq!(out.status.code(), Some(0), "{}", crate::harness::text(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["backlog"], 7, "{status}");
    assert_eq!(status["backlog_exact"], true);
    assert_eq!(status["dead_letters"], 0);
    assert_eq!(status["lag_over_max"], false);
    let lag = status["lag_seconds"].as_f64().unwrap();
    assert!((0.3..60.0).contains(&lag), "{status}");
    assert!(status["delivery_rate"].as_f64().unwrap() >= 0.0);

    // As a check: over the limit exits 3, and the table says so.
    let out = crate::harness::run(
        bin()
            .args(["status", "--interval", "10ms", "--max-lag", "100ms"])
            .envs(env.bin_env()),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("backlog") && text.contains("7 events"),
        "{text}"
    );
    assert!(text.contains("OVER"), "{text}");
    let out = crate::harness::run(
        bin()
            .args(["status", "--interval", "10ms", "--max-lag", "1h"])
            .envs(env.bin_env()),
    );
    assert_eq!(out.status.code(), Some(0), "{}", crate::harness::text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_batch_span_and_the_configuration() {
    let env = TestEnv::new("json_logs").await;
    let relay = bin()
        .arg("run")
        .envs(env.bin_env())
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    publish(&env.client, &event(0)).await.unwrap();
    env.wait_delivered(1, Duration::from_secs(20)).await;
    let out = terminate(relay);
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let config = lines
        .iter()
        .find(|l| l["fields"]["message"] == "configuration")
        .expect("the effective configuration is logged at start-up");
    assert!(config["fields"]["relay"]
        .as_str()
        .unwrap()
        .contains("batch_size: 1000"));
    let batch = lines
        .iter()
        .find(|l| l["fields"]["message"] == "batch delivered")
        .expect("a batch line");
    assert_eq!(batch["level"], "INFO");
    assert_eq!(batch["fields"]["count"], 1);
    assert_eq!(batch["span"]["name"], "batch", "{batch}");
    assert!(batch["timestamp"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_hung_health_check() {
    let clickhouse = PrivateClickHouse::start("observe_hang");
    let env = TestEnv::with_clickhouse("observe_hang", &clickhouse.url).await;
    let interval = Duration::from_secs(4);
    let relay = env.spawn_relay(RelayConfig {
        sample_interval: interval,
        ..relay_config()
    });
    relay.wait_listening().await;
    // The first sample runs at once; freeze ClickHouse before the second, which then hangs
    // in its ping for up to one interval.
    clickhouse.signal("STOP");
    tokio::time::sleep(interval + Duration::from_millis(1500)).await;
    let started = Instant::now();
    relay.stop().await;
    clickhouse.signal("CONT");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "stopped after {:?}",
        started.elapsed()
    );
}
