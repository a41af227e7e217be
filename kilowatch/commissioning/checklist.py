"""A site's commissioning checklist: what is done, what is missing, and where to fix it.

Each item is ok or missing with a one-line detail and the page where it is
fixed. The data is read within the caller's scope (the site must be visible);
the judgements are pure functions of that data.

Devices revoked and not activated again count as retired: they are named in
the details but no longer hold up the other items (a replaced device would
otherwise block the site forever).

Clock in sync: the collector stores each sample at the device's own time and
sets ``devices.last_seen`` to when the newest message arrived (platform clock).
The measure is ``last_seen`` minus the newest sample time within an hour of it:
a device streaming telemetry sends its newest sample right away, so the two
differ by the clock offset plus transit. Within ±5 s is in sync. Samples
refused as more than 5 minutes ahead (dead letters ``future_timestamp``) in the
last hour mean out of sync too. A device whose last message is not telemetry
(a status, an ack) can look a little behind until its next telemetry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import psycopg

from kilowatch import fleet
from kilowatch.access import AccessScope

CLOCK_TOLERANCE_S = 5.0
SITE_COUNTERS = ("meter.grid.e_import", "meter.grid.e_export")
STORAGE_COUNTERS = ("pcs.e_charge", "pcs.e_discharge")


@dataclasses.dataclass(frozen=True)
class Item:
    """One line of the checklist."""

    key: str
    label: str
    ok: bool
    detail: str
    fix_href: str
    fix_label: str

    def as_json(self) -> dict:
        """Return the item as a plain dict (reports keep it)."""
        return dataclasses.asdict(self)


_DEVICES_SQL = """
SELECT d.id, d.serial, d.model, d.rated_power_kw, d.capacity_kwh, d.firmware,
       d.activated_at, d.revoked_at, d.last_seen,
       (SELECT min(dp.first_seen) FROM device_points dp WHERE dp.device_id = d.id) AS first_data,
       (SELECT coalesce(array_agg(p.name ORDER BY p.name), '{}') FROM device_points dp
          JOIN points p ON p.id = dp.point_id
         WHERE dp.device_id = d.id AND p.name = ANY(%(counters)s)) AS counters,
       (SELECT max(t.time) FROM telemetry t WHERE t.device_id = d.id
           AND t.time BETWEEN d.last_seen - interval '1 hour'
                          AND d.last_seen + interval '10 minutes') AS newest_sample,
       (SELECT count(*) FROM dead_letters dl WHERE dl.device_id = d.id
           AND dl.reason = 'future_timestamp'
           AND dl.received_at > %(now)s - interval '1 hour') AS ahead_refusals,
       EXISTS (SELECT 1 FROM schedule_deliveries sd
               WHERE sd.device_id = d.id AND sd.status = 'applied') AS schedule_applied
FROM devices d WHERE d.site_id = %(site)s ORDER BY d.serial
"""

_TARIFF_SQL = """
SELECT t.name, st.valid_from FROM site_tariffs st JOIN tariffs t ON t.id = st.tariff_id
WHERE st.site_id = %(site)s AND st.superseded_at IS NULL AND st.valid_from <= %(today)s
  AND (st.valid_to IS NULL OR st.valid_to > %(today)s)
ORDER BY st.valid_from DESC LIMIT 1
"""

_ADMINS_SQL = """
SELECT u.email, coalesce(p.enabled AND (p.all_sites OR EXISTS (
           SELECT 1 FROM notification_sites ns WHERE ns.user_id = u.id AND ns.site_id = %(site)s)),
         false) AS notified
FROM users u LEFT JOIN notification_preferences p ON p.user_id = u.id
WHERE u.company_id = %(company)s AND u.role = 'admin' AND u.active ORDER BY u.email
"""


def site_devices(conn: psycopg.Connection, site_id: int,
                 now: dt.datetime | None = None) -> list[dict]:
    """Return a site's devices with what the checklist and the inventory need (no scope check)."""
    return conn.execute(_DEVICES_SQL, {"site": site_id, "now": now or dt.datetime.now(dt.UTC),
                                       "counters": [*SITE_COUNTERS, *STORAGE_COUNTERS]}
                        ).fetchall()


def in_service(device: dict) -> bool:
    """Say whether a device is not retired (revoked and not activated again)."""
    return device["revoked_at"] is None


def activated(device: dict) -> bool:
    """Say whether a device holds live credentials (activated, not revoked)."""
    return device["activated_at"] is not None and device["revoked_at"] is None


def _names(devices: list[dict], limit: int = 5) -> str:
    serials = [d["serial"] for d in devices]
    more = f" and {len(serials) - limit} more" if len(serials) > limit else ""
    return ", ".join(serials[:limit]) + more


def _retired_note(devices: list[dict]) -> str:
    retired = [d for d in devices if not in_service(d)]
    return f"; revoked, not counted: {_names(retired)}" if retired else ""


def _links(site_id: int) -> dict[str, tuple[str, str]]:
    return {"devices": (f"/admin/devices?site={site_id}", "Devices"),
            "site": (f"/site/{site_id}", "Site page"),
            "schedule": (f"/site/{site_id}/schedule", "Schedule"),
            "tariffs": (f"/admin/tariffs?site={site_id}", "Tariffs"),
            "users": ("/admin/users", "Users"),
            "notifications": ("/account/notifications", "Notification settings")}


def _item(key: str, label: str, ok: bool, detail: str, link: tuple[str, str]) -> Item:
    return Item(key=key, label=label, ok=ok, detail=detail, fix_href=link[0], fix_label=link[1])


def registered_item(devices: list[dict], link: tuple[str, str]) -> Item:
    """Devices registered: at least one device in service."""
    live = [d for d in devices if in_service(d)]
    models = sorted({d["model"] for d in live})
    detail = (f"{len(live)} device(s): {', '.join(models)}" if live
              else "no device registered") + _retired_note(devices)
    return _item("registered", "Devices registered", bool(live), detail, link)


def activated_item(devices: list[dict], link: tuple[str, str]) -> Item:
    """Devices activated: every device in service holds credentials."""
    live = [d for d in devices if in_service(d)]
    waiting = [d for d in live if not activated(d)]
    if not live:
        detail = "no device to activate"
    elif waiting:
        detail = f"{len(live) - len(waiting)} of {len(live)} activated; waiting: {_names(waiting)}"
    else:
        detail = f"all {len(live)} activated"
    return _item("activated", "Devices activated", bool(live) and not waiting,
                 detail + _retired_note(devices), link)


def telemetry_item(devices: list[dict], link: tuple[str, str]) -> Item:
    """First telemetry received from every device in service."""
    live = [d for d in devices if in_service(d)]
    silent = [d for d in live if d["first_data"] is None]
    if not live:
        detail = "no device yet"
    elif silent:
        detail = f"no data yet from {_names(silent)}"
    else:
        first = min(d["first_data"] for d in live)
        detail = f"all {len(live)} sent data (first at {first:%Y-%m-%d %H:%M} UTC)"
    return _item("telemetry", "First telemetry received", bool(live) and not silent, detail, link)


def clock_offset_s(device: dict) -> float | None:
    """Return arrival minus device time of the newest sample, in seconds (None: no data)."""
    if device["last_seen"] is None or device["newest_sample"] is None:
        return None
    return (device["last_seen"] - device["newest_sample"]).total_seconds()


def _clock_problem(device: dict) -> str | None:
    if device["ahead_refusals"]:
        return f"{device['serial']} sent samples over 5 min ahead"
    offset = clock_offset_s(device)
    if offset is None:
        return f"{device['serial']} has no recent samples to compare"
    if abs(offset) > CLOCK_TOLERANCE_S:
        side = "behind" if offset > 0 else "ahead"
        return f"{device['serial']} is {abs(offset):.1f} s {side}"
    return None


def clock_item(devices: list[dict], link: tuple[str, str]) -> Item:
    """Device clocks within 5 s of arrival (see the module docstring for the measure)."""
    live = [d for d in devices if in_service(d)]
    problems = [p for p in map(_clock_problem, live) if p]
    if not live:
        detail = "no device yet"
    elif problems:
        detail = "; ".join(problems[:4])
    else:
        worst = max(abs(clock_offset_s(d)) for d in live)
        detail = f"newest samples within {worst:.1f} s of arrival"
    return _item("clock", "Device clocks in sync", bool(live) and not problems, detail, link)


def counters_item(devices: list[dict], link: tuple[str, str]) -> Item:
    """Energy counters: grid import/export on the site, charge/discharge on each storage device."""
    live = [d for d in devices if in_service(d)]
    site_counters = {name for d in live for name in d["counters"]}
    missing = [name for name in SITE_COUNTERS if name not in site_counters]
    missing += [f"{d['serial']} {name}" for d in live if d["model"] in fleet.STORAGE_MODELS
                for name in STORAGE_COUNTERS if name not in d["counters"]]
    ok = bool(live) and not missing
    detail = ("no device yet" if not live else
              f"missing: {', '.join(missing[:6])}" if missing else
              "grid import/export and battery charge/discharge counters present")
    return _item("counters", "Energy counters present", ok, detail, link)


def schedule_item(devices: list[dict], link: tuple[str, str]) -> Item:
    """A schedule applied (acknowledged ``applied``) by every storage device in service."""
    storage = [d for d in devices if in_service(d) and d["model"] in fleet.STORAGE_MODELS]
    waiting = [d for d in storage if not d["schedule_applied"]]
    detail = ("no storage device registered" if not storage else
              f"not applied yet by {_names(waiting)}" if waiting else
              f"applied by all {len(storage)} storage device(s)")
    return _item("schedule", "Schedule applied", bool(storage) and not waiting, detail, link)


def tariff_item(tariff: dict | None, link: tuple[str, str]) -> Item:
    """A tariff in force today."""
    detail = (f"{tariff['name']} since {tariff['valid_from']:%Y-%m-%d}" if tariff
              else "no tariff in force today")
    return _item("tariff", "Tariff assigned", tariff is not None, detail, link)


def admin_item(admins: list[dict], links: dict[str, tuple[str, str]]) -> Item:
    """At least one active admin of the company gets alarm e-mails for this site."""
    notified = [a["email"] for a in admins if a["notified"]]
    if not admins:
        return _item("admin", "Admin receives notifications", False,
                     "the company has no active admin", links["users"])
    detail = (f"{', '.join(notified[:3])} receive(s) alarm e-mails" if notified else
              f"{len(admins)} admin(s), none with alarm e-mails on for this site")
    return _item("admin", "Admin receives notifications", bool(notified), detail,
                 links["notifications"])


def build(site: dict, devices: list[dict], tariff: dict | None, admins: list[dict]) -> list[Item]:
    """Judge every item from the data read for one site."""
    links = _links(site["id"])
    return [registered_item(devices, links["devices"]),
            activated_item(devices, links["devices"]),
            telemetry_item(devices, links["site"]),
            clock_item(devices, links["site"]),
            counters_item(devices, links["site"]),
            schedule_item(devices, links["schedule"]),
            tariff_item(tariff, links["tariffs"]),
            admin_item(admins, links)]


def checklist(conn: psycopg.Connection, scope: AccessScope, site_id: int,
              now: dt.datetime | None = None) -> list[Item]:
    """Return the checklist of a site the caller may see (AccessDenied otherwise)."""
    now = now or dt.datetime.now(dt.UTC)
    site = fleet.get_site(conn, scope, site_id)
    today = now.astimezone(ZoneInfo(site["timezone"])).date()
    tariff = conn.execute(_TARIFF_SQL, {"site": site_id, "today": today}).fetchone()
    admins = conn.execute(_ADMINS_SQL, {"site": site_id, "company": site["company_id"]}
                          ).fetchall()
    return build(site, site_devices(conn, site_id, now), tariff, admins)


def complete(items: list[Item]) -> bool:
    """Say whether every item is ok."""
    return all(item.ok for item in items)
