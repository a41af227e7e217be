-- Late-data ranges that are only refreshed: their rollup rows are complete and
-- read as they are meanwhile (009 marked rows from before it, which lack their
-- readings' times, to be recomputed; readers need not take raw rows there).
ALTER TABLE rollup_pending ADD COLUMN refresh boolean NOT NULL DEFAULT false;

-- The ranges 009 marked for that: inserted with it, from the oldest raw row to the
-- minutes' done_until (the dirty buckets it converted span a minute or an hour).
UPDATE rollup_pending p SET refresh = true
FROM schema_migrations m
WHERE m.name = '009_late_rollups.sql' AND p.marked_at = m.applied_at
  AND p.hi - p.lo > interval '1 hour';
