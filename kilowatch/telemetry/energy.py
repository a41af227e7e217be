"""Interval energy of a site from its devices' counters, read at the intervals' boundaries.

:func:`site_energy` returns the kWh of each quantity (grid import and export,
load, PV, battery charge and discharge) per interval — 15 minutes (or a
multiple) for bills, or days and months in the site's time zone for energy
bars — summed over the site's devices:

- Readings keep their own time (:mod:`kilowatch.telemetry.readings`). Between
  two consecutive readings a counter advances by their difference — a drop of
  more than a tenth is a reset after which the new value counts from zero, a
  smaller drop counts nothing — spread evenly over the time between
  them. An interval's energy is thus the counter read at its two boundaries,
  interpolated between the readings on either side of each, and does not depend
  on how often the device reports. A counter's first reading is a baseline,
  never energy. Hourly rows bring the counter's rise inside each hour.
- Power is the fallback for a device that sends no counter of a quantity: each
  reading (or bucket average) holds until the next reading, at most
  :data:`GAP` past its last one, split by sign for grid exchange
  (``meter.grid.p``: + import, − export) and battery (``pcs.p``: + discharge,
  − charge).
- An interval is complete when the spans between readings cover it and none is
  longer than :data:`GAP` (readings inside one rollup bucket are not checked).
  Energy counted across a longer gap is spread over it (totals stay exact) and
  the intervals are reported in ``gaps``; a past interval that no span reaches
  has no value (None), never zero; intervals that have not begun are neither,
  and the interval in progress is not a gap.
- Rows come from the hourly rollup for steps of whole hours, days and months,
  the minute rollup otherwise, and raw rows wherever the rollups are not complete yet
  (:mod:`kilowatch.telemetry.coverage`), so late data never leaves a hole.
- A site without any load measurement gets its load from the balance
  ``load = grid import − grid export + PV + discharge − charge`` (method
  ``derived``).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from kilowatch import fleet
from kilowatch.access import AccessScope
from kilowatch.telemetry import coverage
from kilowatch.telemetry.counters import QUANTITIES, increase
from kilowatch.telemetry.readings import LOOKBACK, readings_sql

FIFTEEN_MINUTES = timedelta(minutes=15)
GAP = timedelta(minutes=20)  # a longer span between two readings is a gap
_TOLERANCE_S = 1.0
__all__ = ["FIFTEEN_MINUTES", "GAP", "LOOKBACK", "QUANTITIES", "EnergyInterval", "SiteEnergy",
           "Step", "boundaries", "describe_gaps", "site_energy"]

_BALANCE = (("grid_import", 1), ("grid_export", -1), ("pv", 1), ("battery_discharge", 1),
            ("battery_charge", -1))

Step = timedelta | str  # a multiple of 15 minutes, or "day" / "month" in the site's time zone


@dataclasses.dataclass(frozen=True)
class EnergyInterval:
    """kWh per quantity over [start, end); ``gaps`` names quantities with missing data."""

    start: datetime
    end: datetime
    kwh: dict[str, float | None]
    gaps: frozenset[str]


@dataclasses.dataclass(frozen=True)
class SiteEnergy:
    """A site's energy per interval, how each quantity was obtained, and whether rollups lag."""

    site_id: int
    timezone: str
    intervals: list[EnergyInterval]
    methods: dict[str, str]  # quantity -> "counter", "power", "counter+power" or "derived"
    catching_up: bool = False  # some of it was read from raw rows not rolled up yet

    @property
    def quantities(self) -> frozenset[str]:
        """The quantities the site measures (or derives)."""
        return frozenset(self.methods)

    def total(self, quantity: str) -> float | None:
        """Sum a quantity over the intervals that have a value (None when none has)."""
        values = [i.kwh.get(quantity) for i in self.intervals]
        known = [v for v in values if v is not None]
        return math.fsum(known) if known else None

    def gap_ranges(self, quantity: str | None = None) -> list[tuple[datetime, datetime]]:
        """Merge consecutive intervals with a gap (in ``quantity``, or in any) into ranges."""
        ranges: list[list[datetime]] = []
        for item in self.intervals:
            flagged = quantity in item.gaps if quantity else bool(item.gaps)
            if not flagged:
                continue
            if ranges and ranges[-1][1] == item.start:
                ranges[-1][1] = item.end
            else:
                ranges.append([item.start, item.end])
        return [(a, b) for a, b in ranges]


# Pieces: (t0, t1] over which kWh accrued evenly. Counters: inside a row (its rise,
# or first to last reading) and from a row's last reading to the next row's first.
# Powers: a row's average holding from its first reading to the next row's. Pieces
# inside one interval are summed here; the few crossing an edge are spread by time.
# A rollup row from before its readings' times were kept (``slack``: its bucket's
# width) stands for readings anywhere in its bucket, as it was read then: no gap
# unless the reading before it is older than its bucket by GAP, and its average
# power holds over its bucket; it comes before a reading with the same time.
_PIECES_SQL = """
{readings},
seq AS (
    SELECT device_id, point_id, ft, fv, lt, lv, avg, rise, slack,
           lag(lt) OVER w AS plt, lag(lv) OVER w AS plv, lead(ft - slack) OVER w AS nft
    FROM readings WHERE ft IS NOT NULL
    WINDOW w AS (PARTITION BY device_id, point_id ORDER BY ft, lt, slack DESC)
),
pieces AS (
    SELECT device_id, point_id, ft AS t0, lt AS t1, coalesce(rise, {inside}) AS kwh,
           0.0::float8 AS neg, false AS long
    FROM seq WHERE point_id = ANY(%(counters)s) AND lt > ft
    UNION ALL
    SELECT device_id, point_id, plt, ft, {across}, 0.0, ft - plt > %(gap)s + slack
    FROM seq WHERE point_id = ANY(%(counters)s) AND ft > plt
    UNION ALL
    SELECT device_id, point_id, h.t0, h.t1,
           greatest(avg, 0) * extract(epoch FROM h.t1 - h.t0) / 3600,
           greatest(-avg, 0) * extract(epoch FROM h.t1 - h.t0) / 3600, false
    FROM seq CROSS JOIN LATERAL (
        SELECT ft - slack AS t0,
               CASE WHEN slack > interval '0' THEN ft
                    ELSE least(coalesce(nft, lt), lt + %(gap)s) END AS t1) h
    WHERE NOT point_id = ANY(%(counters)s) AND avg IS NOT NULL AND h.t1 > h.t0
),
placed AS (
    SELECT *, width_bucket(t0, %(edges)s::timestamptz[]) AS i0,
           width_bucket(t1 - interval '1 microsecond', %(edges)s::timestamptz[]) AS i1
    FROM pieces WHERE t1 > %(lo)s AND t0 < %(hi)s
)
SELECT device_id, point_id, i0 AS slot, sum(kwh) AS kwh, sum(neg) AS neg,
       sum(extract(epoch FROM t1 - t0))::float8 AS seconds, bool_or(long) AS long,
       NULL::timestamptz AS t0, NULL::timestamptz AS t1
FROM placed WHERE i0 = i1 AND i0 BETWEEN 1 AND %(count)s GROUP BY 1, 2, 3
UNION ALL
SELECT device_id, point_id, NULL, kwh, neg, NULL, long, t0, t1
FROM placed WHERE NOT (i0 = i1 AND i0 BETWEEN 1 AND %(count)s)
""".replace("{inside}", increase("fv", "lv")).replace("{across}", increase("plv", "fv"))


@dataclasses.dataclass
class _Series:
    """One device's quantity per interval: kWh, seconds covered, intervals with a gap."""

    kwh: list[float]
    seconds: list[float]
    long: set[int] = dataclasses.field(default_factory=set)

    @classmethod
    def empty(cls, count: int) -> _Series:
        """Return a series of ``count`` intervals without data."""
        return cls([0.0] * count, [0.0] * count)

    def spread(self, t0: datetime, t1: datetime, kwh: float, edges: list[datetime], *,
               long: bool) -> None:
        """Add ``kwh`` accrued evenly over (t0, t1] to the intervals it overlaps."""
        span = (t1 - t0).total_seconds()
        index = max(bisect.bisect_right(edges, t0) - 1, 0)
        while index < len(edges) - 1 and edges[index] < t1:
            overlap = (min(t1, edges[index + 1]) - max(t0, edges[index])).total_seconds()
            if overlap > 0:
                self.kwh[index] += kwh * overlap / span
                self.seconds[index] += overlap
                if long:
                    self.long.add(index)
            index += 1


def _series(rows: list[dict], column: str, edges: list[datetime]) -> _Series:
    series = _Series.empty(len(edges) - 1)
    for row in rows:
        if row["slot"] is None:
            series.spread(row["t0"], row["t1"], row[column], edges, long=row["long"])
            continue
        index = row["slot"] - 1
        series.kwh[index] += row[column]
        series.seconds[index] += row["seconds"]
        if row["long"]:
            series.long.add(index)
    return series


def _read(conn: psycopg.Connection, device_ids: list[int], points: dict[str, int],
          edges: list[datetime], coarsest: str) -> tuple[dict[tuple[int, str], list], bool]:
    """Return (device, point name) → piece rows over the edges, and whether rollups lag."""
    plan = coverage.plan(conn, device_ids, edges[0], edges[-1], coarsest=coarsest)
    readings, params = readings_sql(plan)
    counters = [points[spec[0]] for spec in QUANTITIES.values() if spec[0] in points]
    params.update({"devices": device_ids, "points": list(points.values()), "lo": edges[0],
                   "hi": edges[-1], "edges": edges, "count": len(edges) - 1, "gap": GAP,
                   "counters": counters})
    names = {point_id: name for name, point_id in points.items()}
    grouped: dict[tuple[int, str], list] = defaultdict(list)
    for row in conn.execute(_PIECES_SQL.replace("{readings}", readings), params):
        grouped[(row["device_id"], names[row["point_id"]])].append(row)
    return grouped, plan.catching_up


def _device_series(grouped: dict[tuple[int, str], list], device_ids: list[int],
                   edges: list[datetime]) -> tuple[dict[str, list[_Series]], dict]:
    """Pick counters (else power) per device and quantity; return series and methods."""
    per_quantity: dict[str, list[_Series]] = defaultdict(list)
    methods: dict[str, set[str]] = defaultdict(set)
    for quantity, (counter, power, sign) in QUANTITIES.items():
        for device_id in device_ids:
            if grouped.get((device_id, counter)):
                per_quantity[quantity].append(_series(grouped[(device_id, counter)], "kwh",
                                                      edges))
                methods[quantity].add("counter")
            elif grouped.get((device_id, power)):
                column = "kwh" if sign > 0 else "neg"
                per_quantity[quantity].append(_series(grouped[(device_id, power)], column,
                                                      edges))
                methods[quantity].add("power")
    return per_quantity, {q: "+".join(sorted(m)) for q, m in methods.items()}


def _combine(series: list[_Series], edges: list[datetime],
             now: datetime) -> tuple[list[float | None], set[int]]:
    """Sum devices interval by interval; an interval lacking one device's data has no value."""
    values: list[float | None] = []
    gaps: set[int] = set()
    for index, (start, end) in enumerate(itertools.pairwise(edges)):
        if start >= now:
            values.append(None)
            continue
        length = (end - start).total_seconds() - _TOLERANCE_S
        known = all(s.seconds[index] > 0 for s in series)
        values.append(math.fsum(s.kwh[index] for s in series) if known else None)
        complete = all(s.seconds[index] >= length and index not in s.long for s in series)
        if end <= now and not complete:
            gaps.add(index)
    return values, gaps


def _derive_load(values: dict[str, list], gaps: dict[str, set], count: int) -> None:
    present = [(q, sign) for q, sign in _BALANCE if q in values]
    load: list[float | None] = []
    for index in range(count):
        parts = [values[q][index] for q, _ in present]
        load.append(None if any(p is None for p in parts) else math.fsum(
            p * sign for p, (_, sign) in zip(parts, present, strict=True)))
    values["load"] = load
    gaps["load"] = set().union(*(gaps[q] for q, _ in present))


def _floor(moment: datetime, width: timedelta) -> datetime:
    return coverage.floor(moment, width)


def boundaries(start: datetime, end: datetime, step: Step, timezone: str) -> list[datetime]:
    """Return the interval boundaries from ``start`` to ``end`` (UTC) for a step."""
    if isinstance(step, timedelta):
        if step <= timedelta(0) or step % FIFTEEN_MINUTES:
            raise ValueError("the step must be a multiple of 15 minutes, 'day' or 'month'")
        if start != _floor(start, FIFTEEN_MINUTES) or end != _floor(end, FIFTEEN_MINUTES):
            raise ValueError("start and end must fall on a quarter hour")
        count = math.ceil((end - start) / step)
        return [min(start + i * step, end) for i in range(count + 1)]
    if step not in ("day", "month"):
        raise ValueError("the step must be a multiple of 15 minutes, 'day' or 'month'")
    tz = ZoneInfo(timezone)
    day = start.astimezone(tz).date()
    edges = [start]
    while True:
        if step == "day":
            day += timedelta(days=1)
        else:
            day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        moment = datetime.combine(day, time(), tz).astimezone(UTC)
        if moment >= end:
            return [*edges, end]
        edges.append(moment)


def site_energy(conn: psycopg.Connection, scope: AccessScope, site_id: int, start: datetime,
                end: datetime, step: Step = FIFTEEN_MINUTES, *,
                now: datetime | None = None) -> SiteEnergy:
    """Return a visible site's energy per step over [start, end), with gaps flagged."""
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise ValueError("start and end must be aware datetimes with start < end")
    site = fleet.get_site(conn, scope, site_id)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    edges = boundaries(start, end, step, site["timezone"])
    device_ids = [d["id"] for d in fleet.list_devices(conn, scope, site_id)]
    grouped, catching_up = {}, False
    if device_ids:
        # Whole hours read hourly rows where complete (their readings keep their times).
        coarsest = "1m" if isinstance(step, timedelta) and step % timedelta(hours=1) else "1h"
        grouped, catching_up = _read(conn, device_ids, _point_ids(conn), edges, coarsest)
    per_quantity, methods = _device_series(grouped, device_ids, edges)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    values: dict[str, list] = {}
    gaps: dict[str, set] = {}
    for quantity, series in per_quantity.items():
        values[quantity], gaps[quantity] = _combine(series, edges, now)
    if "load" not in values and "grid_import" in values:
        _derive_load(values, gaps, len(edges) - 1)
        methods["load"] = "derived"
    intervals = [EnergyInterval(a, b, {q: v[i] for q, v in values.items()},
                                frozenset(q for q, g in gaps.items() if i in g))
                 for i, (a, b) in enumerate(itertools.pairwise(edges))]
    return SiteEnergy(site_id, site["timezone"], intervals, methods, catching_up)


def _point_ids(conn: psycopg.Connection) -> dict[str, int]:
    names = sorted({name for spec in QUANTITIES.values() for name in spec[:2]})
    rows = conn.execute("SELECT id, name FROM points WHERE name = ANY(%s)", (names,)).fetchall()
    return {row["name"]: row["id"] for row in rows}


def describe_gaps(energy: SiteEnergy, limit: int = 5) -> list[dict[str, Any]]:
    """Return the first gap ranges as ISO strings (for messages and pages)."""
    return [{"start": a.isoformat(), "end": b.isoformat()}
            for a, b in energy.gap_ranges()[:limit]]
