"""The fleet at a glance and a site's live state: PostgreSQL for what is stored, Redis for now.

:func:`fleet_overview` answers for every visible site (1,000 sites stay fast)
with two queries — sites with their devices and active alarms, and today's
energy from the hourly rollup of the cumulative counters — plus one Redis
pipeline reading the devices' latest values. :func:`site_live` sums one site's
devices for the live tiles.

Today's energy of a counter is the sum of its increases (a decrease is a reset,
after which the new value counts from zero) from the reading at the site's local
midnight (the ``last`` of the hourly bucket ending then) through the hourly
readings to the live value in Redis. Without a midnight reading it is unknown
(None), never zero.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import redis
from psycopg import sql

from kilowatch import fleet
from kilowatch.access import AccessScope, site_filter
from kilowatch.alarms.events import SEVERITIES
from kilowatch.redis_client import key
from kilowatch.telemetry.energy import QUANTITIES

POWER_POINTS = {"grid_kw": "meter.grid.p", "pv_kw": "meter.pv.p", "load_kw": "meter.load.p",
                "battery_kw": "pcs.p"}
TODAY_QUANTITIES = ("pv", "load", "grid_import", "grid_export")
COUNTERS = {quantity: QUANTITIES[quantity][0] for quantity in TODAY_QUANTITIES}
_LIVE_FIELDS = ("_online", "_last_seen", "_ts", "bms.soc", *POWER_POINTS.values(),
                *COUNTERS.values())
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

_TODAY_SQL = """
WITH devs AS MATERIALIZED (
    SELECT x.device_id, x.since
    FROM unnest(%(devices)s::int[], %(since)s::timestamptz[]) AS x(device_id, since)
    JOIN devices d ON d.id = x.device_id JOIN sites s ON s.id = d.site_id WHERE {scope}
),
readings AS (
    SELECT h.device_id, h.point_id, h.bucket, h.last,
           lag(h.last) OVER (PARTITION BY h.device_id, h.point_id ORDER BY h.bucket) AS prev
    FROM devs JOIN telemetry_1h h ON h.device_id = devs.device_id
    WHERE h.point_id = ANY(%(points)s) AND h.bucket >= devs.since
      AND h.bucket >= %(earliest)s AND h.last IS NOT NULL
)
SELECT device_id, point_id,
       coalesce(sum(CASE WHEN last >= prev THEN last - prev ELSE last END)
                FILTER (WHERE prev IS NOT NULL), 0) AS kwh,
       last(last, bucket) AS last_value
FROM readings GROUP BY 1, 2
"""
TODAY_CACHE_S = 600


@dataclasses.dataclass(frozen=True)
class DeviceNow:
    """One device's latest state: online, last heard from, and its latest values."""

    id: int
    online: bool
    last_seen: datetime | None
    values: dict[str, float]


def _epoch(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC) if value else None
    except ValueError:
        return None


def _number(value: str | None) -> float | None:
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
                  if (number := _number(fields[name])) is not None}
        result[device["id"]] = DeviceNow(device["id"], online, seen, values)
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


def _since(sites: list[dict], now: datetime) -> dict[int, datetime]:
    """Return device id → the start of the hourly bucket ending at its site's local midnight."""
    since = {}
    for site in sites:
        tz = ZoneInfo(site["timezone"])
        midnight = datetime.combine(now.astimezone(tz).date(), time(), tz)
        for device in site["devices"]:
            since[device["id"]] = midnight.astimezone(UTC) - timedelta(hours=1)
    return since


def _hourly_counters(conn: psycopg.Connection, client: redis.Redis, scope: AccessScope,
                     since: dict[int, datetime]) -> dict[int, dict[str, list[float]]]:
    """Return device → counter → [kWh counted by hourly readings today, last reading].

    Hourly rows change only when the worker closes an hour, so each device's
    answer is cached in Redis under the hourly rollup's ``done_until`` (and for
    at most ``TODAY_CACHE_S``); only the devices missing there are queried.
    """
    cut = conn.execute("SELECT done_until FROM rollup_state WHERE rollup = '1h'").fetchone()
    stamp = int(cut["done_until"].timestamp()) if cut and cut["done_until"] else 0
    keys = {d: key("today", d, int(t.timestamp()), stamp) for d, t in since.items()}
    found = dict(zip(keys, client.mget(list(keys.values())), strict=True)) if keys else {}
    result = {d: json.loads(raw) for d, raw in found.items() if raw is not None}
    missing = [d for d, raw in found.items() if raw is None]
    if not missing:
        return result
    names = {r["id"]: r["name"] for r in conn.execute(
        "SELECT id, name FROM points WHERE name = ANY(%s)", (list(COUNTERS.values()),))}
    query = sql.SQL(_TODAY_SQL).format(scope=site_filter(scope))
    fresh: dict[int, dict[str, list[float]]] = {d: {} for d in missing}
    for row in conn.execute(query, {"devices": missing, "since": [since[d] for d in missing],
                                    "points": list(names),
                                    "earliest": min(since[d] for d in missing)}):
        fresh[row["device_id"]][names[row["point_id"]]] = [row["kwh"], row["last_value"]]
    pipe = client.pipeline(transaction=False)
    for device_id, counters in fresh.items():
        pipe.set(keys[device_id], json.dumps(counters), ex=TODAY_CACHE_S)
    pipe.execute()
    return {**result, **fresh}


def _today_energy(conn: psycopg.Connection, client: redis.Redis, scope: AccessScope,
                  sites: list[dict], live: dict[int, DeviceNow],
                  now: datetime) -> dict[int, dict[str, float]]:
    """Return site id → quantity → kWh since local midnight (absent when unknown)."""
    hourly = _hourly_counters(conn, client, scope, _since(sites, now))
    quantities = {point: quantity for quantity, point in COUNTERS.items()}
    per_site: dict[int, dict[str, float]] = defaultdict(dict)
    for site in sites:
        for device in site["devices"]:
            values = live[device["id"]].values
            for point, (kwh, last_value) in hourly.get(device["id"], {}).items():
                value = values.get(point)
                if value is not None:  # the live counter adds what came after the last hour
                    kwh += value - last_value if value >= last_value else value
                quantity = quantities[point]
                per_site[site["id"]][quantity] = per_site[site["id"]].get(quantity, 0.0) + kwh
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
    today = _today_energy(conn, client, scope, sites, live, now) if devices else {}
    rows = []
    for site in sites:
        capacities = {d["id"]: d["capacity_kwh"] for d in site["devices"]}
        summary = summarize([live[d["id"]] for d in site["devices"]], capacities)
        rows.append({"id": site["id"], "name": site["name"],
                     "company_name": site["company_name"], "timezone": site["timezone"],
                     "devices": len(site["devices"]),
                     "alarms": {s: int(site["alarms"].get(s, 0)) for s in SEVERITIES},
                     "today_kwh": today.get(site["id"], {}), **summary})
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
