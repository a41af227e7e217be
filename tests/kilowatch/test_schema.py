"""The first schema: hypertables exist and the unique key refuses duplicates."""

from __future__ import annotations

import psycopg
import pytest

from kilowatch import migrations


def test_hypertables_exist(conn):
    rows = conn.execute(
        "SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1"
    ).fetchall()
    names = {r["hypertable_name"] for r in rows}
    assert {"telemetry", "telemetry_1m", "telemetry_1h"} <= names


def test_every_migration_is_applied(conn):
    states = migrations.status(conn)
    assert states and all(s.applied_at is not None for s in states)


def test_duplicate_sample_is_refused_by_unique_key(conn):
    conn.execute("INSERT INTO companies (name) VALUES ('Dup Co')")
    conn.execute("""INSERT INTO sites (company_id, name, timezone)
                    SELECT id, 'Dup site', 'UTC' FROM companies WHERE name = 'Dup Co'""")
    device = conn.execute("""INSERT INTO devices (site_id, serial, model)
                             SELECT id, 'DUP-1', 'HES-L' FROM sites WHERE name = 'Dup site'
                             RETURNING id""").fetchone()["id"]
    row = (device, "2026-11-22T10:00:00Z", 1.5)
    insert = """INSERT INTO telemetry (device_id, point_id, time, value)
                VALUES (%s, (SELECT id FROM points WHERE name = 'bms.soc'), %s, %s)"""
    conn.execute(insert, row)
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(insert, row)
    count = conn.execute("SELECT count(*) AS n FROM telemetry WHERE device_id = %s",
                         (device,)).fetchone()["n"]
    assert count == 1


def test_bad_serial_is_refused_by_the_schema(conn):
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("""INSERT INTO devices (site_id, serial, model)
                        SELECT id, 'bad serial!', 'HES-L' FROM sites LIMIT 1""")
