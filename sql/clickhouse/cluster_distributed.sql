-- What the relay inserts into and analysts query: the shards' event_log_local tables as one.
-- Sharded by event_id, so every copy of an event reaches the same shard and collapses there.
CREATE TABLE IF NOT EXISTS `{database}`.event_log {on_cluster} (
    event_id        UInt64,
    event_type      String,
    event_date_time {datetime},
    environment     String,
    event_context   String
)
ENGINE = Distributed(`{cluster}`, `{database}`, event_log_local, event_id)
