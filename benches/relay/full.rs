//! The full run: the six measures of the performance issue, each beside its baseline,
//! printed as one Markdown table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_relay::ClickHouseSink;

use crate::bench::{connect, stop, Bench};
use crate::measures::{
    idle_latency, load_with_probes, ms, percentile, pgbench, raw_drain_rate, relay_drain_rate,
    seed_poll_once,
};

pub async fn run(
    b: &mut Bench,
    sink: &ClickHouseSink,
    version: (u32, u32),
    database_url: &str,
    events: i64,
) {
    let mut rows = Vec::new();

    // 1 and 2. The raw drain and the relay's drain of the same backlog, three alternating
    //    pairs: single drains here differ by up to ±20 % between neighbours, so the ratio
    //    is the median pair's, and every pair is printed.
    let mut pairs = Vec::new();
    let mut peak = 0.0f64;
    for _ in 0..3 {
        let raw = raw_drain_rate(b, events).await;
        let (relay, relay_peak) = relay_drain_rate(b, events, &[]).await;
        peak = peak.max(relay_peak);
        pairs.push((relay, raw));
    }
    let ((relay_rate, raw_rate), pair_text) = median_pair(pairs);
    rows.push(format!(
        "| backlog drain, {events} events, rows/s (median of 3 alternating pairs: {pair_text}) | {relay_rate:.0} | raw SKIP LOCKED + DELETE drain: {raw_rate:.0} | {:.2}× |",
        relay_rate / raw_rate
    ));

    // 6a. The seed design's drain (back to back batches).
    b.load(events).await;
    let mut seed_client = connect(database_url).await;
    let started = Instant::now();
    while seed_poll_once(&mut seed_client, sink).await > 0 {}
    let seed_rate = events as f64 / started.elapsed().as_secs_f64();

    // The relay for the latency measures, started idle.
    b.settle().await;
    let relay = b.relay();
    rows.push(format!(
        "| backlog drain vs the seed design, rows/s | {relay_rate:.0} | seed poller (1000 by created_at): {seed_rate:.0} | {:.1}× |",
        relay_rate / seed_rate
    ));
    rows.push(format!(
        "| relay peak RSS while draining | {peak:.1} MiB | — | — |"
    ));

    // 4. Idle latency (relay still running, now idle).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle = idle_latency(&b.client, 200, Duration::from_millis(20)).await;
    rows.push(format!(
        "| idle latency commit → deleted, p50 / p99 | {} / {} | — | — |",
        ms(percentile(&idle, 0.5)),
        ms(percentile(&idle, 0.99))
    ));

    // 3. Latency under 2,000 events/s.
    let inserts_before = b.clickhouse_inserts();
    let window = Instant::now();
    let loaded = load_with_probes(database_url, 200, Duration::from_secs(10)).await;
    b.wait_empty().await;
    let inserts_per_s =
        (b.clickhouse_inserts() - inserts_before) as f64 / window.elapsed().as_secs_f64();
    stop(relay);

    // 6b. The seed design's latency with a 1 s beat, under the same load.
    b.wait_empty().await;
    let beat_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let beat = {
        let stop = beat_stop.clone();
        let sink = ClickHouseSink::new(&b.ch).unwrap();
        let mut client = connect(database_url).await;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                seed_poll_once(&mut client, &sink).await;
            }
        })
    };
    let seed_loaded = load_with_probes(database_url, 200, Duration::from_secs(10)).await;
    beat_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    beat.await.unwrap();
    rows.push(format!(
        "| latency at 2,000 events/s, p50 / p99 | {} / {} | seed poller, 1 s beat: {} / {} | {:.0}× lower p50 |",
        ms(percentile(&loaded, 0.5)),
        ms(percentile(&loaded, 0.99)),
        ms(percentile(&seed_loaded, 0.5)),
        ms(percentile(&seed_loaded, 0.99)),
        percentile(&seed_loaded, 0.5).as_secs_f64() / percentile(&loaded, 0.5).as_secs_f64()
    ));
    rows.push(format!(
        "| ClickHouse inserts/s at 2,000 events/s | {inserts_per_s:.1} | target ≤ ~10 | — |"
    ));
    b.client.batch_execute("TRUNCATE event_log").await.unwrap();

    // 5. Producer cost of the trigger.
    rows.extend(producer_cost(b).await);

    // 2b. The same drain with 5000-row batches, the raw drain's batch size: how much of the
    //     gap is per-batch cost (one ClickHouse part and one fsync'd commit per batch).
    let (big_rate, _) = relay_drain_rate(b, events, &[("EVENT_BATCH_SIZE", "5000")]).await;
    rows.insert(
        1,
        format!(
            "| backlog drain with EVENT_BATCH_SIZE=5000, rows/s | {big_rate:.0} | raw drain (median pair): {raw_rate:.0} | {:.2}× |",
            big_rate / raw_rate
        ),
    );

    println!(
        "\noutbox-relay bench: ClickHouse {}.{}, PostgreSQL 15 fsync on, defaults (EVENT_BATCH_SIZE=1000, MAX_IN_FLIGHT=2, COALESCE_INTERVAL=100ms)",
        version.0, version.1
    );
    println!("| measure | outbox-relay | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

/// Measure 5, the producer cost of the trigger (also `-- --producer-cost` alone): pgbench
/// with the trigger alone (no relay, so nobody registered), then with a relay running (it
/// starts idle and registered; the load makes it busy), then with the trigger disabled,
/// then with a plain always-NOTIFY trigger. Leaves the table empty, our trigger enabled.
pub async fn producer_cost(b: &Bench) -> Vec<String> {
    let mut rows = Vec::new();
    // ClickHouse may still be merging what the latency phases inserted.
    b.settle().await;
    b.client
        .batch_execute("TRUNCATE event_log; DELETE FROM event_log_waiting")
        .await
        .unwrap();
    // The trigger alone, against no trigger, three pairs: single pgbench runs on this
    // machine differ by up to ±20 % between neighbours, so the ratio is the median. One
    // discarded warm-up run first (the first run of a phase measured slowest in every run
    // so far, whichever setup it had), and the order within a pair alternates, so neither
    // setup always runs first.
    let trigger = |on: bool| {
        format!(
            "TRUNCATE event_log; ALTER TABLE event_log {} TRIGGER event_log_notify",
            if on { "ENABLE" } else { "DISABLE" }
        )
    };
    producer_tps(b).await;
    let trigger = &trigger;
    let ((with_ours, without), pair_text) = alternating_pairs(|on| async move {
        b.client.batch_execute(&trigger(on)).await.unwrap();
        producer_tps(b).await
    })
    .await;
    b.client
        .batch_execute("ALTER TABLE event_log ENABLE TRIGGER event_log_notify")
        .await
        .unwrap();
    // The same with a relay delivering the load, against a relay delivering it with no
    // trigger at all: what the trigger costs beyond what the delivery itself costs producers
    // on this machine (the relay shares the cores and the table). Three alternating pairs
    // too: these single runs were the noisiest of the table (0.57×–1.08× across runs).
    let ((with_ours_relay, without_relay), relay_pair_text) =
        alternating_pairs(|on| producer_tps_with_relay(b, on)).await;
    b.client
        .batch_execute("TRUNCATE event_log; ALTER TABLE event_log DISABLE TRIGGER event_log_notify")
        .await
        .unwrap();
    let without_later = producer_tps(b).await;
    b.client
        .batch_execute(
            "TRUNCATE event_log;
             CREATE FUNCTION plain_notify() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_notify('plain', ''); RETURN NULL; END $$;
             CREATE TRIGGER plain_notify AFTER INSERT ON event_log FOR EACH STATEMENT EXECUTE FUNCTION plain_notify();",
        )
        .await
        .unwrap();
    let with_plain = producer_tps(b).await;
    rows.push(format!(
        "| producer tps, 8 clients, with our trigger (median of 3 alternating pairs: {pair_text}) | {with_ours:.0} | no trigger: {without:.0} | {:.2}× |",
        with_ours / without
    ));
    rows.push(format!(
        "| producer tps, 8 clients, our trigger + relay delivering (median of 3 alternating pairs: {relay_pair_text}) | {with_ours_relay:.0} | no trigger + relay delivering: {without_relay:.0} | {:.2}× |",
        with_ours_relay / without_relay
    ));
    rows.push(format!(
        "| producer tps, 8 clients, always-NOTIFY trigger | {with_plain:.0} | no trigger (run just before): {without_later:.0} | {:.2}× |",
        with_plain / without_later
    ));

    b.client
        .batch_execute(
            "ALTER TABLE event_log ENABLE TRIGGER event_log_notify;
             DROP TRIGGER plain_notify ON event_log; DROP FUNCTION plain_notify();
             TRUNCATE event_log",
        )
        .await
        .unwrap();
    rows
}

/// Three pairs of `measure(true)` (ours) and `measure(false)` (the baseline), the order
/// within a pair alternating so neither setup always runs first; the median pair and every
/// pair as text.
async fn alternating_pairs<F, Fut>(mut measure: F) -> ((f64, f64), String)
where
    F: FnMut(bool) -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let mut pairs = Vec::new();
    for pair in 0..3 {
        let mut tps = [0.0; 2];
        for on in [pair % 2 == 0, pair % 2 == 1] {
            tps[usize::from(!on)] = measure(on).await;
        }
        pairs.push((tps[0], tps[1]));
    }
    median_pair(pairs)
}

/// The pair (measured, baseline) with the median ratio, and every pair as text.
fn median_pair(mut pairs: Vec<(f64, f64)>) -> ((f64, f64), String) {
    pairs.sort_by(|x, y| (x.0 / x.1).total_cmp(&(y.0 / y.1)));
    let text: Vec<String> = pairs
        .iter()
        .map(|(m, base)| format!("{m:.0}/{base:.0} = {:.2}×", m / base))
        .collect();
    (pairs[pairs.len() / 2], text.join(", "))
}

/// pgbench's tps from a checkpoint: each run starts with no dirty buffers and no WAL
/// pending, instead of paying for the previous run's (later runs of the first measurements
/// here were up to 25 % slower than the first).
async fn producer_tps(b: &Bench) -> f64 {
    b.client.batch_execute("CHECKPOINT").await.unwrap();
    pgbench(&b.database_url)
}

/// [`producer_tps`] while a relay delivers the load, with our trigger on or off. Without a
/// trigger nothing wakes the relay, so it polls every 100 ms to deliver throughout, as it
/// does when busy. With the trigger, prints the share of the run the relay spent registered
/// (producers notify while it is), sampled every 50 ms.
async fn producer_tps_with_relay(b: &Bench, trigger_on: bool) -> f64 {
    b.client
        .batch_execute(&format!(
            "TRUNCATE event_log; DELETE FROM event_log_waiting;
             ALTER TABLE event_log {} TRIGGER event_log_notify",
            if trigger_on { "ENABLE" } else { "DISABLE" }
        ))
        .await
        .unwrap();
    let relay = if trigger_on {
        b.relay()
    } else {
        b.relay_with(&[("POLL_INTERVAL", "100ms")])
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.client.batch_execute("CHECKPOINT").await.unwrap();
    let watcher = crate::bench::connect(&b.database_url).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = tokio::spawn({
        let done = done.clone();
        async move {
            let (mut samples, mut registered) = (0u32, 0u32);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let row = watcher
                    .query_one("SELECT count(*) FROM event_log_waiting", &[])
                    .await
                    .unwrap();
                samples += 1;
                registered += u32::from(row.get::<_, i64>(0) > 0);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (registered, samples)
        }
    });
    let tps = tokio::task::spawn_blocking({
        let url = b.database_url.clone();
        move || pgbench(&url)
    });
    let tps = tps.await.unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (registered, samples) = watching.await.unwrap();
    if trigger_on {
        eprintln!(
            "producers with our trigger and a relay: {tps:.0} tps, relay registered in {registered} of {samples} samples"
        );
    }
    stop(relay);
    tps
}
