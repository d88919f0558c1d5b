//! A ClickHouse cluster: two local servers as two shards (`remote_servers`, no Keeper),
//! tables created on each node by `migrate`, inserts through a `Distributed` table.

use std::process::Stdio;
use std::time::{Duration, Instant};

use outbox_relay::{publish, NewEvent};
use serde_json::json;

use crate::harness::{bin, clickhouse_sql, run, terminate, text, PrivateClickHouse, TestEnv};

const CLUSTER: &str = "two_shards";

/// Two private servers that know each other as the shards of `two_shards`.
fn two_shards() -> (PrivateClickHouse, PrivateClickHouse) {
    let a = PrivateClickHouse::start("shard_a");
    let b = PrivateClickHouse::start("shard_b");
    let tcp = |s: &PrivateClickHouse| {
        std::fs::read_to_string(s.dir.join("clickhouse-tcp.port"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let replica = |port: String| {
        format!("<shard><replica><host>127.0.0.1</host><port>{port}</port></replica></shard>")
    };
    let xml = format!(
        "<remote_servers><{CLUSTER}>{}{}</{CLUSTER}></remote_servers>",
        replica(tcp(&a)),
        replica(tcp(&b))
    );
    for server in [&a, &b] {
        std::fs::write(server.dir.join("clickhouse-cluster.xml"), &xml).unwrap();
        server.stop();
        server.restart();
    }
    (a, b)
}

fn count(url: &str, sql: &str) -> u64 {
    clickhouse_sql(url)(sql)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sql} on {url}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_spread_over_two_shards_and_the_distributed_count_is_exact() {
    let (a, b) = two_shards();
    let env = TestEnv::unmigrated("cluster", &a.url).await;
    let cluster_env = || {
        let mut vars = env.bin_env();
        vars.push(("CLICKHOUSE_CLUSTER", CLUSTER.into()));
        vars.push(("CLICKHOUSE_CLUSTER_NODES", format!("{},{}", a.url, b.url)));
        vars
    };
    for _ in 0..2 {
        let out = run(bin().arg("migrate").envs(cluster_env()));
        assert!(out.status.success(), "migrate twice: {}", text(&out));
    }
    let db = &env.ch.database;
    for node in [&a.url, &b.url] {
        let engines = clickhouse_sql(node)(&format!(
            "SELECT name, engine FROM system.tables WHERE database = '{db}' ORDER BY name FORMAT TSV"
        ));
        assert_eq!(
            engines.trim(),
            "event_log\tDistributed\nevent_log_local\tReplacingMergeTree",
            "on {node}"
        );
    }

    let relay = bin()
        .arg("run")
        .envs(cluster_env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for i in 0..200 {
        publish(
            &env.client,
            &NewEvent {
                event_type: "sharded".into(),
                environment: "Local".into(),
                context: json!({ "i": i }),
            },
        )
        .await
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.pending().await > 0 {
        assert!(Instant::now() < deadline, "never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    terminate(relay);
    // Deleted from PostgreSQL only after the synchronous distributed insert: both shards
    // already hold their rows.
    let on_a = count(&a.url, &format!("SELECT count() FROM {db}.event_log_local"));
    let on_b = count(&b.url, &format!("SELECT count() FROM {db}.event_log_local"));
    eprintln!("FIGURES cluster: 200 events, shard a {on_a}, shard b {on_b}");
    assert_eq!(on_a + on_b, 200);
    assert!(
        on_a >= 50 && on_b >= 50,
        "spread by event_id: {on_a} / {on_b}"
    );
    for node in [&a.url, &b.url] {
        assert_eq!(
            count(node, &format!("SELECT count() FROM {db}.event_log")),
            200
        );
        assert_eq!(
            count(
                node,
                &format!("SELECT uniqExact(event_id) FROM {db}.event_log")
            ),
            200
        );
    }
    // The relay reads back through the Distributed table as well.
    assert_eq!(env.delivered().await.len(), 200);
}
