"""Seed alarms for the alarm page tests: devices of both companies, alarms over a month, and
raw samples around one of them."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

from kilowatch.alarms import events as alarms
from tests.dashboards import seed


@dataclasses.dataclass(frozen=True)
class SeededAlarms:
    """Ids of the seeded devices and alarms."""

    device_a1: int
    device_a2: int
    device_b1: int
    critical_a1: int  # site A1, last week, cleared after 90 min, samples around it
    major_a1: int  # site A1, two days ago, still active
    old_a1: int  # site A1, critical, twenty days ago
    critical_a2: int  # site A2 (not granted to A's viewer and operator), active
    critical_b1: int  # company B, active
    raised_at: datetime
    cleared_at: datetime


def _raise(conn, device_id, code, severity, at, message="", cleared_after=None):
    alarm_id = alarms.raise_alarm(conn, device_id=device_id, code=code, severity=severity,
                                  source="device", message=message, at=at)
    if cleared_after is not None:
        alarms.clear_alarm(conn, device_id=device_id, code=code, at=at + cleared_after)
    return alarm_id


def _samples(conn, device_id, start, end):
    ids = seed.point_ids(conn)
    names = ("bms.t_max", "bms.t_min", "pcs.p")
    conn.execute("INSERT INTO device_points (device_id, point_id) SELECT %s, unnest(%s::int[]) "
                 "ON CONFLICT DO NOTHING", (device_id, [ids[n] for n in names]))
    rows = []
    moment = start
    while moment < end:
        hours = (moment - start).total_seconds() / 3600
        hot = 30 + 32 * math.exp(-((hours - 1.5) ** 2) / 0.3)  # a peak at the raise
        rows += [(moment, device_id, ids["bms.t_max"], hot),
                 (moment, device_id, ids["bms.t_min"], hot - 6),
                 (moment, device_id, ids["pcs.p"], 0.0 if hot > 45 else 40.0)]
        moment += timedelta(seconds=30)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO telemetry (time, device_id, point_id, value) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", rows)


def seed_alarms(conn, tenants, prefix: str = "ALM") -> SeededAlarms:
    """Register devices and raise alarms on company A's two sites and B's first site."""
    a1 = seed.register(conn, tenants.a.sites[0], f"{prefix}-A1")
    a2 = seed.register(conn, tenants.a.sites[1], f"{prefix}-A2")
    b1 = seed.register(conn, tenants.b.sites[0], f"{prefix}-B1")
    now = datetime.now(UTC).replace(microsecond=0)
    raised = now - timedelta(days=3)
    critical_a1 = _raise(conn, a1, "BMS_OVERTEMP", "critical", raised, "Cell temperature 62 °C",
                         cleared_after=timedelta(minutes=90))
    _samples(conn, a1, raised - timedelta(hours=1.5), raised + timedelta(hours=3))
    return SeededAlarms(
        device_a1=a1, device_a2=a2, device_b1=b1, critical_a1=critical_a1,
        major_a1=_raise(conn, a1, "PCS_GRID_FAULT", "major", now - timedelta(days=2),
                        "Grid voltage out of range: 455 V"),
        old_a1=_raise(conn, a1, "BMS_INSULATION_LOW", "critical", now - timedelta(days=20),
                      "Insulation resistance 120 kΩ", cleared_after=timedelta(hours=1)),
        critical_a2=_raise(conn, a2, "BMS_OVERTEMP", "critical", now - timedelta(days=1),
                           "Cell temperature 59 °C"),
        critical_b1=_raise(conn, b1, "BMS_OVERTEMP", "critical", now - timedelta(days=2),
                           "Cell temperature 63 °C at Globex"),
        raised_at=raised, cleared_at=raised + timedelta(minutes=90))
