"""Rollups equal direct time_bucket queries over raw rows, late data included, newest first."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import itertools
import os
import random
import subprocess

import pytest

from kilowatch import db
from kilowatch.telemetry import rollups
from kilowatch.telemetry import storage as telemetry
from tests.collector.helpers import Publisher, register_fleet, running_collector, wait_for
from tests.collector.helpers import telemetry as telemetry_payload

DIRECT = """
SELECT time_bucket(%(width)s, time) AS bucket, device_id, point_id, avg(value) AS avg,
       min(value) AS min, max(value) AS max, first(value, time) AS first,
       min(time) AS first_time, last(value, time) AS last, max(time) AS last_time,
       count(*) AS count
FROM telemetry WHERE device_id = ANY(%(devices)s) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
ROLLUP = """
SELECT bucket, device_id, point_id, avg, min, max, first, first_time, last, last_time, count
FROM {table} WHERE device_id = ANY(%(devices)s) ORDER BY 1, 2, 3
"""
MINUTE, HOUR = dt.timedelta(minutes=1), dt.timedelta(hours=1)


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


def pending(conn, device_id=None):
    return [(r["device_id"], r["lo"], r["hi"]) for r in conn.execute(
        "SELECT device_id, lo, hi FROM rollup_pending WHERE %(d)s::int IS NULL "
        "OR device_id = %(d)s ORDER BY device_id, lo", {"d": device_id})]


@pytest.fixture(scope="module")
def devices(kw_env):
    return register_fleet(kw_env["KILOWATCH_DATABASE_URL"], [f"ROLL-{n}" for n in range(1, 5)])


def random_rows(device_ids, start: dt.datetime, minutes: int, seed: int, step_s: int = 7) -> list:
    rng = random.Random(seed)
    rows = []
    for device_id in device_ids:
        for second in range(0, minutes * 60, step_s):
            moment = start + dt.timedelta(seconds=second)
            for point_id in (1, 2, 13):
                rows.append((moment, device_id, point_id, rng.uniform(-100, 100)))
    return rows


def test_rollups_equal_direct_time_bucket_queries(kw_env, conn, devices):
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)).replace(minute=17, second=3,
                                                                      microsecond=0)
    ids = [devices["ROLL-1"], devices["ROLL-2"]]
    with conn.transaction():
        telemetry.copy_samples(conn, random_rows(ids, start, 150, seed=1))
    result = worker(kw_env, "--job", "rollups", "--job", "rollups.late")
    assert result.returncode == 0, result.stderr
    assert "rollups: ran" in result.stdout
    assert_rollups_match_raw(conn, ids)
    state = conn.execute("SELECT rollup, watermark, done_until FROM rollup_state").fetchall()
    for row in state:
        assert row["done_until"] == row["watermark"]


def test_late_data_through_the_collector_recomputes_its_buckets(kw_env, conn, devices, settings,
                                                                tmp_path):
    ids = [devices["ROLL-1"], devices["ROLL-2"]]
    before = conn.execute("SELECT count, avg FROM telemetry_1m WHERE device_id = %s "
                          "AND point_id = 1 ORDER BY bucket LIMIT 1", (ids[0],)).fetchone()
    first_bucket = conn.execute("SELECT min(bucket) AS b FROM telemetry_1m WHERE device_id = %s",
                                (ids[0],)).fetchone()["b"]
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
        late = [first_bucket + k * 20 * MINUTE for k in range(5)]  # a minute per message
        wait_for(lambda: all(any(lo <= m < hi for _, lo, hi in pending(conn, ids[0]))
                             for m in late), what="late minutes marked")
    assert min(lo for _, lo, _ in pending(conn)) == late[0]
    assert max(hi for _, _, hi in pending(conn)) == late[-1] + MINUTE
    result = worker(kw_env, "--job", "rollups", "--job", "rollups.late")
    assert result.returncode == 0, result.stderr
    assert pending(conn) == []
    after = conn.execute("SELECT count, avg FROM telemetry_1m WHERE device_id = %s "
                         "AND point_id = 1 ORDER BY bucket LIMIT 1", (ids[0],)).fetchone()
    assert after["count"] > before["count"]
    assert_rollups_match_raw(conn, ids)


def test_late_data_is_recomputed_newest_first_a_window_at_a_time(conn, devices):
    # Three days of late rows for ROLL-3, ending an hour before the hourly rollup's
    # cut: the first window takes the newest six-hour block (00-06, 06-12, 12-18 or
    # 18-24 UTC) and leaves the rest pending.
    device = devices["ROLL-3"]
    cut = conn.execute("SELECT done_until FROM rollup_state WHERE rollup = '1h'"
                       ).fetchone()["done_until"]
    end = cut - HOUR
    start = end - dt.timedelta(days=3)
    with conn.transaction():
        telemetry.copy_samples(conn, random_rows([device], start, 3 * 24 * 60, seed=3,
                                                 step_s=20))
        telemetry.add_pending(conn, [(device, start, end)])
    done = rollups.recompute_late_window(conn)
    window_lo = (end - MINUTE).replace(hour=(end - MINUTE).hour // 6 * 6, minute=0)
    assert done["oldest"] == window_lo
    rest = pending(conn, device)  # cut at window boundaries for the two jobs
    assert (rest[0][1], rest[-1][2]) == (start, window_lo)
    assert all(a[2] == b[1] for a, b in itertools.pairwise(rest))
    minutes = conn.execute("SELECT min(bucket) AS lo, max(bucket) AS hi, count(*) AS n "
                           "FROM telemetry_1m WHERE device_id = %s", (device,)).fetchone()
    assert (minutes["lo"], minutes["hi"]) == (window_lo, end - MINUTE)
    hours = (end - window_lo) / HOUR
    assert minutes["n"] == 3 * 60 * hours  # three points a minute
    assert conn.execute("SELECT count(*) AS n FROM telemetry_1h WHERE device_id = %s",
                        (device,)).fetchone()["n"] == 3 * hours
    result = rollups.catch_up_late(conn)
    assert result["pending"] == 0 and start - rollups.LATE_WINDOW < result["reached"] <= start
    assert_rollups_match_raw(conn, [device])


def test_two_jobs_share_late_data_side_by_side(settings, conn, devices):
    # Even and odd devices are recomputed by two connections at once, newest first.
    ids = [devices["ROLL-1"], devices["ROLL-2"]]
    end = conn.execute("SELECT done_until FROM rollup_state WHERE rollup = '1h'"
                       ).fetchone()["done_until"] - 2 * dt.timedelta(days=1)
    start = end - dt.timedelta(days=1)
    with conn.transaction():
        telemetry.copy_samples(conn, random_rows(ids, start, 24 * 60, seed=4, step_s=30))
        telemetry.add_pending(conn, [(d, start, end) for d in ids])

    def share(part):
        with db.connect(settings.database_url, autocommit=True) as own:
            return rollups.catch_up_late(own, part=part)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(share, [(0, 2), (1, 2)]))
    assert all(r["windows"] >= 2 for r in results), results  # 4 or 5 six-hour blocks
    assert pending(conn) == []
    assert_rollups_match_raw(conn, ids)


def test_a_late_window_reads_only_its_own_chunks_through_the_index(conn, devices):
    # The cost of late data must not grow with the table: the statement of a
    # window is planned against the chunks its constant bounds overlap, read
    # through the (device, point, time) index.
    device = devices["ROLL-3"]
    newest = conn.execute("SELECT max(time) AS t FROM telemetry").fetchone()["t"]
    hi = telemetry.ROLLUP_BY_NAME["1h"].floor(newest) - 2 * HOUR
    query = rollups._MINUTES_SQL.format(devices=rollups._DEVICES["devices"].format(alias="t"))
    plan = conn.execute("EXPLAIN (FORMAT JSON) " + query,
                        {"lo": hi - HOUR, "hi": hi, "devices": [device]}).fetchone()
    scans = list(_scans(plan["QUERY PLAN"][0]["Plan"]))
    chunks = conn.execute("SELECT count(*) AS n FROM timescaledb_information.chunks "
                          "WHERE hypertable_name = 'telemetry'").fetchone()["n"]
    assert chunks >= 3
    assert 1 <= len(scans) <= 2, scans
    assert all(node in ("Index Scan", "Bitmap Heap Scan") for node, _ in scans), scans


def _scans(node):
    if node.get("Relation Name", "").startswith("_hyper"):
        yield node["Node Type"], node["Relation Name"]
    for child in node.get("Plans", []):
        yield from _scans(child)


def test_hourly_rise_counts_what_a_counter_advanced_across_a_reset(conn, devices):
    # A counter gains 1 kWh a minute from 100, is reset to zero after its 10:29:30
    # reading (129.5) and counts on from there: the hour advanced 29.5 + 30 = 59.5.
    device = devices["ROLL-4"]
    hour = dt.datetime(2026, 9, 14, 10, tzinfo=dt.UTC)
    rows = []
    for second in range(0, 3600, 30):
        value = 100 + second / 60 if second < 1800 else (second - 1770) / 60
        rows.append((hour + dt.timedelta(seconds=second), device, 2, value))
    with conn.transaction():
        telemetry.copy_samples(conn, rows)
        rollups.compute_minutes(conn, hour, hour + HOUR, devices=[device])
        rollups.compute_hours(conn, hour, hour + HOUR, devices=[device])
    row = conn.execute("SELECT first, first_time, last, last_time, rise FROM telemetry_1h "
                       "WHERE device_id = %s AND point_id = 2 AND bucket = %s",
                       (device, hour)).fetchone()
    assert row["rise"] == pytest.approx(29.5 + (3570 - 1770) / 60)
    assert (row["first"], row["first_time"]) == (100.0, hour)
    assert row["last_time"] == hour + dt.timedelta(seconds=3570)


def test_late_minutes_merge_into_ranges_through_short_gaps():
    t = dt.datetime(2026, 9, 14, 10, tzinfo=dt.UTC)
    pairs = [(1, t), (1, t + MINUTE), (1, t + MINUTE), (1, t + 5 * MINUTE),
             (1, t + 40 * MINUTE), (2, t)]
    assert telemetry.minute_ranges(pairs) == [
        (1, t, t + 6 * MINUTE), (1, t + 40 * MINUTE, t + 41 * MINUTE), (2, t, t + MINUTE)]


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

