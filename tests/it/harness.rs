//! Real servers for the tests: started (or reused) through `scripts/services`, one
//! PostgreSQL schema and one ClickHouse database per test. A test that cannot get its
//! servers fails; it never skips.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use outbox_relay::config::{ClickHouseConfig, PostgresConfig, RelayConfig};
use outbox_relay::relay::Stats;
use outbox_relay::{ClickHouseSink, Event, EventFilter, Relay, Sink};
use tokio_util::sync::CancellationToken;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// URLs printed by `scripts/services start`.
#[derive(Debug, Clone)]
pub struct Urls {
    pub database_url: String,
    pub clickhouse_url: String,
}

/// Starts (or reuses) servers in `dir` with `scripts/services`; panics with its output on failure.
pub fn services(args: &[&str], dir: &PathBuf) -> String {
    let out = Command::new(root().join("scripts/services"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("scripts/services runs");
    assert!(
        out.status.success(),
        "scripts/services {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn parse_urls(text: &str) -> Urls {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("scripts/services printed no {key}: {text}"))
            .to_owned()
    };
    Urls {
        database_url: get("DATABASE_URL"),
        clickhouse_url: get("CLICKHOUSE_URL"),
    }
}

/// The servers shared by every test of this run.
pub fn shared() -> &'static Urls {
    static URLS: OnceLock<Urls> = OnceLock::new();
    URLS.get_or_init(|| parse_urls(&services(&["start"], &root().join(".services/test"))))
}

/// A server of a test's own (`postgres`, `clickhouse` or `zookeeper`), which it may stop,
/// signal and restart on the same URL.
pub struct PrivateServer {
    pub dir: PathBuf,
    pub url: String,
    kind: &'static str,
}

/// A private ClickHouse server.
pub type PrivateClickHouse = PrivateServer;

impl PrivateServer {
    fn start_kind(kind: &'static str, name: &str) -> Self {
        let dir = root().join(".services/private").join(name);
        let _ = Command::new(root().join("scripts/services"))
            .args(["destroy", "--dir"])
            .arg(&dir)
            .output();
        let out = services(&["start", "--only", kind], &dir);
        let key = match kind {
            "postgres" => "DATABASE_URL=",
            "zookeeper" => "ZOOKEEPER_ADDRESS=",
            _ => "CLICKHOUSE_URL=",
        };
        let url = out
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .expect("URL printed")
            .to_owned();
        PrivateServer { dir, url, kind }
    }

    /// A private ClickHouse server.
    pub fn start(name: &str) -> Self {
        Self::start_kind("clickhouse", name)
    }

    /// A private PostgreSQL server.
    pub fn postgres(name: &str) -> Self {
        Self::start_kind("postgres", &format!("{name}_pg"))
    }

    /// A private ZooKeeper; `url` is its `host:port`.
    pub fn zookeeper(name: &str) -> Self {
        Self::start_kind("zookeeper", &format!("{name}_zk"))
    }

    pub fn restart(&self) {
        services(&["start", "--only", self.kind], &self.dir);
    }

    pub fn stop(&self) {
        services(&["stop", "--only", self.kind], &self.dir);
    }

    pub fn signal(&self, signal: &str) {
        services(&["signal", signal, "--only", self.kind], &self.dir);
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/services"))
            .args(["destroy", "--dir"])
            .arg(&self.dir)
            .output();
    }
}

/// One test's outbox: its own PostgreSQL schema and ClickHouse database, migrated.
pub struct TestEnv {
    pub database_url: String,
    pub pg: PostgresConfig,
    pub ch: ClickHouseConfig,
    pub client: tokio_postgres::Client,
}

impl TestEnv {
    pub async fn new(name: &str) -> Self {
        let urls = shared().clone();
        Self::with_clickhouse(name, &urls.clickhouse_url).await
    }

    /// Like [`TestEnv::new`], with the sink on another ClickHouse server.
    pub async fn with_clickhouse(name: &str, clickhouse_url: &str) -> Self {
        Self::on(&shared().database_url, name, clickhouse_url).await
    }

    /// A migrated outbox on the given servers.
    pub async fn on(postgres_url: &str, name: &str, clickhouse_url: &str) -> Self {
        let env = Self::unmigrated_on(postgres_url, name, clickhouse_url).await;
        outbox_relay::migrate::migrate_postgres(&env.pg, true)
            .await
            .expect("migrate postgres");
        env.sink()
            .init()
            .await
            .expect("create the ClickHouse table");
        env
    }

    /// A fresh schema and database with nothing installed.
    pub async fn unmigrated(name: &str, clickhouse_url: &str) -> Self {
        Self::unmigrated_on(&shared().database_url, name, clickhouse_url).await
    }

    /// Like [`TestEnv::unmigrated`], on the PostgreSQL server at `postgres_url`.
    pub async fn unmigrated_on(postgres_url: &str, name: &str, clickhouse_url: &str) -> Self {
        let schema = format!("t_{name}");
        let admin = connect(postgres_url).await;
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .await
            .expect("create the test schema");
        let ch = clickhouse_sql(clickhouse_url);
        ch(&format!("DROP DATABASE IF EXISTS {schema}"));
        ch(&format!("CREATE DATABASE {schema}"));
        let database_url = format!("{postgres_url}?options=-csearch_path%3D{schema}");
        let pg = PostgresConfig::parse(&database_url).unwrap();
        let client = connect(&database_url).await;
        TestEnv {
            database_url,
            pg,
            ch: ClickHouseConfig {
                url: clickhouse_url.to_owned(),
                database: schema,
                user: None,
                password: None,
                cluster: None,
            },
            client,
        }
    }

    pub fn sink(&self) -> ClickHouseSink {
        ClickHouseSink::new(&self.ch).expect("sink")
    }

    /// Starts a relay in this process.
    pub fn spawn_relay(&self, config: RelayConfig) -> RunningRelay {
        let relay = Relay::new(self.pg.clone(), self.sink(), config);
        RunningRelay::start(relay, CancellationToken::new())
    }

    /// Starts a relay in this process with its HTTP endpoints on a free loopback port;
    /// returns the relay and the endpoints' base URL.
    pub async fn spawn_observed_relay(&self, config: RelayConfig) -> (RunningRelay, String) {
        let relay = Relay::new(self.pg.clone(), self.sink(), config);
        let listener = outbox_relay::observe::http::bind("127.0.0.1:0".parse().unwrap())
            .await
            .expect("a free loopback port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(outbox_relay::observe::http::serve(
            listener,
            relay.observer(),
            shutdown.clone(),
        ));
        (RunningRelay::start(relay, shutdown), base)
    }

    /// Everything in the ClickHouse table, duplicates included, ordered by id.
    pub async fn delivered(&self) -> Vec<Event> {
        self.sink()
            .query(&EventFilter::default())
            .await
            .expect("query ClickHouse")
    }

    pub async fn pending(&self) -> i64 {
        self.client
            .query_one("SELECT count(*) FROM event_log", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Waits until `n` outbox rows are free to lock (no claim holds them).
    pub async fn wait_unlocked(&self, n: i64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let free: i64 = self
                .client
                .query_one(
                    "SELECT count(*) FROM (SELECT id FROM event_log FOR UPDATE SKIP LOCKED) t",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if free == n {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {free} of {n} rows free");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until ClickHouse holds `n` rows and the outbox is empty.
    pub async fn wait_delivered(&self, n: usize, within: Duration) -> Vec<Event> {
        let deadline = Instant::now() + within;
        loop {
            let events = self.delivered().await;
            if events.len() >= n && self.pending().await == 0 {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} events delivered, {} pending after {within:?}",
                events.len(),
                self.pending().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Environment for running the binary against this test's outbox.
    pub fn bin_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.database_url.clone()),
            ("CLICKHOUSE_URL", self.ch.url.clone()),
            ("CLICKHOUSE_DATABASE", self.ch.database.clone()),
        ]
    }
}

pub struct RunningRelay {
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<outbox_relay::Result<()>>,
    pub stats: std::sync::Arc<Stats>,
    pub observer: std::sync::Arc<outbox_relay::observe::Observer>,
}

impl RunningRelay {
    fn start(relay: Relay<ClickHouseSink>, shutdown: CancellationToken) -> Self {
        RunningRelay {
            stats: relay.stats(),
            observer: relay.observer(),
            handle: tokio::spawn(relay.run(shutdown.clone())),
            shutdown,
        }
    }

    /// Waits until the relay's LISTEN is in place.
    pub async fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.observer.health.readiness().listener != "ok" {
            assert!(Instant::now() < deadline, "the relay never listened");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("relay stops within 30 s")
            .expect("relay task does not panic")
            .expect("relay ends without error");
    }
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL at {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// Runs one ClickHouse statement over HTTP with curl (keeps the tests' own dependencies small).
pub fn clickhouse_sql(url: &str) -> impl Fn(&str) -> String + '_ {
    move |sql: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--fail-with-body", "--data-binary", sql, url])
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "ClickHouse refused {sql}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A relay configuration for tests: defaults, but quick to notice failures.
pub fn relay_config() -> RelayConfig {
    RelayConfig {
        max_backoff: Duration::from_millis(500),
        shutdown_grace: Duration::from_secs(10),
        ..RelayConfig::default()
    }
}

/// The binary under test.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outbox-relay"));
    cmd.env_remove("DATABASE_URL")
        .env_remove("CLICKHOUSE_URL")
        .env_remove("CLICKHOUSE_DATABASE")
        .env_remove("EVENT_BATCH_SIZE")
        .env_remove("SENTRY_DSN")
        .env("RUST_LOG", "info");
    cmd
}

/// Waits until the relay has rolled back at least `n` batches.
pub async fn wait_for_failed_batches(stats: &Stats, n: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats
        .failed_batches
        .load(std::sync::atomic::Ordering::Relaxed)
        < n
    {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends SIGTERM to a relay process, and checks it exits 0. Returns its output.
pub fn terminate(child: std::process::Child) -> std::process::Output {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command to completion with no stdin.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("the binary runs")
}

/// Its stdout and stderr together.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A failure with exit code `code`, a message containing `needle`, and no panic.
pub fn assert_clean_failure(out: &Output, code: i32, needle: &str) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(code), "{all}");
    assert!(all.contains(needle), "expected '{needle}' in: {all}");
    assert!(!all.contains("panicked"), "{all}");
}
