-- Ingest: dead letters, seq tracking and gaps, device online/offline log,
-- rollup watermarks and dirty buckets, and the alarm core.

-- Messages the collector refused, newest kept (the collector trims the table).
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    serial      text,
    device_id   integer,
    reason      text NOT NULL,
    detail      text,
    payload     text NOT NULL DEFAULT ''
);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at DESC);
CREATE INDEX dead_letters_device_idx ON dead_letters (device_id, id DESC);

-- Highest telemetry seq stored per device.
CREATE TABLE device_seq (
    device_id  integer PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    last_seq   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Telemetry messages a device numbered but that never arrived (yet).
CREATE TABLE seq_gaps (
    id            bigserial PRIMARY KEY,
    device_id     integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    first_missing bigint NOT NULL,
    last_missing  bigint NOT NULL CHECK (last_missing >= first_missing),
    detected_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX seq_gaps_device_idx ON seq_gaps (device_id, first_missing);

-- Online/offline transitions of devices.
CREATE TABLE device_events (
    id        bigserial PRIMARY KEY,
    device_id integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL DEFAULT now(),
    state     text NOT NULL CHECK (state IN ('online', 'offline')),
    reason    text NOT NULL,
    firmware  text
);
CREATE INDEX device_events_device_at_idx ON device_events (device_id, at DESC);

-- Rollups are complete for buckets before done_until. Rows below watermark that
-- arrive later are marked in rollup_dirty by the collector (under a shared
-- advisory lock that the worker takes exclusively while it moves the watermark).
CREATE TABLE rollup_state (
    rollup     text PRIMARY KEY CHECK (rollup IN ('1m', '1h')),
    watermark  timestamptz,
    done_until timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO rollup_state (rollup) VALUES ('1m'), ('1h');

CREATE TABLE rollup_dirty (
    rollup    text NOT NULL CHECK (rollup IN ('1m', '1h')),
    device_id integer NOT NULL,
    bucket    timestamptz NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rollup, device_id, bucket)
);

-- Alarms: at most one active (uncleared) alarm per device and code.
CREATE TABLE alarms (
    id                       bigserial PRIMARY KEY,
    device_id                integer NOT NULL REFERENCES devices (id),
    site_id                  integer NOT NULL REFERENCES sites (id),
    code                     text NOT NULL CHECK (length(code) BETWEEN 1 AND 64),
    severity                 text NOT NULL
                             CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    source                   text NOT NULL CHECK (source IN ('device', 'rule', 'platform')),
    message                  text NOT NULL DEFAULT '',
    raised_at                timestamptz NOT NULL,
    last_raised_at           timestamptz NOT NULL,
    raise_count              integer NOT NULL DEFAULT 1,
    cleared_at               timestamptz,
    acknowledged_by_user_id  integer,
    acknowledged_by          text,
    acknowledged_at          timestamptz
);
CREATE UNIQUE INDEX alarms_one_active_idx ON alarms (device_id, code) WHERE cleared_at IS NULL;
CREATE INDEX alarms_site_raised_idx ON alarms (site_id, raised_at DESC);
CREATE INDEX alarms_active_idx ON alarms (site_id) WHERE cleared_at IS NULL;

CREATE TABLE alarm_events (
    id            bigserial PRIMARY KEY,
    alarm_id      bigint NOT NULL REFERENCES alarms (id) ON DELETE CASCADE,
    at            timestamptz NOT NULL DEFAULT now(),
    kind          text NOT NULL CHECK (kind IN ('raised', 're-raised', 'acknowledged',
                                                'commented', 'cleared', 'notified')),
    actor         text,
    actor_user_id integer,
    details       jsonb
);
CREATE INDEX alarm_events_alarm_idx ON alarm_events (alarm_id, at);
