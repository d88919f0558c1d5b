SELECT id, type, created_at::text, environment, left(context::text, 200), error, failed_at::text, attempts
FROM {dead_letter}
WHERE replayed_at IS NULL
ORDER BY id
