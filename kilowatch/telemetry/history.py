"""History of points for charts and exports, read tier by tier where each table is complete.

Which table serves which part of a range (:mod:`kilowatch.telemetry.coverage`):
hourly rows, then minute rows, then raw rows for the last minutes and for any
late data the worker has not rolled up yet, so the newest data is always in the
chart and a backfill never leaves a hole. Ranges and the resolution choice live
in :mod:`kilowatch.telemetry.resolution`. Buckets are aligned in the site's
time zone. Every query joins ``sites`` with :func:`~kilowatch.access.site_filter`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from kilowatch import fleet
from kilowatch.access import AccessDenied, AccessScope, site_filter
from kilowatch.telemetry import coverage, energy
from kilowatch.telemetry.coverage import SOURCES, Span
from kilowatch.telemetry.resolution import (  # re-exported: callers read ranges here too
    DAY,
    HOUR,
    LADDER,
    MAX_POINTS,
    MIN_POINTS,
    HistoryError,
    Resolution,
    choose_resolution,
    energy_ratios,
    energy_window,
    export_resolution,
    time_range,
)

__all__ = ["LADDER", "MAX_POINTS", "MAX_SERIES", "MIN_POINTS", "ExportColumn", "History",
           "HistoryError", "Resolution", "Series", "choose_resolution", "device_history",
           "device_points", "energy_bars", "energy_ratios", "energy_window", "export_columns",
           "export_resolution", "export_rows", "get_device", "point_units", "site_history",
           "site_points", "time_range"]

MAX_SERIES = 64

# How the devices of a site combine into one site value, per point (default: sum).
SITE_COMBINE = {"bms.soc": "avg", "bms.soh": "avg", "bms.v": "avg", "bms.t_min": "min",
                "bms.t_max": "max", "bms.cell_v_min": "min", "bms.cell_v_max": "max",
                "pcs.state": "max"}


@dataclasses.dataclass(frozen=True)
class Series:
    """One point's values per bucket (UTC times, bucket starts), oldest first."""

    point: str
    unit: str | None
    times: list[datetime]
    avg: list[float | None]
    min: list[float | None]
    max: list[float | None]
    device_id: int | None = None


@dataclasses.dataclass(frozen=True)
class History:
    """Series of one site (combined over its devices) or one device, and how they were read."""

    site_id: int
    timezone: str
    start: datetime
    end: datetime
    resolution: Resolution
    series: dict[str, Series]
    catching_up: bool = False  # some of it was read from raw rows not rolled up yet


# ---- reading ------------------------------------------------------------------------------

def point_units(conn: psycopg.Connection, names: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Return name → (point id, unit) for the known points among ``names``."""
    rows = conn.execute("SELECT id, name, unit FROM points WHERE name = ANY(%s)",
                        (list(names),)).fetchall()
    known = {row["name"]: (row["id"], row["unit"]) for row in rows}
    return {name: known[name] for name in names if name in known}  # in the asked order


_TIER = """
SELECT CASE WHEN %(local_days)s THEN time_bucket(%(width)s, {time}, %(tz)s)
            ELSE time_bucket(%(width)s, {time}, %(origin)s::timestamptz) END AS t,
       x.device_id, x.point_id,
       sum({avg} * {count}) AS total, sum({count}) AS n, min({min}) AS lo, max({max}) AS hi
FROM {table} x JOIN devs ON devs.id = x.device_id
WHERE x.device_id = ANY(%({key}_devices)s) AND x.point_id = ANY(%(points)s)
  AND {time} >= %({key}_lo)s AND {time} < %({key}_hi)s AND {not_null}
GROUP BY 1, 2, 3
"""
_COLUMNS = {
    "raw": dict(time="x.time", avg="x.value", count="1", min="x.value", max="x.value",
                not_null="x.value IS NOT NULL"),
    "1m": dict(time="x.bucket", avg="x.avg", count="x.count", min="x.min", max="x.max",
               not_null="x.avg IS NOT NULL"),
    "1h": dict(time="x.bucket", avg="x.avg", count="x.count", min="x.min", max="x.max",
               not_null="x.avg IS NOT NULL"),
}


def _tier(source: str, key: str) -> sql.Composed:
    parts = {name: sql.SQL(value) for name, value in _COLUMNS[source].items()}
    return sql.SQL(_TIER.replace("{key}", key)).format(
        table=sql.Identifier(SOURCES[source]), **parts)


def _span_params(spans: Sequence[Span]) -> dict[str, object]:
    params: dict[str, object] = {}
    for index, span in enumerate(spans):
        params.update({f"s{index}_devices": list(span.device_ids), f"s{index}_lo": span.lo,
                       f"s{index}_hi": span.hi})
    return params


def _bucket_query(scope: AccessScope, spans: Sequence[Span], *, by_site: bool,
                  ordered: bool = True) -> sql.Composed:
    """Rows (t, device_id, point_id, avg, min, max) per device and bucket, from the spans."""
    tiers = sql.SQL(" UNION ALL ").join(_tier(s.source, f"s{i}") for i, s in enumerate(spans))
    devices = sql.SQL("d.site_id = %(site_id)s") if by_site else sql.SQL(
        "d.id = %(device_id)s")
    return sql.SQL(
        "WITH devs AS (SELECT d.id FROM devices d JOIN sites s ON s.id = d.site_id "
        "WHERE {devices} AND {scope}) "
        "SELECT t, device_id, point_id, sum(total) / nullif(sum(n), 0) AS avg, "
        "min(lo) AS min, max(hi) AS max FROM ({tiers}) u GROUP BY 1, 2, 3{order}"
    ).format(devices=devices, scope=site_filter(scope), tiers=tiers,
             order=sql.SQL(" ORDER BY 1" if ordered else ""))


def _device_ids(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                device_id: int | None) -> list[int]:
    if device_id is not None:
        return [device_id]
    return [d["id"] for d in fleet.list_devices(conn, scope, site_id)]


# Devices combine per point: the mean (SoC), the lowest or highest (temperatures) or
# the sum (powers); each point's buckets come back as arrays in time order.
_SERIES_SQL = """
SELECT point_id, array_agg(t ORDER BY t) AS times, array_agg(avg ORDER BY t) AS avg,
       array_agg(lo ORDER BY t) AS min, array_agg(hi ORDER BY t) AS max
FROM (
    SELECT t, point_id,
           CASE WHEN point_id = ANY(%(avg_ids)s) THEN avg(avg)
                WHEN point_id = ANY(%(min_ids)s) THEN min(avg)
                WHEN point_id = ANY(%(max_ids)s) THEN max(avg) ELSE sum(avg) END AS avg,
           CASE WHEN point_id = ANY(%(sum_ids)s) THEN sum(min) ELSE min(min) END AS lo,
           CASE WHEN point_id = ANY(%(sum_ids)s) THEN sum(max) ELSE max(max) END AS hi
    FROM ({buckets}) b GROUP BY t, point_id
) c GROUP BY point_id
"""


def _bucket_params(resolution: Resolution, start: datetime, timezone: str) -> dict:
    """Align buckets on the site's local midnight of ``start``.

    Days and longer follow the zone's calendar (``time_bucket`` with the zone);
    shorter buckets count from that midnight, which is several times cheaper and
    differs only by the hour a DST change moves them.
    """
    tz = ZoneInfo(timezone)
    midnight = datetime.combine(start.astimezone(tz).date(), time(), tz)
    return {"width": resolution.width, "tz": timezone, "origin": midnight,
            "local_days": bool(resolution.width and resolution.width >= DAY)}


def _combine_params(units: dict[str, tuple[int, str]], by_site: bool) -> dict[str, list[int]]:
    rules = {name: SITE_COMBINE.get(name, "sum") if by_site else "sum" for name in units}
    return {f"{rule}_ids": [units[n][0] for n, r in rules.items() if r == rule]
            for rule in ("avg", "min", "max", "sum")}


def _to_series(rows: list[dict], names: dict[int, str], units: dict[str, tuple[int, str]],
               *, device_id: int | None) -> dict[str, Series]:
    """Turn one array row per point into series, in the order the points were asked."""
    by_name = {names[row["point_id"]]: row for row in rows}
    result = {}
    for name, (_, unit) in units.items():
        row = by_name.get(name)
        result[name] = Series(point=name, unit=unit, times=row["times"] if row else [],
                              avg=row["avg"] if row else [], min=row["min"] if row else [],
                              max=row["max"] if row else [], device_id=device_id)
    return result


def _read(conn: psycopg.Connection, scope: AccessScope, site: dict, points: Sequence[str],
          start: datetime, end: datetime, resolution: Resolution | None, *,
          device_id: int | None = None) -> History:
    if start.tzinfo is None or end.tzinfo is None:
        raise HistoryError("start and end must carry a time zone")
    if not points or len(points) > MAX_SERIES:
        raise HistoryError(f"pick between 1 and {MAX_SERIES} points")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    resolution = resolution or choose_resolution(start, end)
    if resolution.width is None:
        raise HistoryError("charts need a bucketed resolution")
    units = point_units(conn, points)
    plan = coverage.plan(conn, _device_ids(conn, scope, site["id"], device_id), start, end,
                         coarsest=resolution.source)
    params: dict[str, object] = {"site_id": site["id"], "device_id": device_id,
                                 "points": [pid for pid, _ in units.values()],
                                 **_bucket_params(resolution, start, site["timezone"]),
                                 **_span_params(plan.spans),
                                 **_combine_params(units, device_id is None)}
    rows = []
    if units and plan.spans:
        buckets = _bucket_query(scope, plan.spans, by_site=device_id is None, ordered=False)
        rows = conn.execute(sql.SQL(_SERIES_SQL).format(buckets=buckets), params).fetchall()
    names = {pid: name for name, (pid, _) in units.items()}
    series = _to_series(rows, names, units, device_id=device_id)
    return History(site["id"], site["timezone"], start, end, resolution, series,
                   plan.catching_up)


def site_history(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                 points: Sequence[str], start: datetime, end: datetime, *,
                 resolution: Resolution | None = None) -> History:
    """Return a visible site's points per bucket over [start, end), devices combined."""
    site = fleet.get_site(conn, scope, site_id)
    return _read(conn, scope, site, points, start, end, resolution)


def get_device(conn: psycopg.Connection, scope: AccessScope, device_id: int) -> dict:
    """Return a visible device with its site's time zone, or raise AccessDenied."""
    query = sql.SQL(
        "SELECT d.*, s.timezone, s.name AS site_name FROM devices d "
        "JOIN sites s ON s.id = d.site_id WHERE d.id = %s AND {}").format(site_filter(scope))
    row = conn.execute(query, (device_id,)).fetchone()
    if row is None:
        raise AccessDenied("no such device")
    return row


def device_history(conn: psycopg.Connection, scope: AccessScope, device_id: int,
                   points: Sequence[str], start: datetime, end: datetime, *,
                   resolution: Resolution | None = None) -> History:
    """Return a visible device's points per bucket over [start, end)."""
    device = get_device(conn, scope, device_id)
    site = {"id": device["site_id"], "timezone": device["timezone"]}
    return _read(conn, scope, site, points, start, end, resolution, device_id=device_id)


def device_points(conn: psycopg.Connection, scope: AccessScope, device_id: int) -> list[dict]:
    """Return the points a visible device has sent (name, unit, description), by name."""
    query = sql.SQL(
        "SELECT p.name, p.unit, p.description FROM device_points dp "
        "JOIN points p ON p.id = dp.point_id JOIN devices d ON d.id = dp.device_id "
        "JOIN sites s ON s.id = d.site_id WHERE dp.device_id = %s AND {} ORDER BY p.name"
    ).format(site_filter(scope))
    return conn.execute(query, (device_id,)).fetchall()


def site_points(conn: psycopg.Connection, scope: AccessScope, site_id: int) -> list[dict]:
    """Return the points any device of a visible site has sent (name, unit), by name."""
    query = sql.SQL(
        "SELECT DISTINCT p.name, p.unit FROM device_points dp "
        "JOIN points p ON p.id = dp.point_id JOIN devices d ON d.id = dp.device_id "
        "JOIN sites s ON s.id = d.site_id WHERE d.site_id = %s AND {} ORDER BY p.name"
    ).format(site_filter(scope))
    return conn.execute(query, (site_id,)).fetchall()


# ---- energy bars --------------------------------------------------------------------------

def energy_bars(conn: psycopg.Connection, scope: AccessScope, site_id: int, start: datetime,
                end: datetime, step: energy.Step) -> energy.SiteEnergy:
    """Return a visible site's energy per hour, local day or month (see ``energy.site_energy``).

    Bars are read at their boundaries from the counters like bills, so a bar is
    never a counter's absolute value; a bar without readings has no value.
    """
    if step not in (HOUR, "day", "month"):
        raise HistoryError("energy bars are per hour, day or month")
    return energy.site_energy(conn, scope, site_id, start, end, step)


# ---- exports ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ExportColumn:
    """One column of an export: a device's point and its unit."""

    device_id: int
    serial: str
    point_id: int
    point: str
    unit: str | None

    @property
    def header(self) -> str:
        """Say the column in the file's header: ``SIM-0001 pcs.p (kW)``."""
        return f"{self.serial} {self.point}" + (f" ({self.unit})" if self.unit else "")


def export_columns(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                   points: Sequence[str]) -> list[ExportColumn]:
    """Return the (device, point) columns of a visible site among ``points``."""
    query = sql.SQL(
        "SELECT d.id AS device_id, d.serial, p.id AS point_id, p.name, p.unit "
        "FROM device_points dp JOIN points p ON p.id = dp.point_id "
        "JOIN devices d ON d.id = dp.device_id JOIN sites s ON s.id = d.site_id "
        "WHERE d.site_id = %s AND p.name = ANY(%s) AND {} ORDER BY d.serial, p.name"
    ).format(site_filter(scope))
    rows = conn.execute(query, (site_id, list(points))).fetchall()
    return [ExportColumn(r["device_id"], r["serial"], r["point_id"], r["name"], r["unit"])
            for r in rows]


def _export_query(scope: AccessScope, resolution: Resolution,
                  spans: Sequence[Span]) -> sql.Composed:
    if resolution.width is None:
        return sql.SQL(
            "WITH devs AS (SELECT d.id FROM devices d JOIN sites s ON s.id = d.site_id "
            "WHERE d.site_id = %(site_id)s AND {scope}) "
            "SELECT x.time AS t, x.device_id, x.point_id, x.value AS avg FROM telemetry x "
            "JOIN devs ON devs.id = x.device_id WHERE x.point_id = ANY(%(points)s) "
            "AND x.time >= %(s0_lo)s AND x.time < %(s0_hi)s ORDER BY x.time"
        ).format(scope=site_filter(scope))
    return _bucket_query(scope, spans, by_site=True)


@contextlib.contextmanager
def time_limit(conn: psycopg.Connection, timeout_s: int) -> Iterator[None]:
    """Run the block in a transaction whose statements the server cancels after ``timeout_s``.

    An export's query then raises ``psycopg.errors.QueryCanceled`` instead of
    holding a pooled connection for as long as it likes.
    """
    with conn.transaction():
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{timeout_s}s",))
        yield


def export_rows(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                columns: Sequence[ExportColumn], start: datetime, end: datetime,
                resolution: Resolution) -> Iterator[tuple[datetime, list[float | None]]]:
    """Yield (time, one value per column) in time order, streamed from the server."""
    site = fleet.get_site(conn, scope, site_id)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise HistoryError("the end of a range must come after its start")
    devices = sorted({c.device_id for c in columns})
    if resolution.width is None:
        spans = [Span("raw", start, end, tuple(devices))]
    else:
        spans = coverage.plan(conn, devices, start, end, coarsest=resolution.source).spans
    if not columns or not spans:
        return
    index = {(c.device_id, c.point_id): i for i, c in enumerate(columns)}
    params: dict[str, object] = {"site_id": site_id,
                                 "points": sorted({c.point_id for c in columns}),
                                 **_bucket_params(resolution, start, site["timezone"]),
                                 **_span_params(spans)}
    current: datetime | None = None
    values: list[float | None] = []
    with conn.cursor() as cur:
        for row in cur.stream(_export_query(scope, resolution, spans), params):
            position = index.get((row["device_id"], row["point_id"]))
            if position is None:
                continue
            if row["t"] != current:
                if current is not None:
                    yield current, values
                current, values = row["t"], [None] * len(columns)
            values[position] = row["avg"]
    if current is not None:
        yield current, values
