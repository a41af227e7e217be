"""What the Administration → Devices page reads: a company's devices and their identity state.

Changes go through :mod:`kilowatch.devices.lifecycle` (register, issue_code,
revoke), which checks the caller's rights and audits. Reading is allowed to
superadmins and support staff (every company) and to a company's admins (their
own); the rows never carry the code's hash or the credential nonce.
"""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg import sql

from kilowatch.access import AccessDenied, AccessScope
from kilowatch.devices import lifecycle

_COLUMNS = sql.SQL(
    """d.id, d.serial, d.model, d.rated_power_kw, d.capacity_kwh, d.firmware, d.online,
       d.last_seen, d.created_at, d.activated_at, d.revoked_at, d.activation_code_expires_at,
       d.credential_nonce, d.site_id, s.name AS site_name, s.company_id,
       c.name AS company_name"""
)
_FROM = sql.SQL("devices d JOIN sites s ON s.id = d.site_id "
                "JOIN companies c ON c.id = s.company_id")


def _summary(row: dict, now: dt.datetime) -> dict:
    """Return a device row for display: its state instead of its secrets."""
    device = {key: value for key, value in row.items() if key != "credential_nonce"}
    device["state"] = lifecycle.state(row)
    expires = row["activation_code_expires_at"]
    device["code"] = None if expires is None else ("valid" if expires > now else "expired")
    return device


def list_devices_for_admin(conn: psycopg.Connection, scope: AccessScope,
                           company_id: int | None = None, *,
                           now: dt.datetime | None = None) -> list[dict]:
    """Return the devices of one company (None: every company the caller reviews), by site.

    Each row has ``state`` (registered, activated or revoked) and ``code`` (None,
    "valid" or "expired": a pending activation code).
    """
    if company_id is None:
        if scope.platform_wide:
            where = sql.SQL("TRUE")
        elif scope.role == "admin":
            where = sql.SQL("s.company_id = {}").format(sql.Literal(scope.company_id))
        else:
            raise AccessDenied("device administration is for admins and platform staff")
    elif scope.may_review_company(company_id):
        where = sql.SQL("s.company_id = {}").format(sql.Literal(company_id))
    else:
        raise AccessDenied("not your company")
    rows = conn.execute(sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY c.name, s.name, d.serial")
                        .format(_COLUMNS, _FROM, where)).fetchall()
    now = now or dt.datetime.now(dt.UTC)
    return [_summary(row, now) for row in rows]


def device_to_change(conn: psycopg.Connection, scope: AccessScope, device_id: int, *,
                     now: dt.datetime | None = None) -> dict:
    """Return a device the caller may change (its company's admins, superadmins) or deny."""
    row = conn.execute(sql.SQL("SELECT {} FROM {} WHERE d.id = %s").format(_COLUMNS, _FROM),
                       (device_id,)).fetchone()
    if row is None or not scope.may_administer_company(row["company_id"]):
        raise AccessDenied("no such device")
    return _summary(row, now or dt.datetime.now(dt.UTC))
