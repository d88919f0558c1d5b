-- A cluster's local table, one per shard. {engine} is ReplicatedReplacingMergeTree(…) when
-- created ON CLUSTER (needs Keeper), ReplacingMergeTree() when migrate creates it on each node.
-- Same columns, partitioning and sorting key as the single-server table (event_log.sql).
CREATE TABLE IF NOT EXISTS `{database}`.event_log_local {on_cluster} (
    event_id        UInt64,
    event_type      String,
    event_date_time {datetime},
    environment     String,
    event_context   String
)
ENGINE = {engine}
PARTITION BY toYYYYMM(event_date_time)
ORDER BY (event_type, event_date_time, event_id)
