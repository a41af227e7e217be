"""Say where each device's telemetry is complete: hourly rows, minute rows or raw rows.

A rollup table is complete below its ``rollup_state.done_until``, except where
late data is still pending (``rollup_pending``, not the ranges only refreshed):
the minutes of a pending range, and for the hourly table the whole hours
holding them. :func:`plan` splits a
range per device between the tables — the coarsest allowed where it is complete
and covers whole buckets of the range, the next finer one elsewhere, raw rows
in the end — so readers never show a hole or a stale figure while the worker
catches up. Devices that split the same way share a :class:`Span`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg

SOURCES = {"raw": "telemetry", "1m": "telemetry_1m", "1h": "telemetry_1h"}
ORDER = ("1h", "1m", "raw")
WIDTHS = {"1h": timedelta(hours=1), "1m": timedelta(minutes=1)}
MAX_PENDING = 8  # a device with more pending ranges in a range reads raw rows over their hull
_EPOCH = datetime(2000, 1, 3, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class Span:
    """Read ``source`` rows of these devices over [lo, hi)."""

    source: str
    lo: datetime
    hi: datetime
    device_ids: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Coverage:
    """How a range is read, and the late-data ranges still pending in it per device."""

    spans: list[Span]
    pending: dict[int, list[tuple[datetime, datetime]]]

    @property
    def catching_up(self) -> bool:
        """Whether some of the range is read from raw rows because rollups are catching up."""
        return bool(self.pending)


def floor(moment: datetime, width: timedelta) -> datetime:
    """Return the start of the UTC-aligned bucket of ``width`` holding ``moment``."""
    return _EPOCH + ((moment - _EPOCH) // width) * width


def ceil(moment: datetime, width: timedelta) -> datetime:
    """Return the first bucket start of ``width`` at or after ``moment``."""
    start = floor(moment, width)
    return start if start == moment else start + width


def rollup_cuts(conn: psycopg.Connection) -> dict[str, datetime | None]:
    """Return, per rollup, the time below which it is computed (None: never computed)."""
    rows = conn.execute("SELECT rollup, done_until FROM rollup_state").fetchall()
    return {row["rollup"]: row["done_until"] for row in rows}


def pending_ranges(conn: psycopg.Connection, device_ids: Sequence[int], start: datetime,
                   end: datetime) -> dict[int, list[tuple[datetime, datetime]]]:
    """Return device → merged pending ranges overlapping [start, end), clipped to it."""
    rows = conn.execute(
        "SELECT device_id, lo, hi FROM rollup_pending WHERE device_id = ANY(%s) "
        "AND lo < %s AND hi > %s AND NOT refresh", (list(device_ids), end, start)).fetchall()
    ranges: dict[int, list] = defaultdict(list)
    for row in rows:
        ranges[row["device_id"]].append((max(row["lo"], start), min(row["hi"], end)))
    return {device: _merge(found) for device, found in ranges.items()}


def _merge(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[list[datetime]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    if len(merged) > MAX_PENDING:
        merged = [[merged[0][0], merged[-1][1]]]
    return [(lo, hi) for lo, hi in merged]


def _allowed(source: str, lo: datetime, hi: datetime, start: datetime, end: datetime,
             cut: datetime | None, blocked: list[tuple[datetime, datetime]]) -> bool:
    """Say whether ``source`` rows hold [lo, hi) completely."""
    width = WIDTHS[source]
    aligned = floor(lo, width) == lo and floor(hi, width) == hi
    whole = aligned and ceil(start, width) <= lo and hi <= floor(end, width)
    return whole and cut is not None and hi <= cut and not any(
        a < hi and lo < b for a, b in blocked)


def _device_segments(start: datetime, end: datetime, cuts: dict[str, datetime | None],
                     pending: list[tuple[datetime, datetime]], coarsest: str
                     ) -> tuple[tuple[str, datetime, datetime], ...]:
    sources = ORDER[ORDER.index(coarsest):]
    hours = [(floor(a, WIDTHS["1h"]), ceil(b, WIDTHS["1h"])) for a, b in pending]
    blocked = {"1h": hours, "1m": pending}
    points = {start, end, *(t for r in pending + hours for t in r)}
    for source in sources[:-1]:
        width = WIDTHS[source]
        points |= {ceil(start, width), floor(end, width)}
        if cuts.get(source) is not None:
            points.add(cuts[source])
    edges = sorted(p for p in points if start <= p <= end)
    segments: list[list] = []
    for lo, hi in itertools.pairwise(edges):
        source = next((s for s in sources[:-1] if _allowed(
            s, lo, hi, start, end, cuts.get(s), blocked[s])), "raw")
        if segments and segments[-1][0] == source:
            segments[-1][2] = hi
        else:
            segments.append([source, lo, hi])
    return tuple((s, lo, hi) for s, lo, hi in segments)


def plan(conn: psycopg.Connection, device_ids: Sequence[int], start: datetime, end: datetime,
         *, coarsest: str = "1h") -> Coverage:
    """Split [start, end) per device between hourly, minute and raw rows (see the module)."""
    if coarsest not in ORDER:
        raise ValueError(f"coarsest must be one of {', '.join(ORDER)}")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if not device_ids or end <= start:
        return Coverage([], {})
    cuts = rollup_cuts(conn)
    pending = pending_ranges(conn, device_ids, start, end)
    by_segments: dict[tuple, list[int]] = defaultdict(list)
    for device_id in sorted(set(device_ids)):
        segments = _device_segments(start, end, cuts, pending.get(device_id, []), coarsest)
        by_segments[segments].append(device_id)
    spans = [Span(source, lo, hi, tuple(devices))
             for segments, devices in by_segments.items() for source, lo, hi in segments]
    return Coverage(spans, pending)
