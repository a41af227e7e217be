"""Rollups equal direct time_bucket queries over raw rows, late data included."""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess

import pytest

from kilowatch.telemetry import storage as telemetry
from tests.collector.helpers import Publisher, register_fleet, running_collector, wait_for
from tests.collector.helpers import telemetry as telemetry_payload

DIRECT = """
SELECT time_bucket(%(width)s, time) AS bucket, device_id, point_id, avg(value) AS avg,
       min(value) AS min, max(value) AS max, last(value, time) AS last, count(*) AS count
FROM telemetry WHERE device_id = ANY(%(devices)s) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
ROLLUP = """
SELECT bucket, device_id, point_id, avg, min, max, last, count FROM {table}
WHERE device_id = ANY(%(devices)s) ORDER BY 1, 2, 3
"""


def worker(kw_env, *args):
    return subprocess.run(["kilowatch", "worker", "--once", *args], env={**os.environ, **kw_env},
                          capture_output=True, text=True, timeout=300)


def assert_rollups_match_raw(conn, devices):
    for rollup in telemetry.ROLLUPS:
        direct = conn.execute(DIRECT, {"width": rollup.width, "devices": devices}).fetchall()
        stored = conn.execute(ROLLUP.format(table=rollup.table), {"devices": devices}).fetchall()
        assert len(stored) == len(direct), rollup.name
        for want, got in zip(direct, stored, strict=True):
            assert _same(got, want), (rollup.name, got, want)


def _same(got: dict, want: dict) -> bool:
    for field, value in want.items():
        if isinstance(value, float):
            if abs(got[field] - value) > 1e-9 * max(1.0, abs(value)):
                return False
        elif got[field] != value:
            return False
    return True


@pytest.fixture(scope="module")
def devices(kw_env):
    return register_fleet(kw_env["KILOWATCH_DATABASE_URL"], ["ROLL-1", "ROLL-2"])


def random_rows(devices: dict, start: dt.datetime, minutes: int, seed: int) -> list:
    rng = random.Random(seed)
    rows = []
    for device_id in devices.values():
        for second in range(0, minutes * 60, 7):
            moment = start + dt.timedelta(seconds=second)
            for point_id in (1, 2, 13):
                rows.append((moment, device_id, point_id, rng.uniform(-100, 100)))
    return rows


def test_rollups_equal_direct_time_bucket_queries(kw_env, conn, devices):
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)).replace(minute=17, second=3,
                                                                      microsecond=0)
    with conn.transaction():
        telemetry.copy_samples(conn, random_rows(devices, start, 150, seed=1))
    result = worker(kw_env, "--job", "rollups")
    assert result.returncode == 0, result.stderr
    assert "rollups: ran" in result.stdout
    assert_rollups_match_raw(conn, list(devices.values()))
    state = conn.execute("SELECT rollup, watermark, done_until FROM rollup_state").fetchall()
    for row in state:
        assert row["done_until"] == row["watermark"]


def test_late_data_through_the_collector_recomputes_its_buckets(kw_env, conn, devices, settings,
                                                                tmp_path):
    before = conn.execute("SELECT count, avg FROM telemetry_1m WHERE device_id = %s "
                          "AND point_id = 1 ORDER BY bucket LIMIT 1",
                          (devices["ROLL-1"],)).fetchone()
    first_bucket = conn.execute("SELECT min(bucket) AS b FROM telemetry_1m WHERE device_id = %s",
                                (devices["ROLL-1"],)).fetchone()["b"]
    late_start = first_bucket + dt.timedelta(seconds=1)
    with running_collector(kw_env, log_path=tmp_path / "collector.log"):
        publisher = Publisher()
        try:
            for seq in range(1, 6):
                publisher.publish(f"{settings.mqtt_prefix}/ROLL-1/telemetry", telemetry_payload(
                    seq, late_start + dt.timedelta(minutes=(seq - 1) * 20), samples=3, points=3,
                    extra={"meter.grid.p": 1000.0 + seq}))
        finally:
            publisher.close()
        wait_for(lambda: conn.execute(
            "SELECT count(*) AS n FROM rollup_dirty WHERE rollup = '1h'").fetchone()["n"] > 0,
            what="late buckets marked dirty")
    result = worker(kw_env, "--job", "rollups")
    assert result.returncode == 0, result.stderr
    assert conn.execute("SELECT count(*) AS n FROM rollup_dirty").fetchone()["n"] == 0
    after = conn.execute("SELECT count, avg FROM telemetry_1m WHERE device_id = %s "
                         "AND point_id = 1 ORDER BY bucket LIMIT 1",
                          (devices["ROLL-1"],)).fetchone()
    assert after["count"] > before["count"]
    assert_rollups_match_raw(conn, list(devices.values()))


def test_a_job_locked_by_another_worker_is_skipped(kw_env, conn):
    conn.execute("SELECT pg_advisory_lock(7120400, hashtext('rollups'))")
    try:
        result = worker(kw_env, "--job", "rollups")
    finally:
        conn.execute("SELECT pg_advisory_unlock(7120400, hashtext('rollups'))")
    assert result.returncode == 0, result.stderr
    assert "rollups: skipped" in result.stdout
    assert "rollups: ran" in worker(kw_env, "--job", "rollups").stdout


def test_unknown_job_is_a_one_line_error(kw_env):
    result = worker(kw_env, "--job", "nope")
    assert result.returncode != 0
    assert result.stderr.startswith("Error: unknown job nope")
    assert "Traceback" not in result.stderr
