-- Least privilege: the migrations run as the owner of the tables (the role of
-- KILOWATCH_DATABASE_URL); the web app, the collector and the worker log in as
-- roles that are members of these group roles and can change data, never the
-- schema. Roles belong to the whole server, so another database of the same
-- server may have created them already.
DO $$
DECLARE
    service text;
BEGIN
    FOREACH service IN ARRAY ARRAY['kilowatch_web', 'kilowatch_collector', 'kilowatch_worker']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = service) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', service);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a migration of another database
            END;
        END IF;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public TO kilowatch_web, kilowatch_collector, kilowatch_worker;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public
    TO kilowatch_web, kilowatch_collector, kilowatch_worker;
GRANT SELECT ON schema_migrations TO kilowatch_web, kilowatch_collector, kilowatch_worker;

-- The web app and the worker change rows of every table but these: raw
-- telemetry and its rollups are written by the collector and the worker only,
-- the audit log is append-only, the migration ledger belongs to migrations.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public
    TO kilowatch_web, kilowatch_worker;
REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM kilowatch_web, kilowatch_worker;
REVOKE UPDATE, DELETE ON audit_log FROM kilowatch_web, kilowatch_worker;
REVOKE INSERT, UPDATE, DELETE ON telemetry, telemetry_1m, telemetry_1h, rollup_state
    FROM kilowatch_web;

-- The collector stores what devices send, and reads only what it needs for
-- that: no users, sessions, tariffs or bills.
GRANT SELECT ON companies, sites, points, device_points, rollup_state, schedule_revisions
    TO kilowatch_collector;
-- Not the devices' activation code hashes.
GRANT SELECT (id, site_id, serial, model, rated_power_kw, capacity_kwh, firmware, online,
              last_seen, created_at),
      UPDATE (online, last_seen, firmware) ON devices TO kilowatch_collector;
GRANT SELECT, INSERT ON telemetry, points, device_points, device_events, alarm_events,
                        notification_inbox TO kilowatch_collector;
GRANT SELECT, INSERT, UPDATE ON device_seq, rollup_pending, alarms, schedule_deliveries
    TO kilowatch_collector;
GRANT SELECT, INSERT, DELETE ON seq_gaps, dead_letters TO kilowatch_collector;
GRANT SELECT, UPDATE (status, reason, acked_at) ON dispatch_plan_deliveries
    TO kilowatch_collector;

-- Tables and sequences later migrations create: the web app and the worker get
-- their rows, the collector nothing until a migration grants it what it writes.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO kilowatch_web, kilowatch_worker;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO kilowatch_web, kilowatch_collector, kilowatch_worker;

-- Retention drops chunks and compression changes the hypertable, which only its
-- owner may do: the worker does both through these functions, which run as the
-- owner and touch only the telemetry hypertables.
CREATE FUNCTION kilowatch_drop_chunks(hypertable text, older_than interval)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    dropped integer;
BEGIN
    IF hypertable NOT IN ('telemetry', 'telemetry_1m') THEN
        RAISE EXCEPTION 'kilowatch_drop_chunks: % is not a telemetry hypertable', hypertable;
    END IF;
    SELECT count(*) INTO dropped
    FROM drop_chunks(hypertable::regclass, older_than => older_than);
    RETURN dropped;
END
$$;

CREATE FUNCTION kilowatch_compress_raw(older_than interval)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    chunk regclass;
    compressed integer := 0;
BEGIN
    IF NOT (SELECT compression_enabled FROM timescaledb_information.hypertables
            WHERE hypertable_name = 'telemetry') THEN
        ALTER TABLE telemetry SET (timescaledb.compress,
                                   timescaledb.compress_segmentby = 'device_id, point_id',
                                   timescaledb.compress_orderby = 'time');
    END IF;
    FOR chunk IN
        SELECT format('%I.%I', chunk_schema, chunk_name)::regclass
        FROM timescaledb_information.chunks
        WHERE hypertable_name = 'telemetry' AND NOT is_compressed
          AND range_end < now() - older_than
        ORDER BY range_end
    LOOP
        PERFORM compress_chunk(chunk, if_not_compressed => true);
        compressed := compressed + 1;
    END LOOP;
    RETURN compressed;
END
$$;

REVOKE EXECUTE ON FUNCTION kilowatch_drop_chunks(text, interval),
                           kilowatch_compress_raw(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kilowatch_drop_chunks(text, interval),
                          kilowatch_compress_raw(interval) TO kilowatch_worker;
