"""Seed telemetry for dashboard tests: devices, rollup rows, raw rows and live hashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.redis_client import get_redis
from kilowatch.telemetry import live

POWER = {"meter.pv.p": 20.0, "meter.load.p": 30.0, "meter.grid.p": 5.0, "pcs.p": 5.0,
         "bms.soc": 55.0, "bms.soh": 98.5, "bms.t_min": 21.0, "bms.t_max": 27.0,
         "bms.cell_v_min": 3.281, "bms.cell_v_max": 3.305}
COUNTERS = {"meter.pv.e": 20.0, "meter.load.e": 30.0, "meter.grid.e_import": 5.0,
            "meter.grid.e_export": 0.0, "pcs.e_discharge": 5.0, "pcs.e_charge": 0.0}


def point_ids(conn) -> dict[str, int]:
    """Return point name → id."""
    return {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM points")}


def register(conn, site_id: int, serial: str, model: str = "HES-L") -> int:
    """Register a storage device on a site and return its id."""
    return fleet.register_device(conn, system_scope("test"), site_id=site_id, serial=serial,
                                 model=model, rated_power_kw=50.0, capacity_kwh=100.0)


def seed_history(conn, device_id: int, *, days: float = 2, until: datetime | None = None,
                 scale: float = 1.0) -> None:
    """Write a day-shaped history: hourly and minute rollups, plus the device's points."""
    until = (until or datetime.now(UTC)).replace(second=0, microsecond=0)
    ids = point_ids(conn)
    names = [*POWER, *COUNTERS]
    conn.execute("INSERT INTO device_points (device_id, point_id) SELECT %s, unnest(%s::int[]) "
                 "ON CONFLICT DO NOTHING", (device_id, [ids[n] for n in names]))
    for table, step in (("telemetry_1h", "1 hour"), ("telemetry_1m", "1 minute")):
        for name in names:
            if name in POWER:
                value = f"{POWER[name] * scale} * (1 + 0.2 * sin(extract(epoch FROM g) / 8000))"
            else:  # a counter growing by its rate per hour
                value = f"{COUNTERS[name] * scale} * extract(epoch FROM g - %(start)s) / 3600"
            conn.execute(
                f"INSERT INTO {table} (bucket, device_id, point_id, avg, min, max, last, count) "
                f"SELECT g, %(device)s, %(point)s, {value}, {value} - 1, {value} + 1, {value}, 6 "
                "FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, "
                f"'{step}'::interval) g ON CONFLICT DO NOTHING",
                {"device": device_id, "point": ids[name],
                 "start": until - timedelta(days=days), "end": until - timedelta(minutes=1)})
    conn.execute("UPDATE rollup_state SET done_until = %s, watermark = %s",
                 (until, until))


def publish_live(device_id: int, values: dict[str, float], *, online: bool = True) -> None:
    """Write a device's live hash as the collector does."""
    now = datetime.now(UTC)
    writer = live.LiveWriter(get_redis())
    writer.write({device_id: (now, 1, values)}, last_seen=now.timestamp(),
                 committed_at=now.timestamp())
    if not online:
        live.set_online(get_redis(), device_id, False)


def live_values(scale: float = 1.0) -> dict[str, float]:
    """Plausible live values of one device (powers, SoC, temperatures)."""
    return {name: value * scale for name, value in POWER.items()}
