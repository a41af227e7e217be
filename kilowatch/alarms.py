"""The alarm core: raise, re-raise and clear alarms, each change logged as an event.

At most one alarm per (device, code) is active (not cleared) at a time; raising
an active alarm again bumps its ``raise_count`` and ``last_raised_at`` instead
of opening a second one. Callers are platform processes (collector, worker),
so these functions take no access scope; readers go through :func:`list_alarms`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from kilowatch.access import AccessScope, site_filter

SEVERITIES = ("critical", "major", "minor", "warning")
SOURCES = ("device", "rule", "platform")
EVENT_KINDS = ("raised", "re-raised", "acknowledged", "commented", "cleared", "notified")


class AlarmError(ValueError):
    """An alarm request with a value the platform does not accept."""


def _check(severity: str, source: str, code: str) -> None:
    if severity not in SEVERITIES:
        raise AlarmError(f"severity must be one of {', '.join(SEVERITIES)}")
    if source not in SOURCES:
        raise AlarmError(f"source must be one of {', '.join(SOURCES)}")
    if not code or len(code) > 64:
        raise AlarmError("an alarm code is 1-64 characters")


def add_event(conn: psycopg.Connection, alarm_id: int, kind: str, *, at: dt.datetime,
              actor: str | None = None, actor_user_id: int | None = None,
              details: dict[str, Any] | None = None) -> None:
    """Append one event to an alarm's history."""
    if kind not in EVENT_KINDS:
        raise AlarmError(f"unknown alarm event kind {kind!r}")
    conn.execute(
        """INSERT INTO alarm_events (alarm_id, at, kind, actor, actor_user_id, details)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (alarm_id, at, kind, actor, actor_user_id,
         Jsonb(details) if details is not None else None),
    )


def raise_alarm(conn: psycopg.Connection, *, device_id: int, code: str, severity: str,
                source: str, message: str, at: dt.datetime) -> int | None:
    """Raise an alarm (or re-raise the active one); return its id, None for an unknown device."""
    _check(severity, source, code)
    with conn.transaction():
        row = conn.execute(
            """INSERT INTO alarms (device_id, site_id, code, severity, source, message,
                                   raised_at, last_raised_at)
               SELECT d.id, d.site_id, %(code)s, %(severity)s, %(source)s, %(message)s,
                      %(at)s, %(at)s
               FROM devices d WHERE d.id = %(device_id)s
               ON CONFLICT (device_id, code) WHERE cleared_at IS NULL DO UPDATE
               SET severity = excluded.severity, message = excluded.message,
                   last_raised_at = greatest(alarms.last_raised_at, excluded.last_raised_at),
                   raise_count = alarms.raise_count + 1
               RETURNING id, (xmax = 0) AS created""",
            {"device_id": device_id, "code": code, "severity": severity, "source": source,
             "message": message or "", "at": at},
        ).fetchone()
        if row is None:
            return None
        add_event(conn, row["id"], "raised" if row["created"] else "re-raised", at=at,
                  actor=source, details={"severity": severity, "message": message or ""})
    return row["id"]


def clear_alarm(conn: psycopg.Connection, *, device_id: int, code: str,
                at: dt.datetime) -> int | None:
    """Clear the active alarm of a device with this code; return its id or None if none."""
    with conn.transaction():
        row = conn.execute(
            """UPDATE alarms SET cleared_at = greatest(%s, raised_at)
               WHERE device_id = %s AND code = %s AND cleared_at IS NULL
               RETURNING id, source""",
            (at, device_id, code),
        ).fetchone()
        if row is None:
            return None
        add_event(conn, row["id"], "cleared", at=at, actor=row["source"])
    return row["id"]


def list_alarms(conn: psycopg.Connection, scope: AccessScope, *, site_id: int | None = None,
                active_only: bool = True, limit: int = 500) -> list[dict]:
    """Return the alarms of the sites the caller may see, newest first."""
    conditions = [site_filter(scope)]
    params: list[Any] = []
    if site_id is not None:
        conditions.append(sql.SQL("a.site_id = %s"))
        params.append(site_id)
    if active_only:
        conditions.append(sql.SQL("a.cleared_at IS NULL"))
    query = sql.SQL(
        "SELECT a.*, d.serial FROM alarms a JOIN sites s ON s.id = a.site_id "
        "JOIN devices d ON d.id = a.device_id WHERE {} ORDER BY a.raised_at DESC, a.id DESC "
        "LIMIT %s"
    ).format(sql.SQL(" AND ").join(conditions))
    return conn.execute(query, [*params, limit]).fetchall()


def alarm_events(conn: psycopg.Connection, scope: AccessScope, alarm_id: int) -> list[dict]:
    """Return the history of one alarm the caller may see, oldest first."""
    query = sql.SQL(
        "SELECT e.* FROM alarm_events e JOIN alarms a ON a.id = e.alarm_id "
        "JOIN sites s ON s.id = a.site_id WHERE e.alarm_id = %s AND {} ORDER BY e.at, e.id"
    ).format(site_filter(scope))
    return conn.execute(query, (alarm_id,)).fetchall()
