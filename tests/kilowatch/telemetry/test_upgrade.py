"""Upgrading a database whose rollups lack their readings' times (migration 009)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kilowatch import db, migrations
from kilowatch.access import system_scope
from kilowatch.telemetry import coverage, energy, rollups
from tests.conftest import create_database, drop_database

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
START = NOW - timedelta(hours=6)


def _at_008_with_one_device() -> str:
    """Create a database migrated up to 008 with one device on one site; return its URL."""
    url = create_database("template1")
    with db.connect(url, autocommit=True) as conn:
        migrations.upgrade(conn, target="008")
        conn.execute("INSERT INTO companies (name) VALUES ('Old')")
        conn.execute("INSERT INTO sites (company_id, name, timezone) VALUES (1, 'Old', 'UTC')")
        conn.execute("INSERT INTO devices (site_id, serial, model) VALUES (1, 'OLD-1', 'meter')")
    return url


@pytest.fixture
def before_009(stack):
    """A database migrated up to 008, holding rolled-up data and a dirty mark."""
    url = _at_008_with_one_device()
    with db.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO telemetry (time, device_id, point_id, value) "
                     "SELECT g, 1, 2, extract(epoch FROM g - %s) / 60 FROM generate_series("
                     "%s::timestamptz, %s::timestamptz, '20 seconds') g",
                     (START, START, NOW - timedelta(seconds=20)))
        conn.execute("INSERT INTO telemetry_1m (bucket, device_id, point_id, avg, min, max, "
                     "last, count) SELECT time_bucket('1 minute', time), 1, 2, avg(value), "
                     "min(value), max(value), last(value, time), count(*) FROM telemetry "
                     "GROUP BY 1")
        conn.execute("UPDATE rollup_state SET watermark = %s, done_until = %s", (NOW, NOW))
        conn.execute("INSERT INTO rollup_dirty (rollup, device_id, bucket) "
                     "VALUES ('1m', 1, %s)", (START + timedelta(hours=1),))
    yield url
    drop_database(url)


def test_old_rows_are_read_as_they_are_and_refreshed_newest_first(before_009):
    with db.connect(before_009, autocommit=True) as conn:
        assert migrations.upgrade(conn) == [m.name for m in migrations.discover()
                                            if m.name >= "009"]
        pending = conn.execute("SELECT lo, hi, refresh FROM rollup_pending ORDER BY lo, hi"
                               ).fetchall()
        # The dirty minute is late data; everything raw rows still hold is refreshed.
        assert [(p["lo"], p["hi"], p["refresh"]) for p in pending] == [
            (START, NOW, True), (START + timedelta(hours=1), START + timedelta(hours=1, minutes=1),
                                 False)]
        plan = coverage.plan(conn, [1], START, NOW, coarsest="1m")
        assert [s.source for s in plan.spans] == ["1m", "raw", "1m"]  # only the late minute raw
        while rollups.recompute_late_window(conn):
            pass
        legacy = conn.execute("SELECT count(*) AS n FROM telemetry_1m WHERE first_time IS NULL"
                              ).fetchone()["n"]
        assert legacy == 0
        row = conn.execute("SELECT first, first_time, last_time FROM telemetry_1m "
                           "WHERE bucket = %s", (START,)).fetchone()
        assert (row["first"], row["first_time"], row["last_time"]) == (
            0.0, START, START + timedelta(seconds=40))


# Two days of a grid meter before 009: its import counter rises 1 kWh a minute, read
# every 30 s; the rollups of the time were computed; retention dropped the raw rows
# of the first day (its rollups stay, as they were).
OLD = (NOW - timedelta(hours=40)).replace(minute=0)
KEPT = OLD + timedelta(hours=24)  # raw rows from here on
HOURS = [OLD + timedelta(hours=n) for n in range(int((NOW - OLD) / timedelta(hours=1)))]
_OLD_STYLE = {"1m": "1 minute", "1h": "1 hour"}
_ROLLUP_COLUMNS = "bucket, point_id, avg, min, max, last, count"


@pytest.fixture
def old_meter(stack):
    """A database at 008 with the meter's raw rows and its rollups as 008 computed them."""
    url = _at_008_with_one_device()
    with db.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO telemetry (time, device_id, point_id, value) "
                     "SELECT g, 1, p.id, 1000 + extract(epoch FROM g - %s) / 60 "
                     "FROM generate_series(%s::timestamptz, %s::timestamptz, '30 seconds') g, "
                     "points p WHERE p.name = 'meter.grid.e_import'",
                     (OLD, OLD, NOW - timedelta(seconds=30)))
        for table, width in _OLD_STYLE.items():
            conn.execute(f"INSERT INTO telemetry_{table} (bucket, device_id, point_id, avg, "
                         "min, max, last, count) SELECT time_bucket(%s, time), 1, point_id, "
                         "avg(value), min(value), max(value), last(value, time), count(*) "
                         "FROM telemetry GROUP BY 1, 3", (width,))
        conn.execute("UPDATE rollup_state SET watermark = %s, done_until = %s", (NOW, NOW))
        conn.execute("DELETE FROM telemetry WHERE time < %s", (KEPT,))
    yield url
    drop_database(url)


def _rollups(conn, table: str) -> list[tuple]:
    return [tuple(row.values()) for row in conn.execute(
        f"SELECT {_ROLLUP_COLUMNS} FROM telemetry_{table} ORDER BY bucket, point_id")]


def _hourly_import(conn) -> list[float | None]:
    energy_ = energy.site_energy(conn, system_scope("test"), 1, OLD, HOURS[-1],
                                 timedelta(hours=1), now=NOW)
    return [None if i.kwh["grid_import"] is None else round(i.kwh["grid_import"], 6)
            for i in energy_.intervals]


def test_an_upgraded_meter_keeps_its_rollups_and_energy(old_meter):
    with db.connect(old_meter, autocommit=True) as conn:
        before = {table: _rollups(conn, table) for table in _OLD_STYLE}
        migrations.upgrade(conn)
        # Only what raw rows still hold is to be refreshed; older rows are kept as they are.
        pending = conn.execute("SELECT device_id, lo, hi, refresh FROM rollup_pending"
                               ).fetchall()
        assert [tuple(p.values()) for p in pending] == [(1, KEPT, NOW, True)]
        # Every hour imported 60 kWh, read from the old rows as they are (the first
        # has no reading before it: its first one is the counter's baseline) …
        expected = [None] + [60.0] * (len(HOURS) - 2)
        assert _hourly_import(conn) == expected
        while rollups.recompute_late_window(conn):
            pass
        # … and from the refreshed ones: the same rows, now with their readings' times.
        assert conn.execute("SELECT count(*) AS n FROM rollup_pending").fetchone()["n"] == 0
        assert {table: _rollups(conn, table) for table in _OLD_STYLE} == before
        legacy = conn.execute("SELECT min(bucket) AS lo, max(bucket) AS hi FROM telemetry_1m "
                              "WHERE first_time IS NULL").fetchone()
        assert (legacy["lo"], legacy["hi"]) == (OLD, KEPT - timedelta(minutes=1))
        assert _hourly_import(conn) == expected
        hour = conn.execute("SELECT first, first_time, last_time, rise FROM telemetry_1h "
                            "WHERE bucket = %s", (KEPT,)).fetchone()
        assert hour == {"first": 1000 + 24 * 60, "first_time": KEPT,
                        "last_time": KEPT + timedelta(minutes=59, seconds=30), "rise": 59.5}
