"""History of points for charts and exports: ranges, resolution choice and tiered queries.

A chart never draws more than :data:`MAX_POINTS` points per trace, so the
resolution follows the range: the coarsest table that still gives
:data:`MIN_POINTS` rows over the range (``telemetry_1h`` from 20 days,
``telemetry_1m`` from 8 hours, raw ``telemetry`` below), then the finest bucket
width from :data:`LADDER` that keeps the count under the limit (a year of a
site is drawn from hourly rows in 6-hour buckets, 30 days hour by hour).

Rollups are complete below their ``rollup_state.done_until``; a query reads each
table only where it is complete and the next finer one after that (hourly rows,
then minute rows, then raw rows for the last minutes), so the newest data is
always in the chart. Buckets are aligned in the site's time zone. Every query
joins ``sites`` with :func:`~kilowatch.access.site_filter`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from kilowatch import fleet
from kilowatch.access import AccessDenied, AccessScope, site_filter
from kilowatch.telemetry import energy

MAX_POINTS = 2000
MIN_POINTS = 480  # a table is used once the range holds this many of its rows
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
LADDER = tuple(timedelta(seconds=s) for s in (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
    86400, 2 * 86400, 7 * 86400))
RANGES = ("today", "yesterday", "7d", "30d", "12m", "custom")
SOURCES = {"raw": "telemetry", "1m": "telemetry_1m", "1h": "telemetry_1h"}
MAX_SERIES = 64
CUSTOM_YEARS = (1970, 2100)  # custom days beyond these are typos, and overflow near year 1/9999

# How the devices of a site combine into one site value, per point (default: sum).
SITE_COMBINE = {"bms.soc": "avg", "bms.soh": "avg", "bms.v": "avg", "bms.t_min": "min",
                "bms.t_max": "max", "bms.cell_v_min": "min", "bms.cell_v_max": "max",
                "pcs.state": "max"}


class HistoryError(ValueError):
    """A history request that cannot be answered (bad range, points or resolution)."""


@dataclasses.dataclass(frozen=True)
class Resolution:
    """Where a series is read from (``raw``, ``1m`` or ``1h``) and its bucket width."""

    source: str
    width: timedelta | None  # None: raw samples, not bucketed (exports only)

    @property
    def label(self) -> str:
        """Say it for people: ``raw``, ``1 min``, ``30 min``, ``6 h``, ``1 day``."""
        if self.width is None:
            return "raw"
        seconds = int(self.width.total_seconds())
        for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
            if seconds % size == 0:
                count = seconds // size
                return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''}"
        return f"{seconds} s"


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


def choose_resolution(start: datetime, end: datetime, *,
                      max_points: int = MAX_POINTS) -> Resolution:
    """Pick the coarsest table still giving ``MIN_POINTS`` buckets, then the finest width.

    The width is the finest of :data:`LADDER` that keeps ``end - start`` under
    ``max_points`` buckets, and never finer than the table's own rows.
    """
    if end <= start:
        raise HistoryError("the end of a range must come after its start")
    span = end - start
    source = "1h" if span / HOUR >= MIN_POINTS else "1m" if span / MINUTE >= MIN_POINTS \
        else "raw"
    floor = {"1h": HOUR, "1m": MINUTE, "raw": LADDER[0]}[source]
    width = next((w for w in LADDER if span / w <= max_points and w >= floor), LADDER[-1])
    return Resolution(source, width)


def export_resolution(name: str) -> Resolution:
    """Return the resolution of an export choice: ``raw``, ``1m``, ``15m``, ``1h`` or ``1d``."""
    choices = {"raw": Resolution("raw", None), "1m": Resolution("1m", MINUTE),
               "15m": Resolution("1m", timedelta(minutes=15)), "1h": Resolution("1h", HOUR),
               "1d": Resolution("1h", DAY)}
    if name not in choices:
        raise HistoryError(f"resolution must be one of {', '.join(choices)}")
    return choices[name]


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tz).astimezone(UTC)


def time_range(key: str, timezone: str, *, now: datetime | None = None,
               first_day: date | None = None, last_day: date | None = None
               ) -> tuple[datetime, datetime]:
    """Return [start, end) in UTC for a range name, in the site's zone (custom: whole days)."""
    tz = ZoneInfo(timezone)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    today = now.astimezone(tz).date()
    if key == "today":
        return _midnight(today, tz), _midnight(today + DAY, tz)
    if key == "yesterday":
        return _midnight(today - DAY, tz), _midnight(today, tz)
    if key in ("7d", "30d"):
        return now - timedelta(days=int(key[:-1])), now
    if key == "12m":
        return now - timedelta(days=365), now
    if key == "custom":
        if first_day is None or last_day is None or last_day < first_day:
            raise HistoryError("pick a first and a last day, the last not before the first")
        if first_day.year < CUSTOM_YEARS[0] or last_day.year > CUSTOM_YEARS[1]:
            raise HistoryError("pick days between 1970 and 2100")
        if (last_day - first_day).days > 3 * 366:
            raise HistoryError("a custom range is at most three years")
        return _midnight(first_day, tz), _midnight(last_day + DAY, tz)
    raise HistoryError(f"range must be one of {', '.join(RANGES)}")


def energy_window(start: datetime, end: datetime, timezone: str) -> tuple[datetime, datetime,
                                                                          object]:
    """Widen a range to whole local days (or months) and pick the energy bar step."""
    tz = ZoneInfo(timezone)
    first = start.astimezone(tz).date()
    last = (end - timedelta(microseconds=1)).astimezone(tz).date()
    days = (last - first).days + 1
    if days <= 2:
        return _midnight(first, tz), _midnight(last + DAY, tz), HOUR
    if days <= 62:
        return _midnight(first, tz), _midnight(last + DAY, tz), "day"
    month_start = first.replace(day=1)
    after = date(last.year + last.month // 12, last.month % 12 + 1, 1)
    return _midnight(month_start, tz), _midnight(after, tz), "month"


def energy_ratios(totals: dict[str, float | None]) -> dict[str, float | None]:
    """Return self-consumption (PV used on site / PV) and self-sufficiency (1 − import / load)."""
    pv, export = totals.get("pv"), totals.get("grid_export") or 0.0
    load, grid_import = totals.get("load"), totals.get("grid_import")
    consumption = None
    if pv:
        consumption = min(max((pv - export) / pv, 0.0), 1.0)
    sufficiency = None
    if load and grid_import is not None:
        sufficiency = min(max(1.0 - grid_import / load, 0.0), 1.0)
    return {"self_consumption": consumption, "self_sufficiency": sufficiency}


# ---- reading ------------------------------------------------------------------------------

def rollup_cuts(conn: psycopg.Connection) -> dict[str, datetime | None]:
    """Return, per rollup, the time below which it is complete (None: never computed)."""
    rows = conn.execute("SELECT rollup, done_until FROM rollup_state").fetchall()
    return {row["rollup"]: row["done_until"] for row in rows}


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
WHERE x.point_id = ANY(%(points)s) AND {time} >= %({lo})s AND {time} < %({hi})s
  AND {not_null}
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


def _tier(source: str, lo: str, hi: str) -> sql.Composed:
    parts = {key: sql.SQL(value) for key, value in _COLUMNS[source].items()}
    return sql.SQL(_TIER).format(table=sql.Identifier(SOURCES[source]), lo=sql.SQL(lo),
                                 hi=sql.SQL(hi), **parts)


def _tier_bounds(resolution: Resolution, start: datetime, end: datetime,
                 cuts: dict[str, datetime | None]) -> dict[str, tuple[datetime, datetime]]:
    """Split [start, end) between the tables: coarsest first, each where it is complete."""
    order = {"1h": ("1h", "1m", "raw"), "1m": ("1m", "raw"), "raw": ("raw",)}[resolution.source]
    bounds: dict[str, tuple[datetime, datetime]] = {}
    lo = start
    for source in order:
        cut = end if source == "raw" else (cuts.get(source) or start)
        hi = min(max(cut, lo), end)
        if hi > lo:
            bounds[source] = (lo, hi)
        lo = hi
    return bounds


def _bucket_query(scope: AccessScope, sources: Sequence[str], *, by_site: bool,
                  ordered: bool = True) -> sql.Composed:
    """Rows (t, device_id, point_id, avg, min, max) per device and bucket, from the tiers."""
    tiers = sql.SQL(" UNION ALL ").join(_tier(s, f"{s}_lo", f"{s}_hi") for s in sources)
    devices = sql.SQL("d.site_id = %(site_id)s") if by_site else sql.SQL(
        "d.id = %(device_id)s")
    return sql.SQL(
        "WITH devs AS (SELECT d.id FROM devices d JOIN sites s ON s.id = d.site_id "
        "WHERE {devices} AND {scope}) "
        "SELECT t, device_id, point_id, sum(total) / nullif(sum(n), 0) AS avg, "
        "min(lo) AS min, max(hi) AS max FROM ({tiers}) u GROUP BY 1, 2, 3{order}"
    ).format(devices=devices, scope=site_filter(scope), tiers=tiers,
             order=sql.SQL(" ORDER BY 1" if ordered else ""))


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
    bounds = _tier_bounds(resolution, start, end, rollup_cuts(conn))
    params: dict[str, object] = {"site_id": site["id"], "device_id": device_id,
                                 "points": [pid for pid, _ in units.values()],
                                 **_bucket_params(resolution, start, site["timezone"])}
    for source, (lo, hi) in bounds.items():
        params[f"{source}_lo"], params[f"{source}_hi"] = lo, hi
    params.update(_combine_params(units, device_id is None))
    rows = []
    if units and bounds:
        buckets = _bucket_query(scope, list(bounds), by_site=device_id is None, ordered=False)
        rows = conn.execute(sql.SQL(_SERIES_SQL).format(buckets=buckets), params).fetchall()
    names = {pid: name for name, (pid, _) in units.items()}
    series = _to_series(rows, names, units, device_id=device_id)
    return History(site["id"], site["timezone"], start, end, resolution, series)


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

_ENERGY_SQL = """
WITH devs AS (
    SELECT d.id FROM devices d JOIN sites s ON s.id = d.site_id
    WHERE d.site_id = %(site_id)s AND {scope}
),
readings AS (
    SELECT x.device_id, x.point_id, x.bucket + interval '1 hour' AS t, x.last AS v
    FROM telemetry_1h x JOIN devs ON devs.id = x.device_id
    WHERE x.point_id = ANY(%(points)s) AND x.bucket >= %(h_lo)s AND x.bucket < %(h_hi)s
      AND x.last IS NOT NULL
    UNION ALL
    SELECT x.device_id, x.point_id, x.bucket + interval '1 minute', x.last
    FROM telemetry_1m x JOIN devs ON devs.id = x.device_id
    WHERE x.point_id = ANY(%(points)s) AND x.bucket >= %(m_lo)s AND x.bucket < %(m_hi)s
      AND x.last IS NOT NULL
    UNION ALL
    SELECT x.device_id, x.point_id, x.time, x.value
    FROM telemetry x JOIN devs ON devs.id = x.device_id
    WHERE x.point_id = ANY(%(points)s) AND x.time >= %(r_lo)s AND x.time < %(r_hi)s
      AND x.value IS NOT NULL
),
deltas AS (
    SELECT point_id, t, lag(v) OVER w AS prev,
           CASE WHEN v >= lag(v) OVER w THEN v - lag(v) OVER w ELSE v END AS delta
    FROM readings WINDOW w AS (PARTITION BY device_id, point_id ORDER BY t)
)
SELECT {bucket} AS bucket, point_id, sum(delta) AS kwh
FROM deltas WHERE prev IS NOT NULL AND t > %(lo)s AND t <= %(hi)s
GROUP BY 1, 2
"""
_ENERGY_BUCKETS = {
    "hour": "time_bucket(interval '1 hour', t - interval '1 microsecond', %(lo)s::timestamptz)",
    "day": "date_trunc('day', (t - interval '1 microsecond') AT TIME ZONE %(tz)s) "
           "AT TIME ZONE %(tz)s",
    "month": "date_trunc('month', (t - interval '1 microsecond') AT TIME ZONE %(tz)s) "
             "AT TIME ZONE %(tz)s",
}
_BALANCE = (("grid_import", 1), ("grid_export", -1), ("pv", 1), ("battery_discharge", 1),
            ("battery_charge", -1))


def _energy_bounds(start: datetime, end: datetime,
                   cuts: dict[str, datetime | None]) -> dict[str, datetime]:
    """Split the readings between the tables (with a baseline before ``start``)."""
    bounds = _tier_bounds(Resolution("1h", HOUR), start - 2 * HOUR, end, cuts)
    params: dict[str, datetime] = {}
    for source, short in (("1h", "h"), ("1m", "m"), ("raw", "r")):
        lo, hi = bounds.get(source, (start, start))
        params[f"{short}_lo"], params[f"{short}_hi"] = lo, hi
    return params


def _derive_load(values: dict[str, dict[datetime, float]], edges: list[datetime]) -> None:
    present = [(q, sign) for q, sign in _BALANCE if q in values]
    load = {}
    for edge in edges:
        parts = [values[q].get(edge) for q, _ in present]
        if all(p is not None for p in parts):
            load[edge] = math.fsum(p * sign for p, (_, sign) in zip(parts, present, strict=True))
    values["load"] = load


def energy_bars(conn: psycopg.Connection, scope: AccessScope, site_id: int, start: datetime,
                end: datetime, step: energy.Step) -> energy.SiteEnergy:
    """Return a visible site's energy per hour, local day or month from its counters.

    One query: each counter's increases between consecutive readings (hourly
    rollup, then minute rollup, then raw rows), a decrease being a reset after
    which the new value counts from zero, summed per bucket of the later
    reading. A bucket without readings has no value (None), never zero. Without
    a load counter the load is derived from the balance. Returns
    ``kilowatch.telemetry.energy.SiteEnergy`` (gaps are not spread: a bar after a gap
    holds the energy counted across it).
    """
    site = fleet.get_site(conn, scope, site_id)
    kind = "hour" if isinstance(step, timedelta) else str(step)
    if kind not in _ENERGY_BUCKETS or (kind == "hour" and step != HOUR):
        raise HistoryError("energy bars are per hour, day or month")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    counters = {spec[0]: quantity for quantity, spec in energy.QUANTITIES.items()}
    units = point_units(conn, list(counters))
    names = {pid: name for name, (pid, _) in units.items()}
    params = {"site_id": site_id, "points": [pid for pid, _ in units.values()], "lo": start,
              "hi": end, "tz": site["timezone"],
              **_energy_bounds(start, end, rollup_cuts(conn))}
    query = sql.SQL(_ENERGY_SQL).format(scope=site_filter(scope),
                                        bucket=sql.SQL(_ENERGY_BUCKETS[kind]))
    values: dict[str, dict[datetime, float]] = {}
    for row in conn.execute(query, params):
        quantity = counters[names[row["point_id"]]]
        values.setdefault(quantity, {})[row["bucket"]] = row["kwh"]
    edges = energy.boundaries(start, end, step, site["timezone"])
    methods = {quantity: "counter" for quantity in values}
    if "load" not in values and "grid_import" in values:
        _derive_load(values, edges[:-1])
        methods["load"] = "derived"
    intervals = [energy.EnergyInterval(a, b, {q: v.get(a) for q, v in values.items()},
                                       frozenset())
                 for a, b in itertools.pairwise(edges)]
    return energy.SiteEnergy(site_id, site["timezone"], intervals, methods)


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
                  bounds: dict[str, tuple[datetime, datetime]]) -> sql.Composed:
    if resolution.width is None:
        return sql.SQL(
            "WITH devs AS (SELECT d.id FROM devices d JOIN sites s ON s.id = d.site_id "
            "WHERE d.site_id = %(site_id)s AND {scope}) "
            "SELECT x.time AS t, x.device_id, x.point_id, x.value AS avg FROM telemetry x "
            "JOIN devs ON devs.id = x.device_id WHERE x.point_id = ANY(%(points)s) "
            "AND x.time >= %(raw_lo)s AND x.time < %(raw_hi)s ORDER BY x.time"
        ).format(scope=site_filter(scope))
    return _bucket_query(scope, list(bounds), by_site=True)


def export_rows(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                columns: Sequence[ExportColumn], start: datetime, end: datetime,
                resolution: Resolution) -> Iterator[tuple[datetime, list[float | None]]]:
    """Yield (time, one value per column) in time order, streamed from the server."""
    site = fleet.get_site(conn, scope, site_id)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise HistoryError("the end of a range must come after its start")
    if resolution.width is None:
        bounds = {"raw": (start, end)}
    else:
        bounds = _tier_bounds(resolution, start, end, rollup_cuts(conn))
    if not columns or not bounds:
        return
    index = {(c.device_id, c.point_id): i for i, c in enumerate(columns)}
    params: dict[str, object] = {"site_id": site_id,
                                 "points": sorted({c.point_id for c in columns}),
                                 **_bucket_params(resolution, start, site["timezone"])}
    for source, (lo, hi) in bounds.items():
        params[f"{source}_lo"], params[f"{source}_hi"] = lo, hi
    current: datetime | None = None
    values: list[float | None] = []
    with conn.cursor() as cur:
        for row in cur.stream(_export_query(scope, resolution, bounds), params):
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
