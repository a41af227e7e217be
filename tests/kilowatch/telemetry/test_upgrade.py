"""Upgrading a database whose rollups lack their readings' times (migration 009)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kilowatch import db, migrations
from kilowatch.telemetry import coverage, rollups
from tests.conftest import create_database, drop_database

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
START = NOW - timedelta(hours=6)


@pytest.fixture
def before_009(stack):
    """A database migrated up to 009 (excluded), holding rolled-up data and a dirty mark."""
    url = create_database("template1")
    with db.connect(url, autocommit=True) as conn:
        migrations.upgrade(conn, to="008")
        conn.execute("INSERT INTO companies (name) VALUES ('Old')")
        conn.execute("INSERT INTO sites (company_id, name, timezone) VALUES (1, 'Old', 'UTC')")
        conn.execute("INSERT INTO devices (site_id, serial, model) VALUES (1, 'OLD-1', 'meter')")
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
