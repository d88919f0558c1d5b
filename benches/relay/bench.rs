//! The servers and the outbox a benchmark runs against: `scripts/services` in
//! `.services/bench`, a loaded backlog, the relay binary as a child process.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outbox_relay::config::ClickHouseConfig;

pub const SCHEMA: &str = "bench";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn services(args: &[&str]) -> String {
    let out = Command::new(root().join("scripts/services"))
        .args(args)
        .args(["--dir", root().join(".services/bench").to_str().unwrap()])
        .output()
        .expect("scripts/services runs");
    assert!(
        out.status.success(),
        "scripts/services failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Relay setups to compare, from the environment variable `var`: `;`-separated, each a
/// whitespace-separated list of `KEY=VALUE` settings for the relay (empty: the defaults;
/// `RELAY_BIN=path` runs another build, see [`Bench::relay_with`]).
pub fn variants(var: &str) -> Vec<Vec<(String, String)>> {
    std::env::var(var)
        .unwrap_or_default()
        .split(';')
        .map(|v| {
            v.split_whitespace()
                .map(|kv| {
                    let (k, v) = kv
                        .split_once('=')
                        .unwrap_or_else(|| panic!("{var}: KEY=VALUE, not {kv}"));
                    (k.to_owned(), v.to_owned())
                })
                .collect()
        })
        .collect()
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

pub struct Bench {
    pub database_url: String,
    pub ch: ClickHouseConfig,
    pub client: tokio_postgres::Client,
}

impl Bench {
    /// `n` events with ~200-byte contexts in one statement, then VACUUM ANALYZE so every
    /// measurement starts from the same table state.
    pub async fn load(&self, n: i64) {
        self.client
            .execute(
                "INSERT INTO event_log (type, environment, context)
                 SELECT 'user_created', 'Production', jsonb_build_object(
                     'id', g, 'email', 'user' || g || '@example.com', 'name', 'User ' || g,
                     'plan', 'pro', 'note', repeat('x', 120))
                 FROM generate_series(1, $1::bigint) g",
                &[&n],
            )
            .await
            .unwrap();
        self.client
            .batch_execute("VACUUM ANALYZE event_log")
            .await
            .unwrap();
        self.settle().await;
    }

    /// Waits (up to a minute) until ClickHouse has no merge running: the parts a previous
    /// phase inserted are merged in the background, and that CPU would otherwise be charged
    /// to whatever is measured next.
    pub async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let out = Command::new("curl")
                .args([
                    "-sS",
                    "--data-binary",
                    "SELECT count() FROM system.merges",
                    &self.ch.url,
                ])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).trim() == "0" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn pending(&self) -> i64 {
        self.client
            .query_one("SELECT count(*) FROM event_log", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Whether any event is left. Cheap on a big table, unlike count(*): the drain is not
    /// slowed by watching it.
    pub async fn any_left(&self) -> bool {
        !self
            .client
            .query("SELECT id FROM event_log ORDER BY id LIMIT 1", &[])
            .await
            .unwrap()
            .is_empty()
    }

    pub async fn wait_empty(&self) {
        while self.any_left().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn relay(&self) -> Child {
        self.relay_with(&[])
    }

    /// The relay binary with `env` added; `RELAY_BIN=path` in `env` runs another build
    /// instead (to compare two builds in one run, see `drain_only`).
    pub fn relay_with(&self, env: &[(&str, &str)]) -> Child {
        let bin = env
            .iter()
            .find(|(k, _)| *k == "RELAY_BIN")
            .map_or(env!("CARGO_BIN_EXE_outbox-relay"), |(_, v)| *v);
        Command::new(bin)
            .arg("run")
            .envs(env.iter().copied())
            .env("DATABASE_URL", &self.database_url)
            .env("CLICKHOUSE_URL", &self.ch.url)
            .env("CLICKHOUSE_DATABASE", &self.ch.database)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the relay starts")
    }

    pub fn clickhouse_inserts(&self) -> u64 {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--data-binary",
                "SELECT value FROM system.events WHERE event = 'InsertQuery'",
                &self.ch.url,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

pub fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

/// Peak resident set of a process so far, in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
