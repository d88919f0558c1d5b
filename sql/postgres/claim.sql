-- Claim the oldest unclaimed events. SKIP LOCKED lets any number of relays share the table:
-- rows another relay holds are skipped, not waited for. The locks live until the claiming
-- transaction commits (after the sink has the rows) or rolls back (they are claimed again).
-- context is read as text: the sink stores the JSON text, so it is never parsed here.
--
-- $2 is the last id this transaction already claimed (the smallest bigint for its first
-- claim). It is needed, not an optimisation: SKIP LOCKED only skips rows *other*
-- transactions hold, so a second claim in the same transaction would return the first
-- one's rows again. A delivery's first claim also starts past the relay's own frontier
-- while another of its deliveries holds rows (src/claim.rs, Cursor). Rows below $2 that it
-- misses (committed late, or released by a rollback) are taken by the next claim that
-- starts from the top: within a second while the relay is busy, at once when it goes idle.
-- The casts let an adopted table use other types (varchar, timestamp, json).
SELECT {id}::bigint, {type}::text, {created_at}::timestamptz, {environment}::text,
       {context}::text
FROM {outbox}
WHERE {id} > $2
ORDER BY {id}
LIMIT $1
FOR UPDATE SKIP LOCKED
