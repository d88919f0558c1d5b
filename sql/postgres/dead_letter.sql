-- Move refused events ($1 ids, $2 reasons) into the dead-letter table. Runs in the claiming
-- transaction, before acknowledge.sql deletes them from event_log.
INSERT INTO {dead_letter} AS d (id, type, created_at, environment, context, error)
SELECT e.{id}, e.{type}::text, e.{created_at}::timestamptz, e.{environment}::text,
       e.{context}::jsonb, r.error
FROM unnest($1::bigint[], $2::text[]) AS r(id, error)
JOIN {outbox} e ON e.{id} = r.id
ON CONFLICT (id) DO UPDATE
SET error = EXCLUDED.error, failed_at = now(), attempts = d.attempts + 1, replayed_at = NULL
