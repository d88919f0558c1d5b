-- From staging into the archive; rows it already has (a redelivery) are skipped.
INSERT INTO {archive} (event_id, event_type, created_at, environment, context)
SELECT event_id, event_type, created_at, environment, context::jsonb
FROM outbox_relay_staging
ON CONFLICT (event_id) DO NOTHING
