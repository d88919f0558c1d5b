//! A user's run, black-box: the binary migrates and relays, producers write plain SQL from
//! another program (psql), and faults are injected (relay SIGKILLed and restarted, ClickHouse
//! stopped and restarted). Every committed event ends up in ClickHouse exactly once (after
//! FINAL), and no rolled-back event does.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{bin, clickhouse_sql, PrivateClickHouse, TestEnv};

const PRODUCERS: usize = 2;
const COMMITTED_PER_PRODUCER: usize = 3000;

fn start_relay(env: &TestEnv) -> Child {
    start_relay_with(env, 100)
}

fn start_relay_with(env: &TestEnv, batch_size: usize) -> Child {
    bin()
        .arg("run")
        .envs(env.bin_env())
        .env("EVENT_BATCH_SIZE", batch_size.to_string())
        .env("POLL_INTERVAL", "1s")
        .env("MAX_BACKOFF", "300ms")
        .env("RUST_LOG", "warn")
        .env("MAX_IN_FLIGHT", "4")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the relay starts")
}

/// A psql process committing `COMMITTED_PER_PRODUCER` events (function and plain INSERT,
/// alternately) and rolling back one ghost event every sixth transaction.
fn start_producer(env: &TestEnv, producer: usize) -> Child {
    let mut sql = String::from("\\set ON_ERROR_STOP on\n");
    for n in 0..COMMITTED_PER_PRODUCER {
        if n % 2 == 0 {
            sql += &format!("SELECT outbox_publish('committed', '{{\"p\": {producer}, \"n\": {n}}}', 'Production');\n");
        } else {
            sql += &format!(
                "BEGIN; INSERT INTO event_log (type, environment, context) VALUES ('committed', 'Production', '{{\"p\": {producer}, \"n\": {n}}}'); COMMIT;\n"
            );
        }
        if n % 6 == 0 {
            sql += &format!("BEGIN; SELECT outbox_publish('ghost', '{{\"p\": {producer}, \"n\": {n}}}'); ROLLBACK;\n");
        }
    }
    let mut child = Command::new("psql")
        .args(["-q", "-X", &env.database_url])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs");
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || stdin.write_all(sql.as_bytes()));
    child
}

fn kill(child: &mut Child) {
    child.kill().expect("SIGKILL the relay");
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_event_arrives_once_through_faults() {
    let clickhouse = PrivateClickHouse::start("blackbox");
    let env = TestEnv::unmigrated("blackbox", &clickhouse.url).await;
    let out = bin().arg("migrate").envs(env.bin_env()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    clickhouse_sql(&clickhouse.url)(&format!(
        "CREATE MATERIALIZED VIEW {db}.deliveries ENGINE = MergeTree() ORDER BY event_id AS SELECT event_id FROM {db}.event_log",
        db = env.ch.database
    ));
    let mut relay = start_relay(&env);
    let producers: Vec<Child> = (0..PRODUCERS).map(|p| start_producer(&env, p)).collect();

    // Faults while the producers write.
    tokio::time::sleep(Duration::from_millis(700)).await;
    kill(&mut relay);
    relay = start_relay(&env);
    tokio::time::sleep(Duration::from_millis(500)).await;
    clickhouse.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    clickhouse.restart();
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(&mut relay);
    relay = start_relay(&env);

    for producer in producers {
        let out = producer.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let total = PRODUCERS * COMMITTED_PER_PRODUCER;
    let ch = clickhouse_sql(&clickhouse.url);
    let db = &env.ch.database;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let distinct: usize = ch(&format!("SELECT uniqExact(event_id) FROM {db}.event_log"))
            .trim()
            .parse()
            .unwrap();
        if distinct >= total && env.pending().await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{distinct} of {total} delivered, {} pending",
            env.pending().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    crate::harness::terminate(relay);

    let ghosts = ch(&format!(
        "SELECT count() FROM {db}.event_log WHERE event_type = 'ghost'"
    ));
    assert_eq!(ghosts.trim(), "0", "rolled-back events must never arrive");
    let rows: usize = ch(&format!("SELECT count() FROM {db}.event_log"))
        .trim()
        .parse()
        .unwrap();
    let final_rows = ch(&format!("SELECT count() FROM {db}.event_log FINAL"));
    assert_eq!(
        final_rows.trim(),
        total.to_string(),
        "exactly once after FINAL"
    );
    // Every (producer, n) pair, once.
    let pairs = ch(&format!(
        "SELECT uniqExact(event_context) FROM {db}.event_log"
    ));
    assert_eq!(pairs.trim(), total.to_string());
    eprintln!("FIGURES blackbox: {total} committed, {rows} rows before FINAL ({} duplicates from SIGKILL), {total} after", rows - total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_repeatedly_mid_stream_loses_nothing() {
    use rand::Rng;
    let env = TestEnv::new("sigkill").await;
    let total = 100_000usize;
    env.client
        .batch_execute(&format!(
            "INSERT INTO event_log (type, environment, context)
             SELECT 'bulk', 'Local', jsonb_build_object('i', g, 'pad', repeat('x', 150)) FROM generate_series(1, {total}) g"
        ))
        .await
        .unwrap();
    // Every inserted block also lands here, un-merged: the true count of deliveries, which
    // background merges of the ReplacingMergeTree would otherwise hide.
    clickhouse_sql(&env.ch.url)(&format!(
        "CREATE MATERIALIZED VIEW {db}.deliveries ENGINE = MergeTree() ORDER BY event_id AS SELECT event_id FROM {db}.event_log",
        db = env.ch.database
    ));
    let mut relay = start_relay_with(&env, 1000);
    let mut kills = 0;
    for _ in 0..6 {
        let pause = rand::rng().random_range(100..300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if env.pending().await == 0 {
            break;
        }
        kill(&mut relay);
        kills += 1;
        relay = start_relay_with(&env, 1000);
    }
    let restarted = Instant::now();
    let ch = clickhouse_sql(&env.ch.url);
    let db = &env.ch.database;
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.pending().await > 0 {
        assert!(
            Instant::now() < deadline,
            "{} still pending",
            env.pending().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovery = restarted.elapsed();
    crate::harness::terminate(relay);

    let rows: usize = ch(&format!("SELECT count() FROM {db}.deliveries"))
        .trim()
        .parse()
        .unwrap();
    let distinct: usize = ch(&format!("SELECT uniqExact(event_id) FROM {db}.deliveries"))
        .trim()
        .parse()
        .unwrap();
    let final_rows: usize = ch(&format!("SELECT count() FROM {db}.event_log FINAL"))
        .trim()
        .parse()
        .unwrap();
    eprintln!(
        "FIGURES sigkill: {kills} kills, {total} written, {rows} rows in ClickHouse before FINAL ({} duplicates), {final_rows} after FINAL, drained {:.0} ms after the last restart",
        rows - distinct,
        recovery.as_secs_f64() * 1e3
    );
    assert!(
        kills >= 1,
        "the relay drained before the first kill; the test proved nothing"
    );
    assert_eq!(distinct, total, "every committed event arrived");
    assert_eq!(final_rows, total, "duplicates collapse under FINAL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_logged_once_not_per_retry() {
    let clickhouse = PrivateClickHouse::start("log_once");
    let env = TestEnv::with_clickhouse("log_once", &clickhouse.url).await;
    let relay = bin()
        .arg("run")
        .envs(env.bin_env())
        .env("MAX_BACKOFF", "200ms")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    clickhouse.stop();
    let client = &env.client;
    client
        .execute("SELECT outbox_publish('during_outage', '{}')", &[])
        .await
        .unwrap();
    // About 3 s of outage at a 200 ms backoff cap: a dozen or more failed attempts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    clickhouse.restart();
    env.wait_delivered(1, Duration::from_secs(20)).await;
    let out = crate::harness::terminate(relay);
    let logs = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let message = |v: &serde_json::Value| v["fields"]["message"].as_str().unwrap_or("").to_owned();
    let errors: Vec<String> = lines
        .iter()
        .filter(|v| v["level"] == "ERROR")
        .map(message)
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "one ERROR for the whole outage: {errors:?}"
    );
    assert!(errors[0].starts_with("delivery is failing"), "{errors:?}");
    let recovered = lines
        .iter()
        .filter(|v| message(v) == "delivery recovered")
        .count();
    assert_eq!(recovered, 1, "{logs}");
    let failures = lines
        .iter()
        .find(|v| message(v) == "delivery recovered")
        .and_then(|v| v["fields"]["failures"].as_u64())
        .unwrap();
    assert!(failures >= 3, "the relay retried {failures} times");
}
