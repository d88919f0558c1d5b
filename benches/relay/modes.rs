//! The focused modes: `--long-drain`, `--drain-only`, `--sustained`, `--scaling`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::{connect, peak_rss_mib, stop, variants, Bench};
use crate::measures::{raw_drain, raw_drain_rate};

/// `-- --long-drain --events 1000000`: one long backlog through the relay, reporting the
/// drain rate per tenth of the backlog (it must not decay as dead tuples pile up) and the
/// relay's peak RSS (it must not grow with the backlog).
pub async fn long_drain(b: &Bench, events: i64) {
    b.load(events).await;
    let relay = b.relay();
    let pid = relay.id();
    let step = events / 10;
    let mut next = events - step;
    let mut last = Instant::now();
    let started = last;
    let mut peak = 0.0f64;
    // count(*) every 250 ms: coarse enough not to slow the drain much.
    println!("| backlog left | rows/s over the last {step} | relay peak RSS so far |");
    println!("|---|---|---|");
    loop {
        let left = b.pending().await;
        peak = peak.max(peak_rss_mib(pid));
        if left <= next {
            println!(
                "| {left} | {:.0} | {peak:.1} MiB |",
                step as f64 / last.elapsed().as_secs_f64()
            );
            last = Instant::now();
            if left == 0 {
                break;
            }
            next = (next - step).max(0);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "\n{events} events drained at {:.0} rows/s overall; relay peak RSS {peak:.1} MiB",
        events as f64 / started.elapsed().as_secs_f64()
    );
    let row = b
        .client
        .query_one(
            "SELECT n_dead_tup, autovacuum_count FROM pg_stat_user_tables WHERE relid = 'event_log'::regclass",
            &[],
        )
        .await
        .unwrap();
    println!(
        "event_log after the drain: {} dead tuples, {} autovacuum runs during the bench",
        row.get::<_, i64>(0),
        row.get::<_, i64>(1)
    );
    stop(relay);
}

/// `-- --drain-only`: measures 1 and 2 alone, three times alternating, for quick
/// comparisons while optimising (relay settings come from the environment, e.g.
/// `EVENT_BATCH_SIZE=5000 cargo bench --bench relay -- --drain-only`).
///
/// `DRAIN_VARIANTS="A=1;A=2 B=3"` drains once per variant in each round (the variants'
/// settings added to the relay's environment), so settings are compared within one round
/// on the same servers; an empty variant is the defaults. `RELAY_BIN=path` in a variant
/// runs that build instead, to compare a change against the build before it.
pub async fn drain_only(b: &mut Bench, events: i64) {
    let variants = variants("DRAIN_VARIANTS");
    let names: Vec<String> = variants
        .iter()
        .map(|v| {
            let name: Vec<String> = v.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if name.is_empty() {
                "relay".to_owned()
            } else {
                name.join(" ")
            }
        })
        .collect();
    println!(
        "| round | raw rows/s | {} |",
        names
            .iter()
            .map(|n| format!("{n} rows/s (ratio)"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|{}", "---|".repeat(names.len()));
    for round in 1..=3 {
        b.load(events).await;
        // With `PERF_OUT=file`, the first raw drain is profiled into `file.raw`, to compare.
        let perf = perf_record(round == 1, ".raw");
        let started = Instant::now();
        let drained = raw_drain(&mut b.client).await;
        let raw_rate = drained as f64 / started.elapsed().as_secs_f64();
        perf_stop(perf);
        let mut cells = Vec::new();
        for (i, variant) in variants.iter().enumerate() {
            b.load(events).await;
            let env: Vec<(&str, &str)> = variant
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let started = Instant::now();
            let relay = b.relay_with(&env);
            // `PERF_OUT=file`: profile the whole machine (relay, PostgreSQL, ClickHouse)
            // during the first relay drain; `perf report -i file --sort comm,dso` says
            // where time goes.
            let perf = perf_record(round == 1 && i == 0, "");
            b.wait_empty().await;
            let relay_rate = events as f64 / started.elapsed().as_secs_f64();
            perf_stop(perf);
            stop(relay);
            cells.push(format!("{relay_rate:.0} ({:.2}×)", relay_rate / raw_rate));
        }
        println!("| {round} | {raw_rate:.0} | {} |", cells.join(" | "));
    }
}

/// Starts `perf record` of the whole machine into `$PERF_OUT` + `suffix` when `PERF_OUT`
/// is set and `when` holds.
fn perf_record(when: bool, suffix: &str) -> Option<Child> {
    let out = std::env::var("PERF_OUT").ok().filter(|_| when)?;
    Some(
        Command::new("perf")
            .args(["record", "-a", "-g", "-o", &format!("{out}{suffix}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf starts"),
    )
}

fn perf_stop(perf: Option<Child>) {
    if let Some(perf) = perf {
        Command::new("kill")
            .args(["-INT", &perf.id().to_string()])
            .status()
            .unwrap();
        perf.wait_with_output().unwrap();
    }
}

/// `-- --sustained`: one relay (defaults) under producers offering 5,000 to 80,000 events/s
/// (4 connections, transactions of 100 events) for 10 s each: what it delivers, and the
/// worst lag seen (the age of the oldest pending event, sampled every 250 ms).
pub async fn sustained(b: &Bench) {
    let sample_sql = outbox_relay::outbox::Outbox::default().statements().sample;
    println!("| offered events/s | delivered events/s | backlog after 10 s | worst lag |");
    println!("|---|---|---|---|");
    for offered in [5_000u32, 20_000, 40_000, 80_000] {
        b.settle().await;
        let relay = b.relay();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let duration = Duration::from_secs(10);
        let tx_per_s = offered / 100;
        let producers: Vec<_> = (0..4)
            .map(|_| {
                let url = b.database_url.clone();
                tokio::spawn(async move {
                    let client = connect(&url).await;
                    let mut tick =
                        tokio::time::interval(Duration::from_secs_f64(4.0 / f64::from(tx_per_s)));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    let started = Instant::now();
                    let mut written = 0u64;
                    while started.elapsed() < duration {
                        tick.tick().await;
                        client
                            .execute(
                                "INSERT INTO event_log (type, environment, context)
                                 SELECT 'load', 'Production', jsonb_build_object('i', g, 'note', repeat('x', 150))
                                 FROM generate_series(1, 100) g",
                                &[],
                            )
                            .await
                            .unwrap();
                        written += 100;
                    }
                    written
                })
            })
            .collect();
        let started = Instant::now();
        let mut worst_lag = 0.0f64;
        while started.elapsed() < duration {
            let row = b.client.query_one(&sample_sql, &[]).await.unwrap();
            worst_lag = worst_lag.max(row.get::<_, f64>("lag_seconds"));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let mut written = 0;
        for p in producers {
            written += p.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let backlog = b.pending().await;
        stop(relay);
        let delivered = written as i64 - backlog;
        println!(
            "| {offered} (achieved {:.0}) | {:.0} | {backlog} | {worst_lag:.2} s |",
            written as f64 / elapsed,
            delivered as f64 / elapsed
        );
        b.client.batch_execute("TRUNCATE event_log").await.unwrap();
    }
}

/// `-- --scaling`: the same backlog drained by 1, 2, 3 and 4 relays at once (defaults
/// each), beside the raw drain: how far more relays on one PostgreSQL go.
pub async fn scaling(b: &mut Bench, events: i64) {
    let raw = raw_drain_rate(b, events).await;
    println!("raw drain: {raw:.0} rows/s\n");
    println!("| relays | rows/s | ÷ raw | ÷ one relay |");
    println!("|---|---|---|---|");
    let mut one = 0.0;
    for relays in 1..=4 {
        b.load(events).await;
        let started = Instant::now();
        let running: Vec<Child> = (0..relays).map(|_| b.relay()).collect();
        b.wait_empty().await;
        let rate = events as f64 / started.elapsed().as_secs_f64();
        for relay in running {
            stop(relay);
        }
        if relays == 1 {
            one = rate;
        }
        println!(
            "| {relays} | {rate:.0} | {:.2}× | {:.2}× |",
            rate / raw,
            rate / one
        );
    }
}
