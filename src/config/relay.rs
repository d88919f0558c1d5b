//! Validation of how the relay claims and delivers, and the number and duration parsers
//! every setting shares.

use super::*;

pub(super) fn relay_config(args: &cli::RelayArgs) -> Result<RelayConfig, ConfigError> {
    let config = RelayConfig {
        batch_size: positive(
            "EVENT_BATCH_SIZE (--batch-size)",
            &args.batch_size,
            1_000_000,
        )?,
        claims_per_insert: positive(
            "CLAIMS_PER_INSERT (--claims-per-insert)",
            &args.claims_per_insert,
            1000,
        )?,
        max_insert_bytes: positive(
            "MAX_INSERT_BYTES (--max-insert-bytes)",
            &args.max_insert_bytes,
            1 << 40,
        )?,
        sample_interval: duration("SAMPLE_INTERVAL (--sample-interval)", &args.sample_interval)?,
        poll_interval: duration("POLL_INTERVAL (--poll-interval)", &args.poll_interval)?,
        max_in_flight: positive("MAX_IN_FLIGHT (--max-in-flight)", &args.max_in_flight, 256)?,
        insert_timeout: duration("INSERT_TIMEOUT (--insert-timeout)", &args.insert_timeout)?,
        shutdown_grace: duration("SHUTDOWN_GRACE (--shutdown-grace)", &args.shutdown_grace)?,
        max_backoff: duration("MAX_BACKOFF (--max-backoff)", &args.max_backoff)?,
        coalesce: duration(
            "COALESCE_INTERVAL (--coalesce-interval)",
            &args.coalesce_interval,
        )?,
        max_event_bytes: positive(
            "MAX_EVENT_BYTES (--max-event-bytes)",
            &args.max_event_bytes,
            1 << 30,
        )?,
    };
    Ok(config)
}

pub(super) fn positive(setting: &'static str, raw: &str, max: usize) -> Result<usize, ConfigError> {
    match raw.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        Ok(n) => Err(invalid(setting, format!("{n} is out of range 1..={max}"))),
        Err(_) => Err(invalid(
            setting,
            format!("'{raw}' is not a positive integer"),
        )),
    }
}

pub(super) fn duration(setting: &'static str, raw: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(raw.trim()).map_err(|e| {
        invalid(
            setting,
            format!("'{raw}' is not a duration like 5s or 250ms ({e})"),
        )
    })?;
    if d.is_zero() {
        return Err(invalid(setting, "must be longer than zero"));
    }
    Ok(d)
}
