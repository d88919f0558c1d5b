-- Registrations of relays that have no session left (crashed, or their listener lost its
-- connection): they would make producers notify nobody. Run by each listener on (re)connect.
DELETE FROM {waiting} w
WHERE NOT EXISTS (
    SELECT FROM pg_stat_activity a WHERE a.application_name = 'outbox-relay/' || w.relay
)
