-- The relay ($1) is idle: producers should notify it. Autocommit, before the re-check claim.
INSERT INTO {waiting} (relay) VALUES ($1)
ON CONFLICT (relay) DO UPDATE SET registered_at = now()
