"""Build a site step by step through the real functions, as a commissioner would."""

from __future__ import annotations

import datetime as dt
import secrets

import psycopg

from kilowatch import fleet
from kilowatch.access import AccessScope, system_scope
from kilowatch.accounts import passwords, users
from kilowatch.alarms import notifications
from kilowatch.billing import tariff_store, tariffs
from kilowatch.devices import lifecycle
from kilowatch.schedules import store as schedule_store
from kilowatch.settings import Settings
from kilowatch.telemetry import ingest

ROOT = system_scope("test")
SCHEDULE = {"timezone": "Europe/Paris", "default_mode": "idle", "periods": []}


def new_company(conn: psycopg.Connection, label: str = "Co") -> tuple[int, int]:
    """Create a company with one site; return (company id, site id)."""
    name = f"{label} {secrets.token_hex(3)}"
    company = fleet.create_company(conn, ROOT, name)
    site = fleet.create_site(conn, ROOT, company_id=company, name="Plant",
                             timezone="Europe/Paris")
    return company, site


def new_admin(conn: psycopg.Connection, company: int, email: str | None = None) -> AccessScope:
    """Create an active admin of the company and return their scope."""
    email = email or f"admin-{secrets.token_hex(3)}@example.com"
    user_id = users.create_user(conn, ROOT, email=email, role="admin", company_id=company,
                                password_hash=passwords.hash_password("correct horse battery"),
                                must_change_password=False)
    return AccessScope(role="admin", user_id=user_id, company_id=company, actor=email)


def register(conn: psycopg.Connection, scope: AccessScope, site: int, model: str = "HES-XL",
             serial: str | None = None) -> tuple[int, str, str]:
    """Register a device; return (id, serial, activation code)."""
    serial = serial or f"HX{secrets.token_hex(4)}"
    device_id, code = lifecycle.register(conn, scope, site_id=site, serial=serial, model=model,
                                         rated_power_kw=100.0, capacity_kwh=200.0)
    return device_id, serial, code


def activate(conn: psycopg.Connection, settings: Settings, serial: str, code: str) -> None:
    """Activate a device with its code, as the device's HTTPS request does."""
    lifecycle.activate(conn, settings, serial=serial, code=code, firmware="2.4.1",
                       client="127.0.0.1")


def send_telemetry(conn: psycopg.Connection, device_id: int, names: list[str], *,
                   lag_s: float = 0.4, at: dt.datetime | None = None) -> None:
    """Store samples as the collector does: points registered, rows, arrival as last seen."""
    at = at or dt.datetime.now(dt.UTC)
    ids = ingest.register_points(conn, {device_id: names}, limit=5000)[device_id]
    sample_time = at - dt.timedelta(seconds=lag_s)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO telemetry (time, device_id, point_id, value) "
                        "VALUES (%s, %s, %s, 1.0) ON CONFLICT DO NOTHING",
                        [(sample_time, device_id, ids[name]) for name in names])
    conn.execute("UPDATE devices SET last_seen = %s, online = true WHERE id = %s",
                 (at, device_id))


def apply_schedule(conn: psycopg.Connection, scope: AccessScope, site: int,
                   device_ids: list[int]) -> None:
    """Save a schedule and record each device's 'applied' acknowledgement."""
    revision = schedule_store.save_revision(conn, scope, site, SCHEDULE, comment="first")
    for device_id in device_ids:
        schedule_store.record_ack(conn, device_id=device_id, revision=revision["revision"],
                                  status="applied")


def assign_tariff(conn: psycopg.Connection, scope: AccessScope, company: int, site: int) -> None:
    """Create a flat tariff and give it to the site from yesterday on."""
    table = [[0] * 24 for _ in range(12)]
    tariff = tariffs.parse({"currency": "EUR", "energy": {"periods": [{"tiers": [{"rate": 0.2}]}],
                                                     "weekday": table, "weekend": table}})
    tariff_id = tariff_store.create_tariff(conn, scope, company_id=company, name="Flat",
                                           tariff=tariff)
    tariff_store.assign_tariff(conn, scope, site_id=site, tariff_id=tariff_id,
                               valid_from=dt.date.today() - dt.timedelta(days=1))


def notify_admin(conn: psycopg.Connection, scope: AccessScope) -> None:
    """Turn on the admin's own alarm e-mails for every site."""
    notifications.save_preferences(conn, scope, {"enabled": True, "severities": ["critical"],
                                                 "all_sites": True, "on_raise": True})
