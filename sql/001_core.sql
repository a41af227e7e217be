-- Core schema: tenants, sites, devices, the points catalog, telemetry and the audit log.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE companies (
    id         serial PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (length(trim(name)) > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sites (
    id         serial PRIMARY KEY,
    company_id integer NOT NULL REFERENCES companies (id),
    name       text NOT NULL CHECK (length(trim(name)) > 0),
    address    text,
    latitude   double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude  double precision CHECK (longitude BETWEEN -180 AND 180),
    timezone   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, name)
);

CREATE TABLE devices (
    id             serial PRIMARY KEY,
    site_id        integer NOT NULL REFERENCES sites (id),
    serial         text NOT NULL UNIQUE CHECK (serial ~ '^[A-Za-z0-9_-]{1,64}$'),
    model          text NOT NULL CHECK (model IN ('HES-L', 'HES-XL', 'HES-XXL', 'meter', 'gateway')),
    rated_power_kw double precision CHECK (rated_power_kw > 0),
    capacity_kwh   double precision CHECK (capacity_kwh > 0),
    firmware       text,
    online         boolean NOT NULL DEFAULT false,
    last_seen      timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_site_idx ON devices (site_id);

CREATE TABLE points (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE
                CHECK (name ~ '^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$' AND length(name) <= 64),
    unit        text,
    description text
);

INSERT INTO points (name, unit, description) VALUES
    ('meter.grid.p', 'kW', 'Grid exchange; > 0 import, < 0 export'),
    ('meter.grid.e_import', 'kWh', 'Cumulative energy imported from the grid'),
    ('meter.grid.e_export', 'kWh', 'Cumulative energy exported to the grid'),
    ('meter.load.p', 'kW', 'Site consumption'),
    ('meter.load.e', 'kWh', 'Cumulative site consumption'),
    ('meter.pv.p', 'kW', 'PV production'),
    ('meter.pv.e', 'kWh', 'Cumulative PV production'),
    ('pcs.p', 'kW', 'Battery power; > 0 discharge, < 0 charge'),
    ('pcs.q', 'kvar', 'Reactive power'),
    ('pcs.e_charge', 'kWh', 'Cumulative battery charge energy'),
    ('pcs.e_discharge', 'kWh', 'Cumulative battery discharge energy'),
    ('pcs.state', 'code', '0 off, 1 standby, 2 charging, 3 discharging, 4 fault'),
    ('bms.soc', '%', 'State of charge'),
    ('bms.soh', '%', 'State of health'),
    ('bms.v', 'V', 'Battery voltage'),
    ('bms.i', 'A', 'Battery current'),
    ('bms.t_min', '°C', 'Lowest cell temperature'),
    ('bms.t_max', '°C', 'Highest cell temperature'),
    ('bms.cell_v_min', 'V', 'Lowest cell voltage'),
    ('bms.cell_v_max', 'V', 'Highest cell voltage');

-- Which points each device has sent; bounds the catalog per device.
CREATE TABLE device_points (
    device_id  integer NOT NULL REFERENCES devices (id),
    point_id   integer NOT NULL REFERENCES points (id),
    first_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, point_id)
);

-- Raw telemetry: one narrow row per sample.
CREATE TABLE telemetry (
    time      timestamptz NOT NULL,
    device_id integer NOT NULL,
    point_id  integer NOT NULL,
    value     double precision,
    UNIQUE (device_id, point_id, time)
);
SELECT create_hypertable('telemetry', 'time', chunk_time_interval => interval '1 day');

CREATE TABLE telemetry_1m (
    bucket    timestamptz NOT NULL,
    device_id integer NOT NULL,
    point_id  integer NOT NULL,
    avg       double precision,
    min       double precision,
    max       double precision,
    last      double precision,
    count     integer NOT NULL,
    UNIQUE (device_id, point_id, bucket)
);
SELECT create_hypertable('telemetry_1m', 'bucket', chunk_time_interval => interval '7 days');

CREATE TABLE telemetry_1h (
    bucket    timestamptz NOT NULL,
    device_id integer NOT NULL,
    point_id  integer NOT NULL,
    avg       double precision,
    min       double precision,
    max       double precision,
    last      double precision,
    count     integer NOT NULL,
    UNIQUE (device_id, point_id, bucket)
);
SELECT create_hypertable('telemetry_1h', 'bucket', chunk_time_interval => interval '90 days');

CREATE TABLE audit_log (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL,
    actor_user_id integer,
    company_id    integer REFERENCES companies (id),
    action        text NOT NULL,
    target        text,
    before        jsonb,
    after         jsonb
);
CREATE INDEX audit_log_company_at_idx ON audit_log (company_id, at DESC);
