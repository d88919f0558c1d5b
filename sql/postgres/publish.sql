INSERT INTO event_log (type, environment, context) VALUES ($1, $2, $3) RETURNING id
