"""Chart ranges and resolutions: range names, the bucket ladder, energy windows and ratios.

A chart never draws more than :data:`MAX_POINTS` points per trace, so the
resolution follows the range: the coarsest table that still gives
:data:`MIN_POINTS` rows over the range (``telemetry_1h`` from 20 days,
``telemetry_1m`` from 8 hours, raw ``telemetry`` below), then the finest bucket
width from :data:`LADDER` that keeps the count under the limit (a year of a
site is drawn from hourly rows in 6-hour buckets, 30 days hour by hour).
Ranges are local days in the site's time zone.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MAX_POINTS = 2000
MIN_POINTS = 480  # a table is used once the range holds this many of its rows
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
LADDER = tuple(timedelta(seconds=s) for s in (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
    86400, 2 * 86400, 7 * 86400))
RANGES = ("today", "yesterday", "7d", "30d", "12m", "custom")
CUSTOM_YEARS = (1970, 2100)  # custom days beyond these are typos, and overflow near year 1/9999


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
