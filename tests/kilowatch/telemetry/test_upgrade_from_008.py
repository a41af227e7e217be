"""Upgrading a database from 008 with the rows the pre-009 code wrote keeps every figure.

The database is migrated up to 008 only and filled as the code of that time did:
raw rows of two devices over two days, minute and hourly rollups computed by its
statement (:data:`OLD_ROLLUP`, no readings' times, hours from raw rows), raw rows
dropped by retention before the first day's noon (their rollups are all there is),
and an hour of one device's data that arrived late, marked in ``rollup_dirty``.
Then it is migrated to the newest schema and the worker's rollup jobs run.

Every figure is compared with the truth the readings hold, computed in Python:
the counter rises only in the first 40 s of each minute, so its value at every
minute boundary is a reading, whether a row keeps its readings' times or dates
its last one at the end of its bucket (as rows from before 009 are read): energy
at 15 minutes, per hour and per day must be exact before the jobs and after.
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest

from kilowatch import db, migrations
from kilowatch.access import system_scope
from kilowatch.jobs import rollups as rollup_jobs
from kilowatch.telemetry import energy, history
from tests.conftest import create_database, drop_database

MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
EVERY = timedelta(seconds=20)
D0 = (datetime.now(UTC) - HOUR).replace(hour=0, minute=0, second=0, microsecond=0) - 2 * DAY
D2 = D0 + 2 * DAY
MINUTES = 2 * 24 * 60 + 10  # readings go on a little past D2: the last interval is whole
EXPIRED = D0 + timedelta(hours=12, minutes=30)  # raw rows before this were dropped
LATE = D0 + DAY + timedelta(hours=10)  # device B's hour that arrived late
COUNTER, SOC, PV = "meter.grid.e_import", "bms.soc", "meter.pv.p"

# The pre-009 rollup statement (kilowatch/telemetry/storage.py before migration 009).
OLD_ROLLUP = """
INSERT INTO {table} (bucket, device_id, point_id, avg, min, max, last, count)
SELECT time_bucket({width}, t.time) AS bucket, t.device_id, t.point_id,
       avg(t.value), min(t.value), max(t.value), last(t.value, t.time), count(*)
FROM telemetry t {where}
GROUP BY 1, 2, 3
ON CONFLICT (device_id, point_id, bucket) DO UPDATE
SET avg = excluded.avg, min = excluded.min, max = excluded.max,
    last = excluded.last, count = excluded.count
"""
OLD_COLUMNS = "bucket, device_id, point_id, avg, min, max, last, count"


def _rise_kwh(device: int, minute: int) -> float:
    """How far device's counter rises in its ``minute``-th minute since D0 (kWh)."""
    return 0.25 + ((minute * 7 + device * 3) % 11) / 16


def _at_minutes(device: int) -> list[float]:
    """The counter's value at each minute boundary since D0."""
    rises = [_rise_kwh(device, m) for m in range(MINUTES)]
    return [100.0 * device, *itertools.accumulate(rises, initial=100.0 * device)][1:]


def _pv_kw(minute: int) -> float:
    """The PV power held over the ``minute``-th minute since D0 (device A only)."""
    return 5.0 + minute % 13


def readings(device: int) -> dict[str, list[tuple[datetime, float]]]:
    """Every reading of a device every 20 s: counter, state of charge and (device 1) PV."""
    at = _at_minutes(device)
    series: dict[str, list] = {COUNTER: [], SOC: [], PV: []}
    for minute in range(MINUTES):
        for k in range(3):
            t = D0 + minute * MINUTE + k * EVERY
            series[COUNTER].append((t, at[minute] + _rise_kwh(device, minute) * k / 2))
            series[SOC].append((t, 50 + 30 * math.sin(minute / 97 + device) + k))
            series[PV].append((t, _pv_kw(minute)))
    if device != 1:
        del series[PV]
    return series


def pv_kwh(start: datetime, end: datetime) -> float:
    """The PV energy of device 1 over minute boundaries [start, end)."""
    return math.fsum(_pv_kw(m) / 60 for m in range((start - D0) // MINUTE, (end - D0) // MINUTE))


def counter_at(device: int, moment: datetime) -> float:
    """The counter's value at a minute boundary."""
    return _at_minutes(device)[(moment - D0) // MINUTE]


@pytest.fixture
def at_008(stack):
    """A database at migration 008 holding what the code of that time wrote."""
    url = create_database("template1")
    with db.connect(url, autocommit=True) as conn:
        migrations.upgrade(conn, to="008")
        company = conn.execute("INSERT INTO companies (name) VALUES ('Old') RETURNING id"
                               ).fetchone()["id"]
        site = conn.execute("INSERT INTO sites (company_id, name, timezone) "
                            "VALUES (%s, 'Old', 'UTC') RETURNING id", (company,)
                            ).fetchone()["id"]
        devices = [conn.execute("INSERT INTO devices (site_id, serial, model) "
                                "VALUES (%s, %s, 'meter') RETURNING id", (site, serial)
                                ).fetchone()["id"] for serial in ("OLD-A", "OLD-B")]
        points = {name: conn.execute("INSERT INTO points (name) VALUES (%s) ON CONFLICT (name) "
                                     "DO UPDATE SET name = excluded.name RETURNING id",
                                     (name,)).fetchone()["id"] for name in (COUNTER, SOC, PV)}
        late = []
        for device in devices:
            rows = [(t, device, points[name], v) for name, series in readings(device).items()
                    for t, v in series]
            arrived_late = device == devices[1]
            late += [r for r in rows if arrived_late and LATE <= r[0] < LATE + HOUR]
            _copy(conn, [r for r in rows if not (arrived_late and LATE <= r[0] < LATE + HOUR)])
            conn.execute("INSERT INTO device_points (device_id, point_id) "
                         "SELECT %s, unnest(%s::int[])",
                         (device, [points[name] for name in readings(device)]))
        for table, width in (("telemetry_1m", "1 minute"), ("telemetry_1h", "1 hour")):
            conn.execute(OLD_ROLLUP.format(table=table, width=f"interval '{width}'",
                                           where="WHERE t.time >= %s AND t.time < %s"),
                         (D0, D2))
        conn.execute("UPDATE rollup_state SET watermark = %s, done_until = %s", (D2, D2))
        conn.execute("DELETE FROM telemetry WHERE time < %s", (EXPIRED,))
        _copy(conn, late)  # the late hour, marked as the collector of that time did
        conn.execute("INSERT INTO rollup_dirty (rollup, device_id, bucket) "
                     "SELECT '1m', %s, generate_series(%s::timestamptz, %s, '1 minute') "
                     "UNION ALL SELECT '1h', %s, %s",
                     (devices[1], LATE, LATE + HOUR - MINUTE, devices[1], LATE))
    yield url, site, devices, points
    drop_database(url)


def _copy(conn, rows) -> None:
    with conn.cursor() as cur, cur.copy(
            "COPY telemetry (time, device_id, point_id, value) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _old_rows(conn, table: str) -> list[dict]:
    return conn.execute(f"SELECT {OLD_COLUMNS} FROM {table} ORDER BY 1, 2, 3").fetchall()


def _truth(devices: list[int], width: timedelta) -> dict[tuple, dict]:
    """(bucket, device, point name) → avg, min, max, last, count of every reading."""
    buckets: dict[tuple, list[float]] = {}
    for device in devices:
        for name, series in readings(device).items():
            for t, v in series:
                buckets.setdefault((D0 + (t - D0) // width * width, device, name), []).append(v)
    return {key: {"avg": math.fsum(v) / len(v), "min": min(v), "max": max(v), "last": v[-1],
                  "count": len(v)} for key, v in buckets.items()}


def _assert_rows_true(conn, table: str, width: timedelta, devices, points) -> None:
    names = {pid: name for name, pid in points.items()}
    rows = conn.execute(f"SELECT {OLD_COLUMNS} FROM {table} ORDER BY 1, 2, 3").fetchall()
    found = {(r["bucket"], r["device_id"], names[r["point_id"]]): r for r in rows}
    truth = _truth(devices, width)
    assert found.keys() == truth.keys()
    for key, expected in truth.items():
        assert {k: found[key][k] for k in expected} == pytest.approx(expected, rel=1e-12), key


def _assert_energy_true(conn, site: int, devices: list[int], *, settled: bool) -> None:
    """Energy per 15 minutes, hour and day equals the counters' rise and the PV power's energy.

    Until the late hour is rolled up, its raw readings (with their times) meet the
    untimed row after it (dated at its minute's end): the boundary between them is
    read between the two, which moves some energy across it, never more or less.
    """
    scope = system_scope()
    start = D0 + HOUR  # the first hour holds each counter's first reading: a baseline
    for step, read in ((energy.FIFTEEN_MINUTES, energy.site_energy),
                       (history.HOUR, history.energy_bars), ("day", history.energy_bars)):
        found = read(conn, scope, site, start, D2, step)
        grid = [i.kwh["grid_import"] for i in found.intervals]
        expected = [sum(counter_at(d, i.end) - counter_at(d, i.start) for d in devices)
                    for i in found.intervals]
        if not settled:
            edge = [k for k, i in enumerate(found.intervals) if i.end == LATE + HOUR]
            pair = slice(edge[0], edge[0] + 2) if edge else slice(0, 0)
            assert math.fsum(grid[pair]) == pytest.approx(math.fsum(expected[pair]), rel=1e-9)
            grid[pair], expected[pair] = [], []
        assert grid == pytest.approx(expected, rel=1e-9), step
        pv = [i.kwh["pv"] for i in found.intervals]
        pv_expected = [pv_kwh(i.start, i.end) for i in found.intervals]
        assert pv == pytest.approx(pv_expected, rel=1e-9), step
        assert found.methods["pv"] == "power"
        assert found.gap_ranges() == [], step


def _assert_history_true(conn, site: int, devices: list[int]) -> None:
    """Hourly and minute charts show every reading (late ones included) once."""
    scope = system_scope()
    for resolution, lo, hi in ((history.Resolution("1h", HOUR), D0, D2),
                               (history.Resolution("1m", MINUTE), LATE - HOUR, LATE + 2 * HOUR)):
        chart = history.site_history(conn, scope, site, [COUNTER, SOC], lo, hi,
                                     resolution=resolution)
        truth = _truth(devices, resolution.width)
        times = sorted({k[0] for k in truth if lo <= k[0] < hi})
        counter = chart.series[COUNTER]
        assert counter.times == times
        assert counter.avg == pytest.approx(
            [sum(truth[(t, d, COUNTER)]["avg"] for d in devices) for t in times], rel=1e-12)
        soc = chart.series[SOC]
        assert soc.avg == pytest.approx(
            [sum(truth[(t, d, SOC)]["avg"] for d in devices) / 2 for t in times], rel=1e-12)
        assert soc.min == pytest.approx([min(truth[(t, d, SOC)]["min"] for d in devices)
                                         for t in times], rel=1e-12)


def test_upgrade_from_008_keeps_rollups_and_energy_and_jobs_finish_it(at_008, settings):
    url, site, devices, points = at_008
    with db.connect(url, autocommit=True) as conn:
        before = {t: _old_rows(conn, t) for t in ("telemetry_1m", "telemetry_1h")}

        applied = migrations.upgrade(conn)

        assert applied == [m.name for m in migrations.discover() if m.name[:3] > "008"]
        # The migration itself rewrites no rollup row.
        assert {t: _old_rows(conn, t) for t in before} == before
        _assert_energy_true(conn, site, devices, settled=False)
        _assert_history_true(conn, site, devices)

        # The worker's jobs finish what the migration queued (late hour and refresh).
        for _ in range(20):
            rollup_jobs.run(conn, settings)
            rollup_jobs.run_late(conn, settings)
            if not conn.execute("SELECT 1 FROM rollup_pending LIMIT 1").fetchone():
                break
        assert conn.execute("SELECT count(*) AS n FROM rollup_pending").fetchone()["n"] == 0

        # Rows keep their values (the late hour now included); where raw rows were
        # still there they gained their readings' times, older ones stay as they were.
        _assert_rows_true(conn, "telemetry_1m", MINUTE, devices, points)
        _assert_rows_true(conn, "telemetry_1h", HOUR, devices, points)
        untimed = conn.execute(
            "SELECT min(bucket) AS lo, max(bucket) AS hi FROM telemetry_1m "
            "WHERE first_time IS NULL AND bucket < %s", (D2,)).fetchone()
        assert (untimed["lo"], untimed["hi"]) == (D0, EXPIRED - MINUTE)
        # The hour holding both is kept like the untimed ones (read as one reading at its end).
        untimed = conn.execute("SELECT max(bucket) AS hi FROM telemetry_1h "
                               "WHERE first_time IS NULL").fetchone()
        assert untimed["hi"] == EXPIRED.replace(minute=0)
        first = conn.execute(
            "SELECT first, first_time, last_time FROM telemetry_1m WHERE device_id = %s "
            "AND point_id = %s AND bucket = %s", (devices[1], points[COUNTER], LATE)).fetchone()
        assert (first["first"], first["first_time"], first["last_time"]) == (
            counter_at(devices[1], LATE), LATE, LATE + 2 * EVERY)
        _assert_energy_true(conn, site, devices, settled=True)
        _assert_history_true(conn, site, devices)
