-- Move refused events ($1 ids, $2 reasons) into the dead-letter table. Runs in the claiming
-- transaction, before acknowledge.sql deletes them from event_log.
INSERT INTO event_log_dead_letter AS d (id, type, created_at, environment, context, error)
SELECT e.id, e.type, e.created_at, e.environment, e.context, r.error
FROM unnest($1::bigint[], $2::text[]) AS r(id, error)
JOIN event_log e ON e.id = r.id
ON CONFLICT (id) DO UPDATE
SET error = EXCLUDED.error, failed_at = now(), attempts = d.attempts + 1, replayed_at = NULL
