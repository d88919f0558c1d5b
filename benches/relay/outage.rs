//! `-- --outage`: what a ClickHouse outage costs producers. A relay that was idle (so
//! registered for notifications) meets a ClickHouse that is down, and pgbench measures
//! producer throughput while its batches fail, beside the same with no relay at all. Each
//! `OUTAGE_VARIANTS` entry (`;`-separated, `KEY=VALUE` settings; `RELAY_BIN=path` runs
//! another build) is one relay setup; the rounds alternate their order.

use std::time::Duration;

use crate::bench::{services, stop, variants, Bench};
use crate::measures::pgbench;

pub async fn outage(b: &Bench) {
    let variants = variants("OUTAGE_VARIANTS");
    let mut setups: Vec<Option<&[(String, String)]>> = vec![None];
    setups.extend(variants.iter().map(|v| Some(v.as_slice())));
    let name = |s: &Option<&[(String, String)]>| match s {
        None => "no relay".to_owned(),
        Some([]) => "relay".to_owned(),
        Some(v) => {
            let settings: Vec<String> = v.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("relay {}", settings.join(" "))
        }
    };
    println!(
        "| round | {} |",
        setups
            .iter()
            .map(|s| format!("{} tps (÷ no relay)", name(s)))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(setups.len()));
    for round in 0..3 {
        let mut order: Vec<usize> = (0..setups.len()).collect();
        order.rotate_left(round % setups.len());
        let mut tps = vec![0.0; setups.len()];
        for i in order {
            tps[i] = producers_during_outage(b, setups[i]).await;
        }
        let cells: Vec<String> = tps
            .iter()
            .map(|t| format!("{t:.0} ({:.2}×)", t / tps[0]))
            .collect();
        println!("| {} | {} |", round + 1, cells.join(" | "));
    }
}

/// pgbench tps with ClickHouse down and, given `relay` settings, a relay that went idle
/// before the outage and has failed a batch since.
async fn producers_during_outage(b: &Bench, relay: Option<&[(String, String)]>) -> f64 {
    b.client
        .batch_execute("TRUNCATE event_log; DELETE FROM event_log_waiting")
        .await
        .unwrap();
    let relay = relay.map(|settings| {
        let env: Vec<(&str, &str)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        b.relay_with(&env)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    services(&["stop", "--only", "clickhouse"]);
    // The event that wakes the idle relay into its first failed batch.
    b.client
        .batch_execute("SELECT outbox_publish('outage', '{}')")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.client.batch_execute("CHECKPOINT").await.unwrap();
    let tps = pgbench(&b.database_url);
    if let Some(relay) = relay {
        stop(relay);
    }
    services(&["start", "--only", "clickhouse"]);
    tps
}
