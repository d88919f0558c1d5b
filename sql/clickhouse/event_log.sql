-- {database} is a validated identifier; {datetime} is DateTime64(6, 'UTC') on servers that have
-- it (20.1 and later) and DateTime('UTC') before. ReplacingMergeTree with event_id in the sorting
-- key: an event delivered twice (relay killed after the insert, before the delete) has identical
-- columns and collapses at merge time or under FINAL.
CREATE TABLE IF NOT EXISTS `{database}`.event_log (
    event_id        UInt64,
    event_type      String,
    event_date_time {datetime},
    environment     String,
    event_context   String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_date_time)
ORDER BY (event_type, event_date_time, event_id)
