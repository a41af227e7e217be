"""Compute the rollups: new buckets up to the watermark, then late data, newest first.

Minute rows (``telemetry_1m``) come from raw rows: avg, min, max, count and the
first and last readings with their own times (``first``, ``first_time``,
``last``, ``last_time``). Hourly rows (``telemetry_1h``) come from minute rows:
the count-weighted average, min, max, first and last by time, the count, and
for energy counters ``rise``: how far the counter advanced inside the hour (its increases
between consecutive readings, see :mod:`kilowatch.telemetry.counters`).

New data: each rollup's watermark moves to its last closed bucket and the
buckets from ``done_until`` up to it are computed in slices (hours only where
the minutes are done).

Late data: the collector records it as ranges of minutes per device in
``rollup_pending``. The worker takes the newest window (a :data:`LATE_WINDOW`
block) holding some at a time and recomputes each device's range with one pass
over its raw rows — minutes, then the hours from them (below the hourly
``done_until``) — whose time bounds are constants, so TimescaleDB excludes the
other chunks and the (device, point, time) index does the rest: the cost follows
the late rows, not the table. This happens in the transaction that deletes the
ranges, so a reader, who takes raw rows inside pending ranges, never sees half
of it. Windows are numbered from the epoch; two jobs share them (even and odd),
each on its own connection, and never touch the same minute or hour.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict

import psycopg

from kilowatch.telemetry import coverage
from kilowatch.telemetry.counters import COUNTER_POINTS, increase
from kilowatch.telemetry.storage import MINUTE, WATERMARK_LOCK, Rollup, add_pending

HOUR = dt.timedelta(hours=1)
LATE_WINDOW = dt.timedelta(hours=6)
_LATE_LOCK = (7_120_300, 2)  # shared by late windows, exclusive for the new-data path


_MINUTE_ROWS = """
SELECT time_bucket('1 minute', t.time) AS bucket, t.device_id, t.point_id, avg(t.value) AS avg,
       min(t.value) AS min, max(t.value) AS max, first(t.value, t.time) AS first,
       min(t.time) AS first_time, last(t.value, t.time) AS last, max(t.time) AS last_time,
       count(*)::int AS count
FROM telemetry t
WHERE t.time >= %(lo)s AND t.time < %(hi)s {devices}
GROUP BY 1, 2, 3
"""
_MINUTE_COLUMNS = "bucket, device_id, point_id, avg, min, max, first, first_time, last, " \
    "last_time, count"
_MINUTES_SQL = f"INSERT INTO telemetry_1m ({_MINUTE_COLUMNS}) {_MINUTE_ROWS}"
# Deleting a range and inserting it anew costs about 40 % less than an upsert.
_DELETE_MINUTES_SQL = """
DELETE FROM telemetry_1m t WHERE t.bucket >= %(lo)s AND t.bucket < %(hi)s {devices}
"""

# Hours from minute rows. Minute rows computed before their readings' times were kept
# count as one reading at the end of their minute, and an hour holding one is kept
# like them (no first reading nor times: read as one reading at its end), since its
# first reading's time is not known.
_HOUR_TIMES = """
    coalesce(m.first, m.last) AS first, m.last,
    coalesce(m.first_time, m.bucket + interval '1 minute') AS first_time,
    coalesce(m.last_time, m.bucket + interval '1 minute') AS last_time,
    m.first_time IS NOT NULL AS timed"""
_HOUR_FIRST_LAST = """
       CASE WHEN bool_and(timed) THEN first(first, first_time) END,
       CASE WHEN bool_and(timed) THEN min(first_time) END, last(last, last_time),
       CASE WHEN bool_and(timed) THEN max(last_time) END"""
_HOUR_ROWS = """
SELECT hour, device_id, point_id, sum(avg * count) / sum(count), min(min), max(max),
       {first_last},
       sum(count), NULL::float8
FROM (SELECT time_bucket('1 hour', m.bucket) AS hour, m.device_id, m.point_id, m.avg, m.min,
             m.max, m.count, {times}
      FROM {source} m
      WHERE m.bucket >= %(lo)s AND m.bucket < %(hours_hi)s {devices}
        AND NOT m.point_id = ANY(%(counters)s)) x
GROUP BY 1, 2, 3
UNION ALL
SELECT hour, device_id, point_id, sum(avg * count) / sum(count), min(min), max(max),
       {first_last},
       sum(count), sum(inside) + coalesce(sum(across), 0)
FROM (
    SELECT time_bucket('1 hour', m.bucket) AS hour, m.device_id, m.point_id, m.avg, m.min,
           m.max, m.count, {times}, {inside} AS inside, {across} AS across
    FROM {source} m
    WHERE m.bucket >= %(lo)s AND m.bucket < %(hours_hi)s {devices}
      AND m.point_id = ANY(%(counters)s)
    WINDOW w AS (PARTITION BY m.device_id, m.point_id, time_bucket('1 hour', m.bucket)
                 ORDER BY m.bucket)
) x
GROUP BY 1, 2, 3
""".replace("{times}", _HOUR_TIMES).replace("{first_last}", _HOUR_FIRST_LAST).replace(
    "{inside}", increase("coalesce(m.first, m.last)", "m.last")).replace(
    "{across}", increase("lag(m.last) OVER w", "coalesce(m.first, m.last)"))
_UPSERT_HOURS = """
INSERT INTO telemetry_1h (bucket, device_id, point_id, avg, min, max, first, first_time,
                          last, last_time, count, rise)
{rows}
ON CONFLICT (device_id, point_id, bucket) DO UPDATE
SET avg = excluded.avg, min = excluded.min, max = excluded.max, first = excluded.first,
    first_time = excluded.first_time, last = excluded.last, last_time = excluded.last_time,
    count = excluded.count, rise = excluded.rise
"""
_HOURS_SQL = _UPSERT_HOURS.replace("{rows}", _HOUR_ROWS.replace("{source}", "telemetry_1m"))
# Whole hours of late data in one pass over the raw rows: minutes, then hours from them.
_LATE_SQL = f"""
WITH m AS MATERIALIZED ({_MINUTE_ROWS}),
minutes AS (INSERT INTO telemetry_1m ({_MINUTE_COLUMNS}) SELECT * FROM m),
hours AS ({_UPSERT_HOURS.replace("{rows}", _HOUR_ROWS.replace("{source}", "m"))
           .replace("{devices}", "")} RETURNING 1)
SELECT (SELECT count(*) FROM m) AS minutes, (SELECT count(*) FROM hours) AS hours
"""

_DEVICES = {
    "all": "",
    "devices": "AND {alias}.device_id = ANY(%(devices)s)",
}


def compute_minutes(conn: psycopg.Connection, lo: dt.datetime, hi: dt.datetime, *,
                    devices: list[int] | None = None) -> int:
    """(Re)compute the minute rows of [lo, hi) from raw rows (of some devices and points).

    Minutes older than the oldest raw row are left alone: their raw rows are gone
    (the raw retention is shorter than the minute one), their rollups are all there is.
    """
    oldest = conn.execute("SELECT min(time) AS t FROM telemetry").fetchone()["t"]
    if oldest is None:
        return 0
    lo = max(lo, coverage.floor(oldest, MINUTE))
    if lo >= hi:
        return 0
    kind = "all" if devices is None else "devices"
    where = _DEVICES[kind].format(alias="t")
    params = {"lo": lo, "hi": hi, "devices": devices}
    conn.execute(_DELETE_MINUTES_SQL.format(devices=where), params)
    return conn.execute(_MINUTES_SQL.format(devices=where), params).rowcount


def _counter_ids(conn: psycopg.Connection) -> list[int]:
    """Return the ids of the energy counters (the points whose hourly rise is kept)."""
    return [r["id"] for r in conn.execute("SELECT id FROM points WHERE name = ANY(%s)",
                                          (list(COUNTER_POINTS),))]


def compute_hours(conn: psycopg.Connection, lo: dt.datetime, hi: dt.datetime, *,
                  devices: list[int] | None = None) -> int:
    """(Re)compute the hourly rows of [lo, hi) (whole hours) from minute rows."""
    kind = "all" if devices is None else "devices"
    query = _HOURS_SQL.replace("{devices}", _DEVICES[kind].format(alias="m"))
    return conn.execute(query, {"lo": lo, "hours_hi": hi, "devices": devices,
                                "counters": _counter_ids(conn)}).rowcount


def touch_hours(conn: psycopg.Connection) -> None:
    """Say that hourly rows changed (caches of figures read from them key on it).

    Called after the change is committed, in a statement of its own: the late-data
    jobs run side by side and must not queue on this row for a whole window.
    """
    conn.execute("UPDATE rollup_state SET changed_at = clock_timestamp() WHERE rollup = '1h'")


def recompute_hours(conn: psycopg.Connection, lo: dt.datetime, hi: dt.datetime, *,
                    devices: list[int],
                    hours_done: dt.datetime | None) -> tuple[int, int]:
    """Recompute whole hours [lo, hi) of some devices: minutes, then hours below ``hours_done``.

    One pass over the raw rows (minutes and hours from them) unless the oldest
    raw rows are younger than ``lo``; return the minute and hour rows written.
    """
    hours_hi = min(hi, hours_done) if hours_done else lo
    oldest = conn.execute("SELECT min(time) AS t FROM telemetry").fetchone()["t"]
    if oldest is None or oldest > lo:
        minutes = compute_minutes(conn, lo, hi, devices=devices)
        hours = compute_hours(conn, lo, hours_hi, devices=devices) if hours_hi > lo else 0
        return minutes, hours
    where = _DEVICES["devices"].format(alias="t")
    params = {"lo": lo, "hi": hi, "hours_hi": max(hours_hi, lo), "devices": devices,
              "counters": _counter_ids(conn)}
    conn.execute(_DELETE_MINUTES_SQL.format(devices=where), params)
    row = conn.execute(_LATE_SQL.format(devices=where), params).fetchone()
    return row["minutes"], row["hours"]


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
            # Late windows wait: they must not rewrite minutes this slice reads or writes.
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", _LATE_LOCK)
            rows += _compute(conn, rollup, done, end)
            conn.execute("UPDATE rollup_state SET done_until = %s WHERE rollup = %s",
                         (end, rollup.name))
        if rollup.name == "1h":
            touch_hours(conn)
        done = end
    return {"rollup": rollup.name, "rows": rows, "done_until": done,
            "watermark": state["watermark"]}


# ---- late data ----------------------------------------------------------------------------

Part = tuple[int, int]  # (k, n): the windows numbered k modulo n since the epoch
ALL: Part = (0, 1)
# Late windows are whole blocks of LATE_WINDOW since the Unix epoch; a part takes the
# newest of its blocks (the block number modulo n) that holds pending minutes below
# the minutes' done_until. Parts never share a minute nor an hour.
_NEWEST_BLOCK_SQL = """
WITH x AS (
    SELECT extract(epoch FROM lo) AS lo_s,
           floor((extract(epoch FROM least(hi, %(done)s)) - 1e-6) / %(width)s)::bigint AS last
    FROM rollup_pending WHERE lo < %(done)s
), c AS (
    SELECT lo_s, last - (((last - %(part)s) %% %(parts)s) + %(parts)s) %% %(parts)s AS block
    FROM x
)
SELECT max(block) AS block FROM c WHERE (block + 1) * %(width)s > lo_s
"""
# Rows the other part holds are skipped (it puts back what lies in our blocks).
_TAKE_SQL = """
DELETE FROM rollup_pending WHERE (device_id, lo, hi) IN (
    SELECT device_id, lo, hi FROM rollup_pending WHERE lo < %(end)s AND hi > %(start)s
    FOR UPDATE SKIP LOCKED)
RETURNING device_id, lo, hi, refresh
"""
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _floor_hour(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: dt.datetime) -> dt.datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def _newest_block(conn: psycopg.Connection, width: dt.timedelta, part: Part,
                  done: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    row = conn.execute(_NEWEST_BLOCK_SQL, {"done": done, "width": width.total_seconds(),
                                           "part": part[0], "parts": part[1]}).fetchone()
    if row["block"] is None:
        return None
    start = _EPOCH + row["block"] * width
    return start, min(start + width, done)


def _blocks(device_id: int, lo: dt.datetime, hi: dt.datetime, width: dt.timedelta
            ) -> list[tuple[int, dt.datetime, dt.datetime]]:
    """Cut [lo, hi) at window boundaries, so that parts never wait on each other's ranges."""
    pieces = []
    while lo < hi:
        end = min(_EPOCH + ((lo - _EPOCH) // width + 1) * width, hi)
        pieces.append((device_id, lo, end))
        lo = end
    return pieces


def _take_window(conn: psycopg.Connection, start: dt.datetime, end: dt.datetime,
                 width: dt.timedelta) -> dict[tuple[dt.datetime, dt.datetime], list[int]]:
    """Take the pending ranges over [start, end) (their rest is put back); group devices.

    Each device's ranges become their hull: recomputing a few minutes that were
    not late costs less than a statement per scattered late minute.
    """
    taken = conn.execute(_TAKE_SQL, {"start": start, "end": end}).fetchall()
    for refresh in (False, True):
        mine = [r for r in taken if r["refresh"] is refresh]
        rest = [piece for r in mine if r["lo"] < start
                for piece in _blocks(r["device_id"], r["lo"], start, width)]
        add_pending(conn, rest + [(r["device_id"], end, r["hi"]) for r in mine if r["hi"] > end],
                    refresh=refresh)
    hulls: dict[int, tuple[dt.datetime, dt.datetime]] = {}
    for row in taken:
        lo, hi = max(row["lo"], start), min(row["hi"], end)
        known = hulls.get(row["device_id"])
        hulls[row["device_id"]] = (min(lo, known[0]), max(hi, known[1])) if known else (lo, hi)
    groups: dict[tuple[dt.datetime, dt.datetime], list[int]] = defaultdict(list)
    for device_id, hull in sorted(hulls.items()):
        groups[hull].append(device_id)
    return groups


def recompute_late_window(conn: psycopg.Connection, *, window: dt.timedelta = LATE_WINDOW,
                          part: Part = ALL) -> dict | None:
    """Recompute the newest window of late data of a part in one transaction.

    Returns what was done, or None when the part has nothing left; ``ranges`` is
    0 when another part held every range of the window (try again).
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", _LATE_LOCK)
        state = {r: _state(conn, r)["done_until"] for r in ("1m", "1h")}
        minutes_done = coverage.floor(state["1m"], MINUTE) if state["1m"] else None
        block = _newest_block(conn, window, part, minutes_done) if minutes_done else None
        if block is None:
            return None
        groups = _take_window(conn, *block, window)
        minutes = hours = 0
        for (lo, hi), devices in groups.items():
            done = recompute_hours(conn, _floor_hour(lo), _ceil_hour(hi), devices=devices,
                                   hours_done=state["1h"])
            minutes, hours = minutes + done[0], hours + done[1]
    if groups:
        touch_hours(conn)
    return {"ranges": len(groups), "minute_rows": minutes, "hour_rows": hours,
            "oldest": block[0]}


def catch_up_late(conn: psycopg.Connection, *, budget_s: float = 50.0,
                  window: dt.timedelta = LATE_WINDOW, part: Part = ALL) -> dict:
    """Recompute late data newest first until none is left or the budget is spent."""
    started = time.monotonic()
    totals = {"rollup": f"late {part[0]}/{part[1]}", "windows": 0, "ranges": 0,
              "minute_rows": 0, "hour_rows": 0}
    while time.monotonic() - started < budget_s:
        done = recompute_late_window(conn, window=window, part=part)
        if done is None:
            break
        if not done["ranges"]:
            time.sleep(0.05)  # the other part holds this window's ranges for a moment
            continue
        totals["windows"] += 1
        for key in ("ranges", "minute_rows", "hour_rows"):
            totals[key] += done[key]
        totals["reached"] = done["oldest"]
    totals["pending"] = conn.execute("SELECT count(*) AS n FROM rollup_pending").fetchone()["n"]
    return totals
