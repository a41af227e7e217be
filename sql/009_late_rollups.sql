-- Rollups keep the times of their first and last readings (energy is read at
-- interval boundaries, not at bucket ends), hourly rows carry the counter rise
-- inside the hour (resets included), and late data is tracked as ranges of
-- minutes per device instead of one row per bucket.

ALTER TABLE telemetry_1m
    ADD COLUMN first      double precision,
    ADD COLUMN first_time timestamptz,
    ADD COLUMN last_time  timestamptz;

ALTER TABLE telemetry_1h
    ADD COLUMN first      double precision,
    ADD COLUMN first_time timestamptz,
    ADD COLUMN last_time  timestamptz,
    ADD COLUMN rise       double precision;

-- When hourly rows last changed (new hours or late data): caches of figures read
-- from them (the fleet table's energy today) are keyed by it.
ALTER TABLE rollup_state ADD COLUMN changed_at timestamptz;

-- Minutes [lo, hi) of a device whose rollup rows (minute, and the hours holding
-- them) must be recomputed from raw rows. Readers take raw rows there meanwhile.
CREATE TABLE rollup_pending (
    device_id integer NOT NULL,
    lo        timestamptz NOT NULL,
    hi        timestamptz NOT NULL CHECK (hi > lo),
    marked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, lo, hi)
);
CREATE INDEX rollup_pending_hi_idx ON rollup_pending (hi DESC);

INSERT INTO rollup_pending (device_id, lo, hi)
SELECT device_id, bucket,
       bucket + CASE rollup WHEN '1m' THEN interval '1 minute' ELSE interval '1 hour' END
FROM rollup_dirty
ON CONFLICT DO NOTHING;

DROP TABLE rollup_dirty;

-- Rows computed before this migration lack their readings' times: recompute
-- what raw rows still hold (newest first, like any late data).
INSERT INTO rollup_pending (device_id, lo, hi)
SELECT d.id, r.lo, r.hi
FROM devices d,
     (SELECT date_trunc('minute', (SELECT min(time) FROM telemetry)) AS lo,
             (SELECT done_until FROM rollup_state WHERE rollup = '1m') AS hi) r
WHERE r.lo < r.hi
ON CONFLICT DO NOTHING;
