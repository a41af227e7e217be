-- Failure modes: device alarm messages applied once, worker jobs run once per interval,
-- the collector's heartbeat and the platform's own incidents.

-- Device alarm messages already applied, by device, code, state and the device's time: a
-- message the broker delivers again (QoS 1, after a collector restart) is recognised and
-- ignored instead of opening a second alarm and a second e-mail.
CREATE TABLE device_alarm_messages (
    device_id   integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    code        text NOT NULL,
    state       text NOT NULL CHECK (state IN ('raised', 'cleared')),
    at          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, code, state, at)
);
CREATE INDEX device_alarm_messages_received_idx ON device_alarm_messages (received_at);

-- When each worker job last started, whichever worker ran it: the next turn is due one
-- interval later, so two workers never run a job twice in one interval.
CREATE TABLE job_runs (
    job        text PRIMARY KEY,
    started_at timestamptz NOT NULL
);

-- Each collector's heartbeat: written every few seconds while it is subscribed to the broker
-- and can write to the database, i.e. while the platform can ingest.
CREATE TABLE collector_heartbeats (
    client_id text PRIMARY KEY,
    beat_at   timestamptz NOT NULL
);

-- Incidents of the platform itself (e.g. nothing ingested), for the staff, not tenants.
CREATE TABLE platform_incidents (
    id         serial PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('ingest_stalled')),
    message    text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz
);
CREATE UNIQUE INDEX platform_incidents_open_idx ON platform_incidents (kind)
    WHERE ended_at IS NULL;

-- The collector (its role from 016) records the alarm messages it applied and its heartbeat;
-- the web app and the worker got these tables through 016's default privileges.
GRANT SELECT, INSERT ON device_alarm_messages TO kilowatch_collector;
GRANT SELECT, INSERT, UPDATE ON collector_heartbeats TO kilowatch_collector;
