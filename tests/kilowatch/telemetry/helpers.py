"""Store raw readings and roll them up with the worker's own code, for telemetry tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.telemetry import coverage, rollups
from kilowatch.telemetry import storage as telemetry

MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)


def make_site(conn, timezone="UTC", models=("meter",), name="Plant"):
    """Create a company, a site and its devices; return (company id, site id, device ids)."""
    scope = system_scope()
    company = fleet.create_company(conn, scope, f"Energy {secrets.token_hex(4)}")
    site = fleet.create_site(conn, scope, company_id=company, name=name, timezone=timezone)
    devices = [fleet.register_device(conn, scope, site_id=site, serial=f"E-{secrets.token_hex(5)}",
                                     model=model) for model in models]
    return company, site, devices


def point_id(conn, name: str) -> int:
    """Return a point's id, registering the name if it is new."""
    conn.execute("INSERT INTO points (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))
    return conn.execute("SELECT id FROM points WHERE name = %s", (name,)).fetchone()["id"]


def store(conn, device: int, readings: dict[str, Iterable[tuple[datetime, float]]]) -> None:
    """Store raw readings point → [(time, value)] once each (repeats dropped), as ingest does."""
    rows = []
    for name, series in readings.items():
        pid = point_id(conn, name)
        conn.execute("INSERT INTO device_points (device_id, point_id) VALUES (%s, %s) "
                     "ON CONFLICT DO NOTHING", (device, pid))
        rows += [(t, device, pid, float(v)) for t, v in series]
    encoder = telemetry.CopyEncoder()
    encoder.add_rows(rows)
    with conn.transaction():
        telemetry.store_samples(conn, encoder, try_direct=False)


def roll_up(conn, devices: list[int], lo: datetime, hi: datetime) -> None:
    """Compute the devices' minute and hourly rows of the hours holding [lo, hi], mark them done."""
    lo_h, hi_h = coverage.floor(lo, HOUR), coverage.floor(hi, HOUR) + HOUR
    with conn.transaction():
        rollups.compute_minutes(conn, lo_h, hi_h, devices=devices)
        rollups.compute_hours(conn, lo_h, hi_h, devices=devices)
        conn.execute("UPDATE rollup_state SET done_until = greatest(done_until, %s), "
                     "watermark = greatest(watermark, %s)", (hi_h, hi_h))
        conn.execute("UPDATE rollup_state SET done_until = %s, watermark = %s "
                     "WHERE done_until IS NULL", (hi_h, hi_h))
    rollups.touch_hours(conn)


def store_late(conn, device: int, readings: dict[str, Iterable[tuple[datetime, float]]]) -> None:
    """Store readings below the rollups' cut and mark them late, as the collector does."""
    materialized = {name: list(series) for name, series in readings.items()}
    store(conn, device, materialized)
    pairs = {(device, coverage.floor(t, MINUTE)) for series in materialized.values()
             for t, _ in series}
    with conn.transaction():
        telemetry.mark_dirty(conn, "1m", pairs)


def counter(power_kw, start: datetime, end: datetime, every: timedelta, first: float = 0.0,
            offset: timedelta = timedelta(0)) -> list[tuple[datetime, float]]:
    """Readings every ``every`` (from ``start + offset``) of a counter integrating a power.

    ``power_kw(minute)`` is the power (kW) held over the minute starting then.
    """
    readings, value = [], first
    t = start + offset
    minute = coverage.floor(start, MINUTE)
    while t < end:
        while minute + MINUTE <= t:
            value += power_kw(minute) / 60
            minute += MINUTE
        readings.append((t, value + power_kw(minute) * (t - minute).total_seconds() / 3600))
        t += every
    return readings


def power(power_kw, start: datetime, end: datetime, every: timedelta
          ) -> list[tuple[datetime, float]]:
    """Readings every ``every`` of the power ``power_kw(minute)`` (kW) held over each minute."""
    readings, t = [], start
    while t < end:
        readings.append((t, power_kw(coverage.floor(t, MINUTE))))
        t += every
    return readings


def utc(*args) -> datetime:
    """Return an aware UTC datetime."""
    return datetime(*args, tzinfo=UTC)
