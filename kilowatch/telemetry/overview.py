"""The fleet at a glance and a site's live state: PostgreSQL for what is stored, Redis for now.

:func:`fleet_overview` answers for every visible site at once with two queries
— sites with their devices and active alarms, and today's energy from the
cumulative counters (:mod:`kilowatch.telemetry.today`) — plus one Redis
pipeline reading the devices' latest values; the fleet page reads windows of it
instead (:mod:`kilowatch.telemetry.fleet_grid`). :func:`site_live` sums
one site's devices for the live tiles.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from datetime import UTC, datetime

import psycopg
import redis
from psycopg import sql

from kilowatch import fleet
from kilowatch.access import AccessScope, site_filter
from kilowatch.alarms.events import SEVERITIES
from kilowatch.redis_client import key
from kilowatch.telemetry import today

POWER_POINTS = {"grid_kw": "meter.grid.p", "pv_kw": "meter.pv.p", "load_kw": "meter.load.p",
                "battery_kw": "pcs.p"}
_LIVE_FIELDS = ("_online", "_last_seen", "_ts", "bms.soc", *POWER_POINTS.values(),
                *today.COUNTERS.values())
STATUS_RANK = {"offline": 0, "partial": 1, "online": 2, "no devices": 3}

_SITES_SQL = """
SELECT s.id, s.name, s.timezone, s.address, c.name AS company_name,
       coalesce(dv.devices, '[]'::json) AS devices, coalesce(al.alarms, '{{}}'::json) AS alarms
FROM sites s JOIN companies c ON c.id = s.company_id
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object('id', d.id, 'serial', d.serial, 'model', d.model,
                    'online', d.online, 'last_seen', d.last_seen,
                    'capacity_kwh', d.capacity_kwh) ORDER BY d.id) AS devices
    FROM devices d WHERE d.site_id = s.id
) dv ON TRUE
LEFT JOIN LATERAL (
    SELECT json_object_agg(severity, n) AS alarms FROM (
        SELECT a.severity, count(*) AS n FROM alarms a
        WHERE a.site_id = s.id AND a.cleared_at IS NULL GROUP BY a.severity) x
) al ON TRUE
WHERE {scope}
ORDER BY s.name, s.id
"""

@dataclasses.dataclass(frozen=True)
class DeviceNow:
    """One device's latest state: online, last heard from, and its latest values."""

    id: int
    online: bool
    last_seen: datetime | None
    values: dict[str, float]
    ts: datetime | None = None  # time of the newest sample in ``values``


def _epoch(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC) if value else None
    except ValueError:
        return None


def _sample_time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def parse_number(value: str | None) -> float | None:
    """Read a number of a live hash: None when absent, not a number or not finite."""
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def read_devices_now(client: redis.Redis, devices: list[dict]) -> dict[int, DeviceNow]:
    """Read the live hashes of already-authorised devices in one pipeline."""
    pipe = client.pipeline(transaction=False)
    for device in devices:
        pipe.hmget(key("live", device["id"]), list(_LIVE_FIELDS))
    result = {}
    for device, raw in zip(devices, pipe.execute(), strict=True):
        fields = dict(zip(_LIVE_FIELDS, raw, strict=True))
        stored_seen = device.get("last_seen")
        if isinstance(stored_seen, str):
            stored_seen = datetime.fromisoformat(stored_seen)
        seen = max(filter(None, [_epoch(fields["_last_seen"]), stored_seen]), default=None)
        online = fields["_online"] == "1" if fields["_online"] is not None else bool(
            device.get("online"))
        values = {name: number for name in _LIVE_FIELDS if not name.startswith("_")
                  if (number := parse_number(fields[name])) is not None}
        result[device["id"]] = DeviceNow(device["id"], online, seen, values,
                                         _sample_time(fields["_ts"]))
    return result


def _status(devices: list[DeviceNow]) -> str:
    if not devices:
        return "no devices"
    online = sum(d.online for d in devices)
    return "online" if online == len(devices) else "offline" if online == 0 else "partial"


def _sum_values(devices: list[DeviceNow], point: str) -> float | None:
    values = [d.values[point] for d in devices if d.online and point in d.values]
    return math.fsum(values) if values else None


def _soc(devices: list[DeviceNow], capacities: dict[int, float | None]) -> float | None:
    """Average state of charge weighted by capacity (equal weights when unknown)."""
    pairs = [(d.values["bms.soc"], capacities.get(d.id) or 1.0) for d in devices
             if "bms.soc" in d.values]
    if not pairs:
        return None
    return math.fsum(v * w for v, w in pairs) / math.fsum(w for _, w in pairs)


def summarize(devices: list[DeviceNow], capacities: dict[int, float | None]) -> dict:
    """Sum a site's devices into live figures: status, powers (online devices), SoC."""
    offline = [d for d in devices if not d.online]
    summary = {"status": _status(devices), "soc": _soc(devices, capacities),
               "last_seen": max((d.last_seen for d in devices if d.last_seen), default=None),
               "offline_since": max((d.last_seen for d in offline if d.last_seen),
                                    default=None) if offline else None}
    for name, point in POWER_POINTS.items():
        summary[name] = _sum_values(devices, point)
    return summary


def today_energy(conn: psycopg.Connection, client: redis.Redis, scope: AccessScope,
                 sites: list[dict], live: dict[int, DeviceNow],
                 now: datetime) -> dict[int, dict[str, float]]:
    """Return site id → quantity → kWh since local midnight (absent when unknown)."""
    since = today.midnights(sites, now)
    counted = today.device_counters(conn, client, scope, since)
    per_site: dict[int, dict[str, float]] = defaultdict(dict)
    for site in sites:
        for device in site["devices"]:
            device_id = device["id"]
            for quantity, point in today.COUNTERS.items():
                kwh = today.with_live(counted.get(device_id, {}), point,
                                      live[device_id].values.get(point), live[device_id].ts,
                                      since[device_id])
                if kwh is not None:
                    totals = per_site[site["id"]]
                    totals[quantity] = totals.get(quantity, 0.0) + kwh
    return per_site


def _problem_rank(row: dict) -> tuple:
    alarms = row["alarms"]
    return (STATUS_RANK[row["status"]] if row["status"] != "no devices" else 2,
            *(-alarms.get(s, 0) for s in SEVERITIES), row["name"].lower())


def fleet_overview(conn: psycopg.Connection, client: redis.Redis, scope: AccessScope, *,
                   now: datetime | None = None) -> list[dict]:
    """Return every visible site with status, alarms, live powers, SoC and today's energy.

    Problems first: offline, partly offline, then by active alarms by severity.
    """
    now = now or datetime.now(UTC)
    sites = conn.execute(sql.SQL(_SITES_SQL).format(scope=site_filter(scope))).fetchall()
    devices = [d for s in sites for d in s["devices"]]
    live = read_devices_now(client, devices)
    energy_today = today_energy(conn, client, scope, sites, live, now) if devices else {}
    rows = []
    for site in sites:
        capacities = {d["id"]: d["capacity_kwh"] for d in site["devices"]}
        summary = summarize([live[d["id"]] for d in site["devices"]], capacities)
        rows.append({"id": site["id"], "name": site["name"],
                     "company_name": site["company_name"], "timezone": site["timezone"],
                     "devices": len(site["devices"]),
                     "alarms": {s: int(site["alarms"].get(s, 0)) for s in SEVERITIES},
                     "today_kwh": energy_today.get(site["id"], {}), **summary})
    return sorted(rows, key=_problem_rank)


def site_live(conn: psycopg.Connection, client: redis.Redis, scope: AccessScope,
              site_id: int) -> dict:
    """Return a visible site's live figures and each device's state (AccessDenied otherwise)."""
    fleet.get_site(conn, scope, site_id)
    devices = fleet.list_devices(conn, scope, site_id)
    live = read_devices_now(client, devices)
    capacities = {d["id"]: d["capacity_kwh"] for d in devices}
    summary = summarize(list(live.values()), capacities)
    summary["devices"] = [{"id": d["id"], "serial": d["serial"], "model": d["model"],
                           "online": live[d["id"]].online, "last_seen": live[d["id"]].last_seen}
                          for d in devices]
    return summary
