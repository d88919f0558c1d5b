//! The binary as a user runs it: subcommands, exit codes, messages.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::{assert_clean_failure, bin, run, text, TestEnv};

#[test]
fn help_documents_every_option_and_env_var() {
    let out = run(bin().args(["run", "--help"]));
    let help = text(&out);
    for var in [
        "DATABASE_URL",
        "CLICKHOUSE_URL",
        "CLICKHOUSE_DATABASE",
        "CLICKHOUSE_USER",
        "CLICKHOUSE_PASSWORD",
        "EVENT_BATCH_SIZE",
        "POLL_INTERVAL",
        "MAX_IN_FLIGHT",
        "INSERT_TIMEOUT",
        "SHUTDOWN_GRACE",
        "SENTRY_DSN",
        "LOG_FORMAT",
        "CLAIMS_PER_INSERT",
        "MAX_INSERT_BYTES",
        "METRICS_ADDR",
        "SAMPLE_INTERVAL",
        "SENTRY_ENVIRONMENT",
        "SENTRY_TRACES_SAMPLE_RATE",
        "OUTBOX_TABLE",
        "OUTBOX_CONTEXT_COLUMN",
        "SINKS",
        "ARCHIVE_DATABASE_URL",
        "ARCHIVE_TABLE",
    ] {
        assert!(help.contains(var), "--help lacks {var}: {help}");
    }
    let out = run(bin()
        .args(["run", "--help"])
        .env("CLICKHOUSE_PASSWORD", "hunter2")
        .env("DATABASE_URL", "postgresql://u:hunter3@h/db")
        .env("ARCHIVE_DATABASE_URL", "postgresql://u:hunter4@h/audit"));
    assert!(!text(&out).contains("hunter"), "secrets leak into --help");
}

#[test]
fn bad_config_values_name_the_variable() {
    let out = run(bin()
        .arg("run")
        .env("DATABASE_URL", "postgresql://localhost/db")
        .env("CLICKHOUSE_URL", "http://localhost:8123")
        .env("EVENT_BATCH_SIZE", "many"));
    assert_clean_failure(&out, 2, "EVENT_BATCH_SIZE");
    let out = run(bin()
        .arg("run")
        .env("DATABASE_URL", "postgresql://localhost/db")
        .env("CLICKHOUSE_URL", "http://localhost:8123")
        .env("POLL_INTERVAL", "often"));
    assert_clean_failure(&out, 2, "POLL_INTERVAL");
    let out = run(bin()
        .arg("run")
        .env("CLICKHOUSE_URL", "http://localhost:8123"));
    assert_clean_failure(&out, 2, "DATABASE_URL");
    let out = run(bin().args(["run", "--no-such-flag"]));
    assert_clean_failure(&out, 2, "--no-such-flag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_give_a_clear_error() {
    let env = TestEnv::new("unreachable").await;
    let out = run(bin().arg("migrate").envs(env.bin_env()).env(
        "DATABASE_URL",
        "postgresql://postgres:sekret@127.0.0.1:1/postgres",
    ));
    assert_clean_failure(
        &out,
        1,
        "cannot connect to PostgreSQL at postgresql://postgres:***@127.0.0.1:1/postgres",
    );
    assert!(!text(&out).contains("sekret"));
    let out = run(bin()
        .arg("migrate")
        .envs(env.bin_env())
        .env("CLICKHOUSE_URL", "http://127.0.0.1:1"));
    assert_clean_failure(&out, 1, "ClickHouse at http://127.0.0.1:1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_twice_changes_nothing_and_concurrent_migrates_succeed() {
    let env = TestEnv::unmigrated("migrate", &crate::harness::shared().clickhouse_url).await;
    // Two at once on an empty schema: the advisory lock serialises them.
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            bin()
                .args(["migrate", "--demo"])
                .envs(env.bin_env())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children.drain(..) {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let snapshot = || async {
        let rows = env
            .client
            .query(
                "SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
                   SELECT pg_get_functiondef(p.oid) || p.oid::text AS x FROM pg_proc p
                     JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = current_schema()
                   UNION ALL SELECT pg_get_triggerdef(t.oid) || t.oid::text FROM pg_trigger t WHERE NOT t.tgisinternal
                     AND t.tgrelid = 'event_log'::regclass
                   UNION ALL SELECT c.relname || c.oid::text FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema()
                 ) s",
                &[],
            )
            .await
            .unwrap();
        let pg: String = rows[0].get(0);
        let ch = crate::harness::clickhouse_sql(&env.ch.url)(&format!(
            "SHOW CREATE TABLE {}.event_log",
            env.ch.database
        ));
        (pg, ch)
    };
    // The delete-heavy queue table gets its own autovacuum settings (see schema.sql).
    let options: Vec<String> = env
        .client
        .query_one(
            "SELECT reloptions FROM pg_class WHERE oid = 'event_log'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for expected in [
        "autovacuum_vacuum_scale_factor=0",
        "autovacuum_vacuum_threshold=10000",
        "autovacuum_vacuum_cost_delay=0",
    ] {
        assert!(options.iter().any(|o| o == expected), "{options:?}");
    }
    let before = snapshot().await;
    let out = run(bin().args(["migrate", "--demo"]).envs(env.bin_env()));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        snapshot().await,
        before,
        "a second migrate changed the schema"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_user_writes_user_and_event_atomically() {
    let env = TestEnv::new("create_user").await;
    let out = run(bin()
        .args(["create-user", "--email", "ann@example.com", "--name", "Ann"])
        .envs(env.bin_env()));
    assert!(out.status.success(), "{}", text(&out));
    let out = run(bin()
        .args([
            "create-user",
            "--email",
            "ann@example.com",
            "--name",
            "Other",
        ])
        .envs(env.bin_env()));
    assert_clean_failure(&out, 1, "a user with email ann@example.com already exists");

    let users: i64 = env
        .client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 1);
    let rows = env
        .client
        .query("SELECT type, context FROM event_log", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the failed create-user wrote no event");
    assert_eq!(rows[0].get::<_, String>(0), "user_created");
    let context: serde_json::Value = rows[0].get(1);
    assert_eq!(context["email"], "ann@example.com");
    assert_eq!(context["name"], "Ann");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_rejects_invalid_json_and_writes_nothing() {
    let env = TestEnv::new("emit").await;
    let out = run(bin()
        .args(["emit", "--type", "t", "--context", "{not json"])
        .envs(env.bin_env()));
    assert_clean_failure(&out, 2, "--context");
    assert_eq!(env.pending().await, 0);
    let out = run(bin()
        .args([
            "emit",
            "--type",
            "t",
            "--context",
            "{\"ok\": true}",
            "--environment",
            "Production",
        ])
        .envs(env.bin_env()));
    assert!(out.status.success(), "{}", text(&out));
    let row = env
        .client
        .query_one("SELECT environment, context::text FROM event_log", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Production");
    assert_eq!(row.get::<_, String>(1), "{\"ok\": true}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_in_flight_batches_and_exits_zero() {
    let env = TestEnv::new("sigterm").await;
    env.client
        .batch_execute("INSERT INTO event_log (type, environment, context) SELECT 'bulk', 'Local', jsonb_build_object('i', g) FROM generate_series(1, 20000) g")
        .await
        .unwrap();
    let child = bin()
        .arg("run")
        .envs(env.bin_env())
        .env("EVENT_BATCH_SIZE", "500")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until delivery is under way, then ask it to stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env.pending().await == 20000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the relay never started delivering"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let out = crate::harness::terminate(child);
    let log = text(&out);
    assert!(log.contains("SIGTERM received"), "{log}");
    // Whatever left PostgreSQL is in ClickHouse, and nothing else is.
    let pending = env.pending().await as usize;
    let delivered = env.delivered().await;
    assert_eq!(
        delivered.len() + pending,
        20000,
        "no event lost or duplicated"
    );
}

/// A one-shot HTTP endpoint standing in for Sentry: records the requests it receives.
fn fake_sentry() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 65536];
            // Read headers, then as much body as Content-Length says.
            loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
            let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
        }
    });
    (port, rx)
}

#[test]
fn errors_go_to_sentry_when_a_dsn_is_set() {
    let (port, requests) = fake_sentry();
    let out = run(bin()
        .arg("emit")
        .args(["--type", "t"])
        .env("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/postgres")
        .env(
            "SENTRY_DSN",
            format!("http://publickey@127.0.0.1:{port}/42"),
        ));
    assert_clean_failure(&out, 1, "cannot connect to PostgreSQL");
    let request = requests
        .recv_timeout(Duration::from_secs(10))
        .expect("the error reached the fake Sentry");
    assert!(request.starts_with("POST /api/42/envelope/"), "{request}");
    assert!(
        request.contains("cannot connect to PostgreSQL"),
        "{request}"
    );
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let out = run(bin()
        .arg("emit")
        .args(["--type", "t"])
        .env("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/postgres")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut objects = 0;
    for line in stderr.lines().filter(|l| !l.starts_with("outbox-relay: ")) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value.get("timestamp").is_some() && value.get("level").is_some(),
            "{line}"
        );
        objects += 1;
    }
    assert!(objects > 0, "no log lines: {stderr}");
    let out = run(bin()
        .arg("emit")
        .args(["--type", "t"])
        .env("DATABASE_URL", "postgresql://h/db")
        .env("LOG_FORMAT", "yaml"));
    assert_clean_failure(&out, 2, "LOG_FORMAT");
}
