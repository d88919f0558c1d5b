-- Claim the oldest unclaimed events. SKIP LOCKED lets any number of relays share the table:
-- rows another relay holds are skipped, not waited for. The locks live until the claiming
-- transaction commits (after the sink has the rows) or rolls back (they are claimed again).
-- context is read as text: the sink stores the JSON text, so it is never parsed here.
SELECT id, type, created_at, environment, context::text
FROM event_log
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED
