//! Security: credentials stay out of logs and errors, wrong credentials fail clearly, TLS to
//! both servers, and the least-privilege roles.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use outbox_relay::{publish, NewEvent};
use serde_json::json;

use crate::harness::{assert_clean_failure, bin, relay_config, run, text, TestEnv};

fn event(i: i32) -> NewEvent {
    NewEvent {
        event_type: "secure".into(),
        environment: "Local".into(),
        context: json!({ "i": i }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_clickhouse_credentials_are_named_and_not_echoed() {
    let env = TestEnv::unmigrated("credentials", &crate::harness::shared().clickhouse_url).await;
    let out = run(bin()
        .arg("migrate")
        .envs(env.bin_env())
        .env("CLICKHOUSE_USER", "relay")
        .env("CLICKHOUSE_PASSWORD", "not-the-password"));
    assert_clean_failure(&out, 1, "relay");
    let all = text(&out);
    assert!(all.to_lowercase().contains("password"), "{all}");
    assert!(!all.contains("not-the-password"), "{all}");
    // The right password works (scripts/services creates relay / relay-secret).
    let out = run(bin()
        .arg("migrate")
        .envs(env.bin_env())
        .env("CLICKHOUSE_USER", "relay")
        .env("CLICKHOUSE_PASSWORD", "relay-secret"));
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_postgres_password_is_named_and_not_echoed() {
    let env = TestEnv::new("pg_password").await;
    // scripts/services makes this one role authenticate with a password.
    env.client
        .batch_execute(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'outbox_password_test') THEN
                 CREATE ROLE outbox_password_test LOGIN PASSWORD 'right-password';
               END IF;
             END $$",
        )
        .await
        .unwrap();
    let url = crate::harness::shared().database_url.replacen(
        "postgres@",
        "outbox_password_test:wrong-password@",
        1,
    );
    let out = run(bin()
        .args(["emit", "--type", "t"])
        .env("DATABASE_URL", &url));
    assert_clean_failure(
        &out,
        1,
        "password authentication failed for user \"outbox_password_test\"",
    );
    assert!(!text(&out).contains("wrong-password"), "{}", text(&out));
    assert!(
        text(&out).contains("outbox_password_test:***@"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_the_logs() {
    let env = TestEnv::new("secrets").await;
    let database_url = env
        .database_url
        .replacen("postgres@", "postgres:pg-secret-1@", 1);
    let child = bin()
        .arg("run")
        .envs(env.bin_env())
        .env("DATABASE_URL", &database_url)
        .env("CLICKHOUSE_USER", "relay")
        .env("CLICKHOUSE_PASSWORD", "relay-secret")
        .env("SENTRY_DSN", "http://sentry-secret-key@127.0.0.1:9/1")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    outbox_relay::publish(
        &env.client,
        &outbox_relay::NewEvent {
            event_type: "t".into(),
            environment: "Local".into(),
            context: serde_json::json!({}),
        },
    )
    .await
    .unwrap();
    env.wait_delivered(1, Duration::from_secs(20)).await;
    let logs = String::from_utf8_lossy(&crate::harness::terminate(child).stderr).into_owned();
    assert!(
        logs.contains("configuration"),
        "the effective configuration is logged: {logs}"
    );
    for secret in ["pg-secret-1", "relay-secret", "sentry-secret-key"] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_privilege_relay_role_is_enough_and_no_more() {
    let env = TestEnv::new("roles").await;
    env.client
        .batch_execute(include_str!("../../sql/postgres/roles.sql"))
        .await
        .unwrap();
    // A producer that holds only outbox_producer.
    env.client
        .batch_execute("DROP ROLE IF EXISTS t_roles_app; CREATE ROLE t_roles_app LOGIN IN ROLE outbox_producer")
        .await
        .unwrap();
    let urls = crate::harness::shared();
    let as_role = |role: &str| {
        let url = urls
            .database_url
            .replacen("postgres@", &format!("{role}@"), 1);
        format!("{url}?options=-csearch_path%3Dt_roles")
    };
    let producer = crate::harness::connect(&as_role("t_roles_app")).await;
    producer
        .execute("SELECT outbox_publish('via_function', '{}')", &[])
        .await
        .unwrap();
    producer
        .execute("INSERT INTO event_log (type, environment, context) VALUES ('via_insert', 'Local', '{}')", &[])
        .await
        .unwrap();
    let denied = producer
        .query("SELECT * FROM event_log", &[])
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );

    // The relay, connected as outbox_relay, delivers and deletes.
    let relay_url = as_role("outbox_relay");
    let pg = outbox_relay::config::PostgresConfig::parse(&relay_url).unwrap();
    let relay = outbox_relay::Relay::new(pg, env.sink(), relay_config());
    let stats = relay.stats();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(relay.run(shutdown.clone()));
    env.wait_delivered(2, Duration::from_secs(20)).await;
    shutdown.cancel();
    handle.await.unwrap().unwrap();
    assert_eq!(stats.failed_batches.load(Ordering::Relaxed), 0);
    let relay_client = crate::harness::connect(&as_role("outbox_relay")).await;
    let denied = relay_client
        .execute(
            "INSERT INTO event_log (type, environment) VALUES ('x', 'y')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_both_servers_with_a_private_ca() {
    // Private servers with TLS (scripts/services --tls): PostgreSQL with ssl=on, ClickHouse
    // with an https port, both certified by a throwaway CA.
    let dir = crate::harness::root().join(".services/private/tls");
    let _ = std::process::Command::new(crate::harness::root().join("scripts/services"))
        .args(["destroy", "--dir"])
        .arg(&dir)
        .output();
    let out = crate::harness::services(&["start", "--tls"], &dir);
    let get = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap()
            .to_owned()
    };
    let (pg_url, https_url, ca) = (
        get("DATABASE_URL="),
        get("CLICKHOUSE_HTTPS_URL="),
        get("TLS_CA="),
    );
    let env = TestEnv::unmigrated_on(&pg_url, "tls", &get("CLICKHOUSE_URL=")).await;
    let tls_url = format!("{}&sslmode=require&sslrootcert={ca}", env.database_url);

    // Without the CA the certificates cannot be verified: a clear error, nothing written.
    let out = crate::harness::bin()
        .args(["migrate"])
        .envs(env.bin_env())
        .env(
            "DATABASE_URL",
            tls_url.replace(&format!("&sslrootcert={ca}"), ""),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("cannot connect to PostgreSQL")
            && text.to_lowercase().contains("certificate"),
        "{text}"
    );

    // With it (sslrootcert for PostgreSQL, SSL_CERT_FILE for ClickHouse), migrate and run work.
    let tls_env = |cmd: &mut std::process::Command| {
        cmd.envs(env.bin_env())
            .env("DATABASE_URL", &tls_url)
            .env("CLICKHOUSE_URL", &https_url)
            .env("SSL_CERT_FILE", &ca);
    };
    let mut migrate = crate::harness::bin();
    migrate.arg("migrate");
    tls_env(&mut migrate);
    let out = migrate.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = crate::harness::bin();
    run.arg("run").stderr(std::process::Stdio::piped());
    tls_env(&mut run);
    let relay = run.spawn().unwrap();
    publish(&env.client, &event(1)).await.unwrap();
    env.wait_delivered(1, Duration::from_secs(20)).await;
    let encrypted: i64 = env
        .client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name LIKE 'outbox-relay/%' AND s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "the relay's sessions use TLS");
    crate::harness::terminate(relay);
    crate::harness::services(&["destroy"], &dir);
}
