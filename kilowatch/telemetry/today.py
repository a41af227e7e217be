"""Today's energy of many sites at once, for the fleet table: counters read since midnight.

A device's energy today is what each counter advanced since the site's local
midnight: the rise inside each closed hour and the increases between hours
(hourly rollup), the reading before midnight interpolated at midnight, and the
live value in Redis for what came after the last closed hour. A counter's first
reading is a baseline, never energy, so a device that starts mid-day counts
from its first reading; a drop of more than a tenth is a reset after which the
new value counts from zero (:mod:`kilowatch.telemetry.counters`). A counter
without any reading since midnight has no figure (None), never zero.

Hourly figures change only when the worker writes hourly rows (a closed hour,
late data): they are cached in Redis per device under ``rollup_state.changed_at``
(for at most :data:`CACHE_S`). Devices with late data pending since midnight are read from
raw rows instead (the readings either side of midnight and the latest one), so
their figure never waits for the worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import redis
from psycopg import sql

from kilowatch.access import AccessScope, site_filter
from kilowatch.redis_client import key
from kilowatch.telemetry.counters import QUANTITIES, advance, increase

QUANTITIES_SHOWN = ("pv", "load", "grid_import", "grid_export")
COUNTERS = {quantity: QUANTITIES[quantity][0] for quantity in QUANTITIES_SHOWN}
CACHE_S = 600

_DEVICES = """
devs AS MATERIALIZED (
    SELECT x.device_id, x.since
    FROM unnest(%(devices)s::int[], %(since)s::timestamptz[]) AS x(device_id, since)
    JOIN devices d ON d.id = x.device_id JOIN sites s ON s.id = d.site_id WHERE {scope}
)"""

# Per device and counter: kWh counted by the hourly readings after midnight (a span
# across midnight counts for its share of time) and the last hourly reading.
_HOURLY_SQL = ("WITH " + _DEVICES + """,
seq AS (
    SELECT h.device_id, h.point_id, devs.since,
           coalesce(h.first_time, h.bucket + interval '1 hour') AS ft,
           coalesce(h.first, h.last) AS fv,
           coalesce(h.last_time, h.bucket + interval '1 hour') AS lt, h.last AS lv, h.rise,
           lag(coalesce(h.last_time, h.bucket + interval '1 hour')) OVER w AS plt,
           lag(h.last) OVER w AS plv
    FROM devs JOIN telemetry_1h h ON h.device_id = devs.device_id
    WHERE h.point_id = ANY(%(points)s) AND h.bucket >= %(earliest)s
      AND h.bucket >= time_bucket('1 hour', devs.since) - interval '1 hour'
      AND h.last IS NOT NULL
    WINDOW w AS (PARTITION BY h.device_id, h.point_id ORDER BY h.bucket)
),
pieces AS (
    SELECT device_id, point_id, since, ft AS t0, lt AS t1, coalesce(rise, {inside}) AS kwh
    FROM seq WHERE lt > ft
    UNION ALL
    SELECT device_id, point_id, since, plt, ft, {across} FROM seq WHERE ft > plt
)
SELECT r.device_id, r.point_id, coalesce(p.kwh, 0) AS kwh, r.last_time, r.last_value
FROM (SELECT device_id, point_id, max(lt) AS last_time, last(lv, lt) AS last_value
      FROM seq GROUP BY 1, 2) r
LEFT JOIN (
    SELECT device_id, point_id,
           sum(kwh * least(1.0, extract(epoch FROM t1 - since) / extract(epoch FROM t1 - t0)))
               AS kwh
    FROM pieces WHERE t1 > since GROUP BY 1, 2
) p USING (device_id, point_id)
""").replace("{inside}", increase("fv", "lv")).replace("{across}", increase("plv", "fv"))

# Raw readings of devices with late data pending: the last before midnight (within a
# day), the first after it and the latest.
_RAW_SQL = ("WITH " + _DEVICES + """
SELECT devs.device_id, p.point_id, b.time AS t0, b.value AS v0, a.time AS t1, a.value AS v1,
       l.time AS t2, l.value AS v2
FROM devs CROSS JOIN unnest(%(points)s::int[]) AS p(point_id)
LEFT JOIN LATERAL (
    SELECT time, value FROM telemetry WHERE device_id = devs.device_id
      AND point_id = p.point_id AND time < devs.since AND time >= devs.since - interval '1 day'
    ORDER BY time DESC LIMIT 1) b ON true
LEFT JOIN LATERAL (
    SELECT time, value FROM telemetry WHERE device_id = devs.device_id
      AND point_id = p.point_id AND time >= devs.since AND time < devs.since + interval '2 days'
    ORDER BY time LIMIT 1) a ON true
LEFT JOIN LATERAL (
    SELECT time, value FROM telemetry WHERE device_id = devs.device_id
      AND point_id = p.point_id AND time >= devs.since AND time < devs.since + interval '2 days'
    ORDER BY time DESC LIMIT 1) l ON true
WHERE a.time IS NOT NULL
""")

Counted = dict[str, list]  # counter point → [kWh since midnight, last time (ISO), last value]


def midnights(sites: Iterable[dict], now: datetime) -> dict[int, datetime]:
    """Return device id → its site's local midnight of today (UTC)."""
    since = {}
    for site in sites:
        tz = ZoneInfo(site["timezone"])
        midnight = datetime.combine(now.astimezone(tz).date(), time(), tz).astimezone(UTC)
        for device in site["devices"]:
            since[device["id"]] = midnight
    return since


def _share(t0: datetime, t1: datetime, since: datetime) -> float:
    """Return the part of (t0, t1] after ``since``."""
    if t0 >= since:
        return 1.0
    return max((t1 - since) / (t1 - t0), 0.0)


def _names(conn: psycopg.Connection) -> dict[int, str]:
    return {r["id"]: r["name"] for r in conn.execute(
        "SELECT id, name FROM points WHERE name = ANY(%s)", (list(COUNTERS.values()),))}


def _query(conn: psycopg.Connection, scope: AccessScope, template: str,
           since: dict[int, datetime], names: dict[int, str]) -> list[dict]:
    params = {"devices": list(since), "since": list(since.values()), "points": list(names),
              "earliest": min(since.values()) - timedelta(hours=2)}
    query = sql.SQL(template).format(scope=site_filter(scope))
    return conn.execute(query, params).fetchall()


def _hourly(conn: psycopg.Connection, client: redis.Redis, scope: AccessScope,
            since: dict[int, datetime], names: dict[int, str]) -> dict[int, Counted]:
    """Return what the hourly readings counted since midnight, cached per device."""
    state = conn.execute("SELECT changed_at FROM rollup_state WHERE rollup = '1h'").fetchone()
    stamp = int(state["changed_at"].timestamp() * 1e6) if state and state["changed_at"] else 0
    keys = {d: key("today", d, int(t.timestamp()), stamp) for d, t in since.items()}
    found = dict(zip(keys, client.mget(list(keys.values())), strict=True)) if keys else {}
    result = {d: json.loads(raw) for d, raw in found.items() if raw is not None}
    missing = {d: since[d] for d, raw in found.items() if raw is None}
    if not missing:
        return result
    fresh: dict[int, Counted] = {d: {} for d in missing}
    for row in _query(conn, scope, _HOURLY_SQL, missing, names):
        fresh[row["device_id"]][names[row["point_id"]]] = [
            row["kwh"], row["last_time"].isoformat(), row["last_value"]]
    pipe = client.pipeline(transaction=False)
    for device_id, counted in fresh.items():
        pipe.set(keys[device_id], json.dumps(counted), ex=CACHE_S)
    pipe.execute()
    return {**result, **fresh}


def _raw(conn: psycopg.Connection, scope: AccessScope, since: dict[int, datetime],
         names: dict[int, str]) -> dict[int, Counted]:
    """Return what raw readings counted since midnight, for devices with late data pending."""
    result: dict[int, Counted] = {d: {} for d in since}
    for row in _query(conn, scope, _RAW_SQL, since, names):
        kwh = advance(row["v1"], row["v2"])
        if row["t0"] is not None:
            kwh += advance(row["v0"], row["v1"]) * _share(row["t0"], row["t1"],
                                                          since[row["device_id"]])
        result[row["device_id"]][names[row["point_id"]]] = [kwh, row["t2"].isoformat(),
                                                            row["v2"]]
    return result


def _pending(conn: psycopg.Connection, since: dict[int, datetime]) -> set[int]:
    rows = conn.execute("SELECT DISTINCT device_id FROM rollup_pending "
                        "WHERE device_id = ANY(%s) AND hi > %s AND NOT refresh",
                        (list(since), min(since.values()) - timedelta(hours=1))).fetchall()
    return {r["device_id"] for r in rows if r["device_id"] in since}


def device_counters(conn: psycopg.Connection, client: redis.Redis, scope: AccessScope,
                    since: dict[int, datetime]) -> dict[int, Counted]:
    """Return device → counter → [kWh since midnight, last reading's time, its value]."""
    if not since:
        return {}
    names = _names(conn)
    late = _pending(conn, since)
    counted = _hourly(conn, client, scope, {d: t for d, t in since.items() if d not in late},
                      names) if len(late) < len(since) else {}
    if late:
        counted.update(_raw(conn, scope, {d: since[d] for d in late}, names))
    return counted


def with_live(counted: Counted, point: str, live_value: float | None,
              live_ts: datetime | None, since: datetime) -> float | None:
    """Add what a live counter value counted after the stored readings; None when unknown."""
    if point not in counted:
        return None
    kwh, last_iso, last_value = counted[point]
    last_time = datetime.fromisoformat(last_iso)
    if live_value is not None and live_ts is not None and live_ts > last_time:
        kwh += advance(last_value, live_value) * _share(last_time, live_ts, since)
    elif last_time <= since:
        return None  # nothing read since midnight
    return kwh
