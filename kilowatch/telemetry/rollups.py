"""Compute the rollups: new buckets up to the watermark, then late data, newest first.

Minute rows (``telemetry_1m``) come from raw rows: avg, min, max, count and the
first and last readings with their own times (``first``, ``first_time``,
``last``, ``last_time``). Hourly rows (``telemetry_1h``) come from minute rows:
the count-weighted average, min, max, first and last by time, the count, and
``rise``: how far a cumulative counter advanced inside the hour (its increases
between consecutive readings, see :func:`increase`).

New data: each rollup's watermark moves to its last closed bucket and the
buckets from ``done_until`` up to it are computed in slices (hours only where
the minutes are done).

Late data: the collector records it as ranges of minutes per device in
``rollup_pending``. The worker takes the newest :data:`LATE_WINDOW` of them at
a time and recomputes each distinct range with one statement whose time bounds
are constants, so TimescaleDB excludes the other chunks and the (device, point,
time) index does the rest: the cost follows the late rows, not the table. The
hours holding the range are recomputed from their minutes (below the hourly
``done_until``) in the transaction that deletes the ranges, so a reader, who
takes raw rows inside pending ranges, never sees half of it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict

import psycopg

from kilowatch.telemetry.storage import WATERMARK_LOCK, Rollup, add_pending

HOUR = dt.timedelta(hours=1)
LATE_WINDOW = dt.timedelta(hours=6)
RESET_BELOW = 0.9  # a counter reading below this share of the one before is a reset


def increase(prev: str, value: str) -> str:
    """Return SQL for how far a counter advanced from reading ``prev`` to ``value``.

    A drop of more than a tenth of the previous reading is a reset: the new value
    counted from zero. A smaller drop (jitter, an older reading sent again with a
    new time) counts nothing, so a counter's value never counts as energy.
    """
    return (f"(CASE WHEN {value} >= {prev} THEN {value} - {prev} "
            f"WHEN {value} < {prev} * {RESET_BELOW} THEN greatest({value}, 0) ELSE 0 END)")


def advance(prev: float, value: float) -> float:
    """Return how far a counter advanced from ``prev`` to ``value`` (as :func:`increase`)."""
    if value >= prev:
        return value - prev
    return max(value, 0.0) if value < prev * RESET_BELOW else 0.0


_MINUTES_SQL = """
INSERT INTO telemetry_1m (bucket, device_id, point_id, avg, min, max, first, first_time,
                          last, last_time, count)
SELECT time_bucket('1 minute', t.time), t.device_id, t.point_id, avg(t.value), min(t.value),
       max(t.value), first(t.value, t.time), min(t.time), last(t.value, t.time), max(t.time),
       count(*)
FROM telemetry t
WHERE t.time >= %(lo)s AND t.time < %(hi)s {devices}
GROUP BY 1, 2, 3
ON CONFLICT (device_id, point_id, bucket) DO UPDATE
SET avg = excluded.avg, min = excluded.min, max = excluded.max, first = excluded.first,
    first_time = excluded.first_time, last = excluded.last, last_time = excluded.last_time,
    count = excluded.count
"""

# Minute rows computed before their readings' times were kept count as one reading
# at the end of their minute.
_HOURS_SQL = """
INSERT INTO telemetry_1h (bucket, device_id, point_id, avg, min, max, first, first_time,
                          last, last_time, count, rise)
SELECT hour, device_id, point_id, sum(avg * count) / sum(count), min(min), max(max),
       first(first, first_time), min(first_time), last(last, last_time), max(last_time),
       sum(count), sum(inside) + coalesce(sum(across), 0)
FROM (
    SELECT time_bucket('1 hour', m.bucket) AS hour, m.device_id, m.point_id, m.avg, m.min,
           m.max, m.count, coalesce(m.first, m.last) AS first, m.last,
           coalesce(m.first_time, m.bucket + interval '1 minute') AS first_time,
           coalesce(m.last_time, m.bucket + interval '1 minute') AS last_time,
           {inside} AS inside, {across} AS across
    FROM telemetry_1m m
    WHERE m.bucket >= %(lo)s AND m.bucket < %(hi)s {devices}
    WINDOW w AS (PARTITION BY m.device_id, m.point_id, time_bucket('1 hour', m.bucket)
                 ORDER BY m.bucket)
) x
GROUP BY 1, 2, 3
ON CONFLICT (device_id, point_id, bucket) DO UPDATE
SET avg = excluded.avg, min = excluded.min, max = excluded.max, first = excluded.first,
    first_time = excluded.first_time, last = excluded.last, last_time = excluded.last_time,
    count = excluded.count, rise = excluded.rise
""".replace("{inside}", increase("coalesce(m.first, m.last)", "m.last")).replace(
    "{across}", increase("lag(m.last) OVER w", "coalesce(m.first, m.last)"))

_DEVICES = {
    "all": "",
    "devices": "AND {alias}.device_id = ANY(%(devices)s)",
    "points": "AND {alias}.device_id = ANY(%(devices)s) AND {alias}.point_id = ANY(%(points)s)",
}


def compute_minutes(conn: psycopg.Connection, lo: dt.datetime, hi: dt.datetime, *,
                    devices: list[int] | None = None, points: list[int] | None = None) -> int:
    """(Re)compute the minute rows of [lo, hi) from raw rows (of some devices and points)."""
    kind = "all" if devices is None else "devices" if not points else "points"
    query = _MINUTES_SQL.format(devices=_DEVICES[kind].format(alias="t"))
    return conn.execute(query, {"lo": lo, "hi": hi, "devices": devices,
                                "points": points}).rowcount


def compute_hours(conn: psycopg.Connection, lo: dt.datetime, hi: dt.datetime, *,
                  devices: list[int] | None = None) -> int:
    """(Re)compute the hourly rows of [lo, hi) (whole hours) from minute rows."""
    kind = "all" if devices is None else "devices"
    query = _HOURS_SQL.replace("{devices}", _DEVICES[kind].format(alias="m"))
    rows = conn.execute(query, {"lo": lo, "hi": hi, "devices": devices}).rowcount
    conn.execute("UPDATE rollup_state SET changed_at = clock_timestamp() WHERE rollup = '1h'")
    return rows


def _compute(conn: psycopg.Connection, rollup: Rollup, lo: dt.datetime,
             hi: dt.datetime) -> int:
    if rollup.name == "1m":
        return compute_minutes(conn, lo, hi)
    return compute_hours(conn, lo, hi)


# ---- new data -----------------------------------------------------------------------------

def _state(conn: psycopg.Connection, rollup: str) -> dict:
    return conn.execute("SELECT watermark, done_until FROM rollup_state WHERE rollup = %s",
                        (rollup,)).fetchone()


def advance_watermark(conn: psycopg.Connection, rollup: Rollup, now: dt.datetime) -> dict:
    """Move a rollup's watermark up to its last closed bucket; return its state row."""
    target = rollup.floor(now - rollup.lag)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", WATERMARK_LOCK)
        state = conn.execute(
            """UPDATE rollup_state SET watermark = greatest(watermark, %s), updated_at = now()
               WHERE rollup = %s RETURNING watermark, done_until""",
            (target, rollup.name),
        ).fetchone()
    if state["done_until"] is None:
        first = conn.execute("SELECT min(time) AS first FROM telemetry").fetchone()["first"]
        start = rollup.floor(first) if first is not None else state["watermark"]
        conn.execute("UPDATE rollup_state SET done_until = %s WHERE rollup = %s "
                     "AND done_until IS NULL", (min(start, state["watermark"]), rollup.name))
        state = _state(conn, rollup.name)
    return state


def catch_up(conn: psycopg.Connection, rollup: Rollup, now: dt.datetime, *,
             slice_width: dt.timedelta = dt.timedelta(hours=6), budget_s: float = 50.0) -> dict:
    """Compute the closed buckets from ``done_until`` up to the watermark; say what was done.

    Hours are computed only where the minutes are done, since they are made of them.
    """
    started = time.monotonic()
    state = advance_watermark(conn, rollup, now)
    done, target = state["done_until"], state["watermark"]
    if rollup.name == "1h":
        minutes_done = _state(conn, "1m")["done_until"]
        target = min(target, rollup.floor(minutes_done)) if minutes_done else done
    rows = 0
    while done < target and time.monotonic() - started < budget_s:
        end = min(done + slice_width, target)
        with conn.transaction():
            rows += _compute(conn, rollup, done, end)
            conn.execute("UPDATE rollup_state SET done_until = %s WHERE rollup = %s",
                         (end, rollup.name))
        done = end
    return {"rollup": rollup.name, "rows": rows, "done_until": done,
            "watermark": state["watermark"]}


# ---- late data ----------------------------------------------------------------------------

_TAKE_SQL = """
WITH top AS (SELECT max(hi) AS hi FROM rollup_pending)
DELETE FROM rollup_pending p USING top
WHERE p.hi > time_bucket('1 hour', top.hi - %(window)s)
RETURNING p.device_id, p.lo, p.hi, time_bucket('1 hour', top.hi - %(window)s) AS window_lo
"""


def _floor_hour(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: dt.datetime) -> dt.datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def _device_points(conn: psycopg.Connection, devices: list[int]) -> list[int] | None:
    """Return the points the devices have sent, or None if one has none registered."""
    rows = conn.execute(
        "SELECT device_id, array_agg(point_id) AS points FROM device_points "
        "WHERE device_id = ANY(%s) GROUP BY device_id", (devices,)).fetchall()
    if len(rows) < len(set(devices)):
        return None
    return sorted({p for row in rows for p in row["points"]})


def _take_window(conn: psycopg.Connection, window: dt.timedelta
                 ) -> dict[tuple[dt.datetime, dt.datetime], list[int]]:
    """Take the newest pending ranges (the rest is put back); group devices by their hull."""
    taken = conn.execute(_TAKE_SQL, {"window": window}).fetchall()
    if not taken:
        return {}
    window_lo = taken[0]["window_lo"]
    add_pending(conn, [(r["device_id"], r["lo"], window_lo) for r in taken
                       if r["lo"] < window_lo])
    # One range per device: its hull in the window. Recomputing minutes that were not
    # late costs less than a statement per scattered late minute.
    hulls: dict[int, tuple[dt.datetime, dt.datetime]] = {}
    for row in taken:
        lo, hi = max(row["lo"], window_lo), row["hi"]
        known = hulls.get(row["device_id"])
        hulls[row["device_id"]] = (min(lo, known[0]), max(hi, known[1])) if known else (lo, hi)
    groups: dict[tuple[dt.datetime, dt.datetime], list[int]] = defaultdict(list)
    for device_id, hull in sorted(hulls.items()):
        groups[hull].append(device_id)
    return groups


def recompute_late_window(conn: psycopg.Connection, *,
                          window: dt.timedelta = LATE_WINDOW) -> dict | None:
    """Recompute the newest window of late data in one transaction; None when none is left."""
    with conn.transaction():
        groups = _take_window(conn, window)
        if not groups:
            return None
        hours_done = _state(conn, "1h")["done_until"]
        minutes = hours = 0
        for (lo, hi), devices in groups.items():
            points = _device_points(conn, devices)
            minutes += compute_minutes(conn, lo, hi, devices=devices, points=points)
            hour_hi = min(_ceil_hour(hi), hours_done) if hours_done else lo
            if hour_hi > lo:
                hours += compute_hours(conn, _floor_hour(lo), hour_hi, devices=devices)
    return {"ranges": len(groups), "minute_rows": minutes, "hour_rows": hours,
            "oldest": min(lo for lo, _ in groups)}


def catch_up_late(conn: psycopg.Connection, *, budget_s: float = 50.0,
                  window: dt.timedelta = LATE_WINDOW) -> dict:
    """Recompute late data newest first until none is left or the budget is spent."""
    started = time.monotonic()
    totals = {"rollup": "late", "windows": 0, "ranges": 0, "minute_rows": 0, "hour_rows": 0}
    while time.monotonic() - started < budget_s:
        done = recompute_late_window(conn, window=window)
        if done is None:
            break
        totals["windows"] += 1
        for key in ("ranges", "minute_rows", "hour_rows"):
            totals[key] += done[key]
        totals["reached"] = done["oldest"]
    totals["pending"] = conn.execute("SELECT count(*) AS n FROM rollup_pending").fetchone()["n"]
    return totals
