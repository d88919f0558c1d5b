-- The outbox at a glance, in one cheap statement: for the relay's metrics (every
-- SAMPLE_INTERVAL) and `outbox-relay status`.
-- * backlog: count(*) stops at 100,001 rows, so a huge backlog costs a bounded scan, never a
--   full one; past that the id span (max - min + 1, two primary-key probes) estimates it.
--   The span is an upper bound: rolled-back inserts leave gaps in the ids.
-- * lag: the age of the lowest id, the oldest pending event (ids follow insertion order;
--   created_at is the producer's transaction start, so the lag includes its transaction).
-- * deleted: pg_stat_user_tables.n_tup_del, cumulative; two samples give the delivery rate
--   of every relay together.
-- * relays: sessions named 'outbox-relay/<id>' (a relay holds a listener and a pool).
WITH head AS (SELECT {id} AS id, {created_at}::timestamptz AS created_at
              FROM {outbox} ORDER BY {id} LIMIT 1)
SELECT
    (SELECT count(*) FROM (SELECT FROM {outbox} LIMIT 100001) capped) AS counted,
    COALESCE((SELECT max({id}) FROM {outbox}) - (SELECT id FROM head) + 1, 0) AS id_span,
    COALESCE(EXTRACT(EPOCH FROM now() - (SELECT created_at FROM head))::float8, 0) AS lag_seconds,
    (SELECT count(*) FROM {dead_letter} WHERE replayed_at IS NULL) AS dead_letters,
    COALESCE((SELECT n_tup_del FROM pg_stat_user_tables
              WHERE relid = '{outbox}'::regclass), 0) AS deleted,
    (SELECT count(DISTINCT application_name) FROM pg_stat_activity
     WHERE application_name LIKE 'outbox-relay/%') AS relays,
    (SELECT count(*) FROM {waiting}) AS waiting
