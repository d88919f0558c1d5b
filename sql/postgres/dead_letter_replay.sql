-- Move dead letters ($1 ids, or all when $2) back into event_log with their original ids.
WITH picked AS (
    UPDATE {dead_letter}
    SET replayed_at = now()
    WHERE replayed_at IS NULL AND ($2 OR id = ANY($1))
    RETURNING id, type, created_at, environment, context
)
INSERT INTO {outbox} ({id}, {type}, {created_at}, {environment}, {context})
OVERRIDING SYSTEM VALUE
SELECT id, type, created_at, environment, context FROM picked
ON CONFLICT ({id}) DO NOTHING
RETURNING {id}
