//! A ClickHouse cluster: two local servers as two shards (`remote_servers`), inserts
//! through a `Distributed` table. Without Keeper `migrate` creates plain local tables on
//! each node (`CLICKHOUSE_CLUSTER_NODES`); with a ZooKeeper it creates replicated ones
//! through one `ON CLUSTER` statement.

use std::process::Stdio;
use std::time::{Duration, Instant};

use outbox_relay::{publish, NewEvent};
use serde_json::json;

use crate::harness::{
    bin, clickhouse_sql, run, terminate, text, PrivateClickHouse, PrivateServer, TestEnv,
};

const CLUSTER: &str = "two_shards";

/// Two private servers that know each other as the shards of `two_shards`; with a
/// `zookeeper`, also the distributed DDL queue and the `{shard}` / `{replica}` macros that
/// replicated tables name their paths with.
fn two_shards(
    name: &str,
    zookeeper: Option<&PrivateServer>,
) -> (PrivateClickHouse, PrivateClickHouse) {
    let a = PrivateClickHouse::start(&format!("{name}_a"));
    let b = PrivateClickHouse::start(&format!("{name}_b"));
    let tcp = |s: &PrivateClickHouse| {
        std::fs::read_to_string(s.dir.join("clickhouse-tcp.port"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let replica = |port: String| {
        format!("<shard><replica><host>127.0.0.1</host><port>{port}</port></replica></shard>")
    };
    let remote_servers = format!(
        "<remote_servers><{CLUSTER}>{}{}</{CLUSTER}></remote_servers>",
        replica(tcp(&a)),
        replica(tcp(&b))
    );
    for (shard, server) in [(1, &a), (2, &b)] {
        let keeper = zookeeper.map_or(String::new(), |zk| {
            let (host, port) = zk.url.split_once(':').unwrap();
            format!(
                "<zookeeper><node><host>{host}</host><port>{port}</port></node></zookeeper>
                 <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
                 <macros><shard>{shard}</shard><replica>replica_{shard}</replica></macros>"
            )
        });
        std::fs::write(
            server.dir.join("clickhouse-cluster.xml"),
            format!("{remote_servers}{keeper}"),
        )
        .unwrap();
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
    let (a, b) = two_shards("shard", None);
    spread_over(&a, &b, "cluster", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cluster_ddl_creates_replicated_shards_through_zookeeper() {
    let zookeeper = PrivateServer::zookeeper("cluster_keeper");
    let (a, b) = two_shards("rshard", Some(&zookeeper));
    spread_over(&a, &b, "cluster_keeper", true).await;
}

/// Migrates the cluster's tables (twice: idempotent), relays 200 events through the
/// `Distributed` table, and checks both shards share them and every count is exact.
/// `on_cluster`: one `ON CLUSTER` DDL through Keeper and replicated local tables; else
/// the DDL on each node (`CLICKHOUSE_CLUSTER_NODES`) and plain ones.
async fn spread_over(a: &PrivateClickHouse, b: &PrivateClickHouse, name: &str, on_cluster: bool) {
    let env = TestEnv::unmigrated(name, &a.url).await;
    let cluster_env = || {
        let mut vars = env.bin_env();
        vars.push(("CLICKHOUSE_CLUSTER", CLUSTER.into()));
        if !on_cluster {
            vars.push(("CLICKHOUSE_CLUSTER_NODES", format!("{},{}", a.url, b.url)));
        }
        vars
    };
    let local_engine = if on_cluster {
        "ReplicatedReplacingMergeTree"
    } else {
        "ReplacingMergeTree"
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
            format!("event_log\tDistributed\nevent_log_local\t{local_engine}"),
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
    eprintln!("FIGURES {name}: 200 events, shard a {on_a}, shard b {on_b}");
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
