"""Interval energy of a site from its devices' cumulative counters, with gaps reported.

:func:`site_energy` returns the kWh of each quantity (grid import and export,
load, PV, battery charge and discharge) per step — 15-minute intervals for bills,
or days and months in the site's time zone for energy bars — summed over the
site's devices:

- A counter's energy over an interval is the sum of its increases between
  consecutive readings; a decrease is a counter reset, after which the new value
  counts from zero. Repeated readings (at-least-once delivery) add nothing.
- Readings are the ``last`` value of the per-minute rollup (``telemetry_1m``; for
  day and month steps the hourly one, ``telemetry_1h``, then per-minute rows
  after the last hourly bucket), and raw ``telemetry`` for the minutes after the
  last rolled-up one. A reading is dated at the end of its bucket.
- A slot (15 minutes; an hour for day and month steps) without any reading is a
  gap. The energy counted across a gap (the counter kept running) is spread
  over the gap in proportion to time, so totals stay exact, and the slots are
  reported in ``gaps``; slots after the last reading have no value (``None``),
  never zero. Slots that have not begun yet are neither.
- Power integration is the fallback for a device that sends no counter for a
  quantity: the minute (or hour) average power times its duration, split by
  sign for grid exchange (``meter.grid.p``: + import, − export) and battery
  (``pcs.p``: + discharge, − charge).
- A site without any load measurement gets its load from the balance
  ``load = grid import − grid export + PV + discharge − charge`` (method
  ``derived``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from kilowatch import fleet
from kilowatch.access import AccessScope

FIFTEEN_MINUTES = timedelta(minutes=15)
LOOKBACK = timedelta(days=35)

# quantity: (counter point, power point, sign of the power that counts)
QUANTITIES: dict[str, tuple[str, str, int]] = {
    "grid_import": ("meter.grid.e_import", "meter.grid.p", 1),
    "grid_export": ("meter.grid.e_export", "meter.grid.p", -1),
    "load": ("meter.load.e", "meter.load.p", 1),
    "pv": ("meter.pv.e", "meter.pv.p", 1),
    "battery_charge": ("pcs.e_charge", "pcs.p", -1),
    "battery_discharge": ("pcs.e_discharge", "pcs.p", 1),
}
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
    """A site's energy per interval, and how each quantity was obtained."""

    site_id: int
    timezone: str
    intervals: list[EnergyInterval]
    methods: dict[str, str]  # quantity -> "counter", "power", "counter+power" or "derived"

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


_READINGS_SQL = """
WITH hourly AS (
    SELECT device_id, point_id, bucket + interval '1 hour' AS t, last AS v, avg,
           3600 AS width_s
    FROM telemetry_1h
    WHERE %(use_hourly)s AND device_id = ANY(%(devices)s) AND point_id = ANY(%(points)s)
      AND bucket >= %(lo)s - interval '1 hour' AND bucket < %(hi)s
      AND bucket + interval '1 hour' <= now() AND last IS NOT NULL
),
hourly_cut AS (SELECT device_id, point_id, max(t) AS cut FROM hourly GROUP BY 1, 2),
pairs AS (
    SELECT d AS device_id, p AS point_id
    FROM unnest(%(devices)s::int[]) d, unnest(%(points)s::int[]) p
),
minute AS (
    -- Per pair, so that an index range scan starts after the hourly rows.
    SELECT p.device_id, p.point_id, x.t, x.v, x.avg, 60 AS width_s
    FROM pairs p LEFT JOIN hourly_cut c USING (device_id, point_id)
    CROSS JOIN LATERAL (
        SELECT m.bucket + interval '1 minute' AS t, m.last AS v, m.avg
        FROM telemetry_1m m
        WHERE m.device_id = p.device_id AND m.point_id = p.point_id
          AND m.bucket >= %(lo)s - interval '1 minute' AND m.bucket < %(hi)s
          AND m.bucket >= coalesce(c.cut, '-infinity')
          AND m.bucket + interval '1 minute' <= now() AND m.last IS NOT NULL
    ) x
),
cuts AS (
    SELECT device_id, point_id, max(t) AS cut
    FROM (SELECT device_id, point_id, t FROM hourly UNION ALL
          SELECT device_id, point_id, t FROM minute) u
    GROUP BY 1, 2
),
raw AS (
    SELECT p.device_id, p.point_id, x.t, x.v, x.avg, 60 AS width_s
    FROM pairs p LEFT JOIN cuts c USING (device_id, point_id)
    CROSS JOIN LATERAL (
        SELECT time_bucket('1 minute', r.time) + interval '1 minute' AS t,
               last(r.value, r.time) AS v, avg(r.value) AS avg
        FROM telemetry r
        WHERE r.device_id = p.device_id AND r.point_id = p.point_id
          AND r.time >= %(lo)s - interval '1 minute' AND r.time < %(hi)s
          AND r.time >= coalesce(c.cut, '-infinity')
          AND r.value IS NOT NULL
        GROUP BY 1
    ) x
),
prior AS (
    SELECT p.device_id, p.point_id, y.t, y.v, NULL::double precision AS avg, 0 AS width_s
    FROM pairs p CROSS JOIN LATERAL (
        SELECT t, v FROM (
            (SELECT bucket + interval '1 hour' AS t, last AS v FROM telemetry_1h
             WHERE device_id = p.device_id AND point_id = p.point_id AND last IS NOT NULL
               AND bucket < %(lo)s - interval '1 hour' AND bucket >= %(lo)s - %(lookback)s
             ORDER BY bucket DESC LIMIT 1)
            UNION ALL
            (SELECT bucket + interval '1 minute', last FROM telemetry_1m
             WHERE device_id = p.device_id AND point_id = p.point_id AND last IS NOT NULL
               AND bucket < %(lo)s - interval '1 minute' AND bucket >= %(lo)s - %(lookback)s
             ORDER BY bucket DESC LIMIT 1)
            UNION ALL
            (SELECT time, value FROM telemetry
             WHERE device_id = p.device_id AND point_id = p.point_id AND value IS NOT NULL
               AND time < %(lo)s - interval '1 minute' AND time >= %(lo)s - %(lookback)s
             ORDER BY time DESC LIMIT 1)
        ) z ORDER BY t DESC LIMIT 1
    ) y
),
readings AS (
    SELECT * FROM prior UNION ALL SELECT * FROM hourly
    UNION ALL SELECT * FROM minute UNION ALL SELECT * FROM raw
),
deltas AS (
    SELECT device_id, point_id, t, avg, width_s, lag(t) OVER w AS t0,
           CASE WHEN lag(v) OVER w IS NULL THEN NULL
                WHEN v >= lag(v) OVER w THEN v - lag(v) OVER w
                ELSE greatest(v, 0) END AS delta
    FROM readings
    WINDOW w AS (PARTITION BY device_id, point_id ORDER BY t)
),
slotted AS (
    SELECT *, time_bucket(%(slot)s, t - interval '1 microsecond') AS slot
    FROM deltas WHERE t > %(lo)s
)
SELECT device_id, point_id, slot, count(*) AS readings,
       coalesce(sum(delta) FILTER (WHERE t0 >= slot), 0) AS inner_kwh,
       count(delta) FILTER (WHERE t0 >= slot) AS inner_deltas,
       sum(delta) FILTER (WHERE t0 < slot) AS cross_kwh,
       min(t0) FILTER (WHERE t0 < slot) AS cross_t0,
       min(t) FILTER (WHERE t0 < slot) AS cross_t1,
       sum(greatest(avg, 0) * width_s / 3600.0) AS positive_kwh,
       sum(greatest(-avg, 0) * width_s / 3600.0) AS negative_kwh
FROM slotted
GROUP BY device_id, point_id, slot
"""


@dataclasses.dataclass
class _Series:
    """Per-slot values of one device's quantity."""

    values: dict[datetime, float] = dataclasses.field(default_factory=lambda: defaultdict(float))
    covered: set[datetime] = dataclasses.field(default_factory=set)
    read: set[datetime] = dataclasses.field(default_factory=set)


def _floor(moment: datetime, width: timedelta) -> datetime:
    epoch = datetime(2000, 1, 3, tzinfo=UTC)
    return epoch + ((moment - epoch) // width) * width


def _spread(series: _Series, t0: datetime, t1: datetime, kwh: float, width: timedelta,
            lo: datetime) -> None:
    """Add ``kwh`` counted over (t0, t1] to the slots it overlaps, in proportion to time."""
    span = (t1 - t0).total_seconds()
    slot = _floor(max(t0, lo), width)
    while slot < t1:
        overlap = (min(t1, slot + width) - max(t0, slot)).total_seconds()
        if overlap > 0:
            series.values[slot] += kwh * overlap / span
            series.covered.add(slot)
        slot += width


def _counter_series(rows: Iterable[dict], width: timedelta, lo: datetime) -> _Series:
    series = _Series()
    for row in rows:
        slot = row["slot"]
        series.read.add(slot)
        if row["inner_deltas"]:  # a lone first reading is a baseline, not a measurement
            series.covered.add(slot)
        series.values[slot] += row["inner_kwh"]
        if row["cross_kwh"] is not None:
            _spread(series, row["cross_t0"], row["cross_t1"], row["cross_kwh"], width, lo)
    return series


def _power_series(rows: Iterable[dict], sign: int) -> _Series:
    series = _Series()
    for row in rows:
        slot = row["slot"]
        series.read.add(slot)
        series.covered.add(slot)
        series.values[slot] += row["positive_kwh" if sign > 0 else "negative_kwh"] or 0.0
    return series


def _read_slots(conn: psycopg.Connection, device_ids: list[int], points: dict[str, int],
                lo: datetime, hi: datetime, width: timedelta) -> dict[tuple[int, str], list]:
    names = {point_id: name for name, point_id in points.items()}
    params = {"devices": device_ids, "points": list(points.values()), "lo": lo, "hi": hi,
              "lookback": LOOKBACK, "slot": width, "use_hourly": width >= timedelta(hours=1)}
    grouped: dict[tuple[int, str], list] = defaultdict(list)
    for row in conn.execute(_READINGS_SQL, params):
        grouped[(row["device_id"], names[row["point_id"]])].append(row)
    return grouped


def _device_series(grouped: dict[tuple[int, str], list], device_ids: list[int],
                   width: timedelta, lo: datetime) -> tuple[dict[str, list[_Series]], dict]:
    """Pick counters (else power) per device and quantity; return series and methods."""
    per_quantity: dict[str, list[_Series]] = defaultdict(list)
    methods: dict[str, set[str]] = defaultdict(set)
    for quantity, (counter, power, sign) in QUANTITIES.items():
        for device_id in device_ids:
            if grouped.get((device_id, counter)):
                per_quantity[quantity].append(
                    _counter_series(grouped[(device_id, counter)], width, lo))
                methods[quantity].add("counter")
            elif grouped.get((device_id, power)):
                per_quantity[quantity].append(_power_series(grouped[(device_id, power)], sign))
                methods[quantity].add("power")
    return per_quantity, {q: "+".join(sorted(m)) for q, m in methods.items()}


def _combine(series: list[_Series], slots: list[datetime], now: datetime,
             width: timedelta) -> tuple[dict[datetime, float | None], set[datetime]]:
    """Sum devices slot by slot; a slot lacking one device's data has no value."""
    values: dict[datetime, float | None] = {}
    gaps: set[datetime] = set()
    for slot in slots:
        future = slot >= now
        if all(slot in s.covered for s in series) and not future:
            values[slot] = math.fsum(s.values[slot] for s in series)
        else:
            values[slot] = None
        if not future and any(slot not in s.read or slot not in s.covered for s in series):
            gaps.add(slot)
    return values, gaps


def _derive_load(slot_values: dict[str, dict], slot_gaps: dict[str, set],
                 slots: list[datetime]) -> None:
    present = [(q, sign) for q, sign in _BALANCE if q in slot_values]
    values: dict[datetime, float | None] = {}
    for slot in slots:
        parts = [slot_values[q][slot] for q, _ in present]
        values[slot] = None if any(p is None for p in parts) else math.fsum(
            p * sign for p, (_, sign) in zip(parts, present, strict=True))
    slot_values["load"] = values
    slot_gaps["load"] = set().union(*(slot_gaps[q] for q, _ in present))


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


def _intervals(edges: list[datetime], slot_values: dict[str, dict], slot_gaps: dict[str, set],
               slots: list[datetime], width: timedelta) -> list[EnergyInterval]:
    """Aggregate slot values into the requested intervals (proportionally across an edge)."""
    result = []
    cursor = 0
    for start, end in itertools.pairwise(edges):
        while cursor < len(slots) and slots[cursor] + width <= start:
            cursor += 1
        kwh: dict[str, float | None] = {}
        gaps: set[str] = set()
        for quantity, values in slot_values.items():
            parts = []
            index = cursor
            while index < len(slots) and slots[index] < end:
                slot = slots[index]
                share = (min(end, slot + width) - max(start, slot)) / width
                if slot in slot_gaps[quantity]:
                    gaps.add(quantity)
                if values[slot] is not None:
                    parts.append(values[slot] * share)
                index += 1
            kwh[quantity] = math.fsum(parts) if parts else None
        result.append(EnergyInterval(start, end, kwh, frozenset(gaps)))
    return result


def site_energy(conn: psycopg.Connection, scope: AccessScope, site_id: int, start: datetime,
                end: datetime, step: Step = FIFTEEN_MINUTES, *,
                now: datetime | None = None) -> SiteEnergy:
    """Return a visible site's energy per step over [start, end), with gaps flagged."""
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise ValueError("start and end must be aware datetimes with start < end")
    site = fleet.get_site(conn, scope, site_id)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    edges = boundaries(start, end, step, site["timezone"])
    # Slot width: 15 minutes from per-minute rows, or an hour from hourly rows for days.
    width = FIFTEEN_MINUTES if isinstance(step, timedelta) else timedelta(hours=1)
    lo, hi = _floor(start, width), _floor(end - timedelta(microseconds=1), width) + width
    slots = [lo + i * width for i in range((hi - lo) // width)]
    device_ids = [d["id"] for d in fleet.list_devices(conn, scope, site_id)]
    points = _point_ids(conn)
    grouped = _read_slots(conn, device_ids, points, lo, hi, width) if device_ids else {}
    per_quantity, methods = _device_series(grouped, device_ids, width, lo)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    slot_values, slot_gaps = {}, {}
    for quantity, series in per_quantity.items():
        slot_values[quantity], slot_gaps[quantity] = _combine(series, slots, now, width)
    if "load" not in slot_values and "grid_import" in slot_values:
        _derive_load(slot_values, slot_gaps, slots)
        methods["load"] = "derived"
    return SiteEnergy(site_id, site["timezone"],
                      _intervals(edges, slot_values, slot_gaps, slots, width), methods)


def _point_ids(conn: psycopg.Connection) -> dict[str, int]:
    names = sorted({name for spec in QUANTITIES.values() for name in spec[:2]})
    rows = conn.execute("SELECT id, name FROM points WHERE name = ANY(%s)", (names,)).fetchall()
    return {row["name"]: row["id"] for row in rows}


def describe_gaps(energy: SiteEnergy, limit: int = 5) -> list[dict[str, Any]]:
    """Return the first gap ranges as ISO strings (for messages and pages)."""
    return [{"start": a.isoformat(), "end": b.isoformat()}
            for a, b in energy.gap_ranges()[:limit]]
