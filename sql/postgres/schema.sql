-- The outbox. Installed by `outbox-relay migrate` into the first schema of the connection's
-- search_path. Every statement is idempotent: a second run changes nothing.

CREATE TABLE IF NOT EXISTS {outbox} (
    {id}          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    {type}        text        NOT NULL,
    {created_at}  timestamptz NOT NULL DEFAULT now(),
    {environment} text        NOT NULL,
    {context}     jsonb       NOT NULL DEFAULT '{}'
);

-- A queue table: rows live for milliseconds and every one is deleted, so dead tuples are
-- nearly all it ever holds. With the defaults (vacuum once dead rows pass 20 % of the live
-- ones, throttled by cost delays) a large backlog piles up hundreds of thousands of dead
-- tuples, and every claim walks the dead index entries at the head of the primary key
-- before it finds a live row. Vacuum after a fixed 10,000 dead rows, whatever the table's
-- size, and unthrottled: the table is small once drained, so each pass is cheap.
-- Analyze stays on the defaults: the claim's plan (primary-key index scan) does not
-- depend on statistics.
ALTER TABLE {outbox} SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0
);

-- For producers in any language: SELECT outbox_publish('user_created', '{"id": 1}'::jsonb).
-- Without an environment it takes the setting outbox.environment (e.g.
-- ALTER DATABASE app SET outbox.environment = 'Production'), else 'Local'.
-- SECURITY DEFINER: a producer needs only EXECUTE on it (sql/postgres/roles.sql), not
-- privileges on the table (RETURNING id would need SELECT). search_path is pinned (FROM
-- CURRENT: the one migrate ran with), as SECURITY DEFINER requires for safety, so the function
-- finds its own event_log whatever the caller's search_path.
CREATE OR REPLACE FUNCTION outbox_publish(
    event_type  text,
    context     jsonb DEFAULT '{}',
    environment text  DEFAULT NULL
) RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    INSERT INTO {outbox} ({type}, {context}, {environment})
    VALUES (
        event_type,
        coalesce(context, '{}'),
        coalesce(environment, nullif(current_setting('outbox.environment', true), ''), 'Local')
    )
    RETURNING {id}
$$;

-- The relay's own objects beside the table (registrations, trigger, dead letters) are in
-- relay_objects.sql, which migrate runs after this file (and `migrate --adopt` alone).
