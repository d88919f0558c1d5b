-- Before `migrate --adopt` touches anything: the existing outbox table and each column the
-- relay reads, by name, with whether the id column leads an index (the claim's ORDER BY id
-- LIMIT walks it). One row per expected column; `present` false names what is missing.
SELECT c.name,
       a.attname IS NOT NULL AS present,
       EXISTS (
           SELECT FROM pg_index i
           WHERE i.indrelid = to_regclass(format('%I.%I', current_schema(), '{outbox_name}'))
             AND i.indkey[0] = a.attnum
       ) AS leads_an_index
FROM unnest($1::text[]) AS c(name)
LEFT JOIN pg_attribute a
       ON a.attrelid = to_regclass(format('%I.%I', current_schema(), '{outbox_name}'))
      AND a.attname = c.name AND a.attnum > 0 AND NOT a.attisdropped
