"""The alarm core: raise, re-raise and clear alarms, each change logged as an event.

At most one alarm per (device, code) is active (not cleared) at a time; raising
an active alarm again bumps its ``raise_count`` and ``last_raised_at`` instead
of opening a second one. Raises and clears also land in ``notification_inbox``
in the same transaction, so the notifications job sees every one of them
exactly once. Writers are platform processes (collector, worker) and take no
access scope; everything people do or read goes through functions taking one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from kilowatch import audit
from kilowatch.access import AccessDenied, AccessScope, site_filter

SEVERITIES = ("critical", "major", "minor", "warning")
SOURCES = ("device", "rule", "platform")
STATES = ("active", "cleared")
EVENT_KINDS = ("raised", "re-raised", "acknowledged", "commented", "cleared", "notified")
NOTIFIED_KINDS = ("raised", "cleared")
MAX_COMMENT = 2000
SEVERITY_RANK = sql.SQL(
    "CASE a.severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 WHEN 'minor' THEN 2 ELSE 3 END")


class AlarmError(ValueError):
    """An alarm request with a value the platform does not accept."""


def _check(severity: str, source: str, code: str) -> None:
    if severity not in SEVERITIES:
        raise AlarmError(f"severity must be one of {', '.join(SEVERITIES)}")
    if source not in SOURCES:
        raise AlarmError(f"source must be one of {', '.join(SOURCES)}")
    if not code or len(code) > 64:
        raise AlarmError("an alarm code is 1-64 characters")


# ---- writing (platform processes) --------------------------------------------------------------

def add_event(conn: psycopg.Connection, alarm_id: int, kind: str, *, at: dt.datetime,
              actor: str | None = None, actor_user_id: int | None = None,
              details: dict[str, Any] | None = None) -> int:
    """Append one event to an alarm's history (raises and clears also to the inbox)."""
    if kind not in EVENT_KINDS:
        raise AlarmError(f"unknown alarm event kind {kind!r}")
    event_id = conn.execute(
        """INSERT INTO alarm_events (alarm_id, at, kind, actor, actor_user_id, details)
           VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
        (alarm_id, at, kind, actor, actor_user_id,
         Jsonb(details) if details is not None else None),
    ).fetchone()["id"]
    if kind in NOTIFIED_KINDS:
        conn.execute("INSERT INTO notification_inbox (event_id) VALUES (%s)", (event_id,))
    return event_id


def first_device_message(conn: psycopg.Connection, *, device_id: int, code: str, state: str,
                         at: dt.datetime) -> bool:
    """Note a device's alarm message; say False when the same one was already applied.

    The broker delivers a QoS 1 message again when the collector did not acknowledge
    it (a crash or restart after the commit): the device's own time tells it apart.
    """
    return conn.execute(
        "INSERT INTO device_alarm_messages (device_id, code, state, at) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (device_id, code, state, at)).fetchone() is not None


def raise_alarm(conn: psycopg.Connection, *, device_id: int, code: str, severity: str,
                source: str, message: str, at: dt.datetime,
                rule_id: int | None = None) -> int | None:
    """Raise an alarm (or re-raise the active one); return its id, None for an unknown device."""
    _check(severity, source, code)
    with conn.transaction():
        row = conn.execute(
            """INSERT INTO alarms (device_id, site_id, code, severity, source, message,
                                   raised_at, last_raised_at, rule_id)
               SELECT d.id, d.site_id, %(code)s, %(severity)s, %(source)s, %(message)s,
                      %(at)s, %(at)s, %(rule_id)s
               FROM devices d WHERE d.id = %(device_id)s
               ON CONFLICT (device_id, code) WHERE cleared_at IS NULL DO UPDATE
               SET severity = excluded.severity, message = excluded.message,
                   last_raised_at = greatest(alarms.last_raised_at, excluded.last_raised_at),
                   raise_count = alarms.raise_count + 1
               RETURNING id, (xmax = 0) AS created""",
            {"device_id": device_id, "code": code, "severity": severity, "source": source,
             "message": message or "", "at": at, "rule_id": rule_id},
        ).fetchone()
        if row is None:
            return None
        add_event(conn, row["id"], "raised" if row["created"] else "re-raised", at=at,
                  actor=source, details={"severity": severity, "message": message or ""})
    return row["id"]


def clear_alarm(conn: psycopg.Connection, *, device_id: int, code: str,
                at: dt.datetime, message: str | None = None) -> int | None:
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
        add_event(conn, row["id"], "cleared", at=at, actor=row["source"],
                  details={"message": message} if message else None)
    return row["id"]


# ---- reading (people, through their scope) -----------------------------------------------------

_ALARM_SELECT = """
SELECT a.*, d.serial, d.model, s.name AS site_name, s.timezone, s.company_id,
       c.name AS company_name, r.name AS rule_name, r.point AS rule_point,
       extract(epoch FROM coalesce(a.cleared_at, now()) - a.raised_at)::float8 AS duration_s
FROM alarms a JOIN devices d ON d.id = a.device_id JOIN sites s ON s.id = a.site_id
JOIN companies c ON c.id = s.company_id LEFT JOIN alert_rules r ON r.id = a.rule_id
"""

# Points worth seeing next to an alarm, by code prefix (first match wins).
RELATED_POINTS = (
    ("COMM_LOST", ("pcs.p", "bms.soc")),
    ("BMS_OVERTEMP", ("bms.t_max", "bms.t_min", "pcs.p")),
    ("BMS_CELL", ("bms.cell_v_max", "bms.cell_v_min", "bms.soc")),
    ("BMS_", ("bms.soc", "bms.v", "bms.i", "bms.t_max")),
    ("PCS_", ("pcs.p", "pcs.state", "meter.grid.p")),
    ("METER_", ("meter.grid.p", "meter.load.p", "meter.pv.p")),
    ("SCHEDULE_", ("pcs.p", "bms.soc")),
)
DEFAULT_POINTS = ("pcs.p", "bms.soc", "meter.grid.p")


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


def active_alarms(conn: psycopg.Connection, scope: AccessScope, *,
                  limit: int = 2000) -> list[dict]:
    """Return the active alarms of the caller's sites, most severe then newest first."""
    query = sql.SQL(_ALARM_SELECT + "WHERE a.cleared_at IS NULL AND {} "
                    "ORDER BY {}, a.last_raised_at DESC, a.id DESC LIMIT %s").format(
        site_filter(scope), SEVERITY_RANK)
    return conn.execute(query, (limit,)).fetchall()


def severity_counts(conn: psycopg.Connection, scope: AccessScope) -> dict[str, int]:
    """Return the number of active alarms per severity on the caller's sites."""
    query = sql.SQL("SELECT a.severity, count(*) AS n FROM alarms a JOIN sites s "
                    "ON s.id = a.site_id WHERE a.cleared_at IS NULL AND {} "
                    "GROUP BY a.severity").format(site_filter(scope))
    counts = dict.fromkeys(SEVERITIES, 0)
    counts.update({row["severity"]: row["n"] for row in conn.execute(query)})
    return counts


def as_alarm_id(value: object) -> int:
    """Return an alarm id from the browser as an int, or raise AccessDenied."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise AccessDenied("no such alarm")
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18 or int(text) < 1:
        raise AccessDenied("no such alarm")
    return int(text)


def get_alarm(conn: psycopg.Connection, scope: AccessScope, alarm_id: object) -> dict:
    """Return one alarm of the caller's sites, or raise AccessDenied (also when missing)."""
    query = sql.SQL(_ALARM_SELECT + "WHERE a.id = %s AND {}").format(site_filter(scope))
    row = conn.execute(query, (as_alarm_id(alarm_id),)).fetchone()
    if row is None:
        raise AccessDenied("no such alarm")
    return row


def related_points(alarm: dict) -> tuple[str, ...]:
    """Return the points to chart around an alarm: its rule's point, or by code."""
    if alarm.get("rule_point"):
        return (alarm["rule_point"],)
    code = alarm["code"]
    return next((points for prefix, points in RELATED_POINTS if code.startswith(prefix)),
                DEFAULT_POINTS)


def alarm_events(conn: psycopg.Connection, scope: AccessScope, alarm_id: int) -> list[dict]:
    """Return the history of one alarm the caller may see, oldest first."""
    query = sql.SQL(
        "SELECT e.* FROM alarm_events e JOIN alarms a ON a.id = e.alarm_id "
        "JOIN sites s ON s.id = a.site_id WHERE e.alarm_id = %s AND {} ORDER BY e.at, e.id"
    ).format(site_filter(scope))
    return conn.execute(query, (alarm_id,)).fetchall()


# ---- history -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class HistoryQuery:
    """Filters of the alarm history; None means "any"."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None
    site_id: int | None = None
    device_id: int | None = None
    code: str | None = None
    severities: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    state: str | None = None
    acknowledged: bool | None = None
    min_duration_s: float | None = None
    limit: int = 5000

    def __post_init__(self) -> None:
        if any(s not in SEVERITIES for s in self.severities):
            raise AlarmError(f"severity must be among {', '.join(SEVERITIES)}")
        if any(s not in SOURCES for s in self.sources):
            raise AlarmError(f"source must be among {', '.join(SOURCES)}")
        if self.state is not None and self.state not in STATES:
            raise AlarmError("state must be active or cleared")
        if self.start and self.end and self.end <= self.start:
            raise AlarmError("the end of the range must come after its start")
        if self.min_duration_s is not None and self.min_duration_s < 0:
            raise AlarmError("the minimum duration cannot be negative")


def _history_conditions(query: HistoryQuery) -> tuple[list[sql.Composable], list[Any]]:
    # An alarm belongs to a range when it was active at some moment of it.
    checks: list[tuple[bool, str, Any]] = [
        (query.start is not None, "coalesce(a.cleared_at, 'infinity') >= %s", query.start),
        (query.end is not None, "a.raised_at < %s", query.end),
        (query.site_id is not None, "a.site_id = %s", query.site_id),
        (query.device_id is not None, "a.device_id = %s", query.device_id),
        (bool(query.code), "a.code = %s", query.code),
        (bool(query.severities), "a.severity = ANY(%s)", list(query.severities)),
        (bool(query.sources), "a.source = ANY(%s)", list(query.sources)),
        (query.min_duration_s is not None,
         "coalesce(a.cleared_at, now()) - a.raised_at >= make_interval(secs => %s)",
         query.min_duration_s),
    ]
    conditions = [sql.SQL(text) for on, text, _ in checks if on]
    params = [value for on, _, value in checks if on]
    if query.state is not None:
        conditions.append(sql.SQL("a.cleared_at IS NULL" if query.state == "active"
                                  else "a.cleared_at IS NOT NULL"))
    if query.acknowledged is not None:
        conditions.append(sql.SQL("a.acknowledged_at IS NOT NULL" if query.acknowledged
                                  else "a.acknowledged_at IS NULL"))
    return conditions, params


def search_alarms(conn: psycopg.Connection, scope: AccessScope,
                  query: HistoryQuery) -> list[dict]:
    """Return the caller's alarms matching the filters, newest raise first."""
    conditions, params = _history_conditions(query)
    where = sql.SQL(" AND ").join([site_filter(scope), *conditions])
    statement = sql.SQL(_ALARM_SELECT + "WHERE {} ORDER BY a.raised_at DESC, a.id DESC "
                        "LIMIT %s").format(where)
    return conn.execute(statement, [*params, max(1, min(query.limit, 50_000))]).fetchall()


def history_options(conn: psycopg.Connection, scope: AccessScope) -> dict[str, list[dict]]:
    """Return what the history filters offer: the caller's sites, devices and alarm codes."""
    sites = conn.execute(sql.SQL(
        "SELECT s.id, s.name, c.name AS company_name FROM sites s "
        "JOIN companies c ON c.id = s.company_id WHERE {} ORDER BY c.name, s.name"
    ).format(site_filter(scope))).fetchall()
    devices = conn.execute(sql.SQL(
        "SELECT d.id, d.serial, d.site_id, s.name AS site_name FROM devices d "
        "JOIN sites s ON s.id = d.site_id WHERE {} ORDER BY d.serial"
    ).format(site_filter(scope))).fetchall()
    codes = conn.execute(sql.SQL(
        "SELECT DISTINCT a.code FROM alarms a JOIN sites s ON s.id = a.site_id WHERE {} "
        "ORDER BY a.code"
    ).format(site_filter(scope))).fetchall()
    return {"sites": sites, "devices": devices, "codes": codes}


# ---- what people do --------------------------------------------------------------------------

def _check_comment(text: str | None, *, required: bool) -> str:
    if text is not None and not isinstance(text, str):
        raise AlarmError("a comment is text")
    text = (text or "").strip()
    if required and not text:
        raise AlarmError("write a comment first")
    if len(text) > MAX_COMMENT:
        raise AlarmError(f"a comment is at most {MAX_COMMENT} characters")
    return text


def _locked_alarm(conn: psycopg.Connection, scope: AccessScope, alarm_id: object) -> dict:
    if not scope.may_acknowledge_alarms:
        raise AccessDenied("viewers cannot acknowledge or comment alarms")
    query = sql.SQL("SELECT a.*, s.company_id FROM alarms a JOIN sites s ON s.id = a.site_id "
                    "WHERE a.id = %s AND {} FOR UPDATE OF a").format(site_filter(scope))
    row = conn.execute(query, (as_alarm_id(alarm_id),)).fetchone()
    if row is None:
        raise AccessDenied("no such alarm")
    return row


def acknowledge(conn: psycopg.Connection, scope: AccessScope, alarm_id: object, *,
                comment: str | None = None, at: dt.datetime | None = None) -> dict:
    """Acknowledge an alarm of the caller's sites (operators and above, support), once."""
    text = _check_comment(comment, required=False)
    at = at or dt.datetime.now(dt.UTC)
    with conn.transaction():
        alarm = _locked_alarm(conn, scope, alarm_id)
        if alarm["acknowledged_at"] is not None:
            raise AlarmError(f"already acknowledged by {alarm['acknowledged_by']}")
        conn.execute("UPDATE alarms SET acknowledged_at = %s, acknowledged_by = %s, "
                     "acknowledged_by_user_id = %s WHERE id = %s",
                     (at, scope.actor, scope.user_id, alarm["id"]))
        add_event(conn, alarm["id"], "acknowledged", at=at, actor=scope.actor,
                  actor_user_id=scope.user_id, details={"comment": text} if text else None)
        audit.record(conn, scope, "alarm.acknowledge", target=f"alarm:{alarm['id']}",
                     company_id=alarm["company_id"], after={"comment": text or None})
    return {**alarm, "acknowledged_at": at, "acknowledged_by": scope.actor}


def add_comment(conn: psycopg.Connection, scope: AccessScope, alarm_id: object, text: str, *,
                at: dt.datetime | None = None) -> None:
    """Add a comment to an alarm of the caller's sites (operators and above, support)."""
    text = _check_comment(text, required=True)
    at = at or dt.datetime.now(dt.UTC)
    with conn.transaction():
        alarm = _locked_alarm(conn, scope, alarm_id)
        add_event(conn, alarm["id"], "commented", at=at, actor=scope.actor,
                  actor_user_id=scope.user_id, details={"comment": text})
        audit.record(conn, scope, "alarm.comment", target=f"alarm:{alarm['id']}",
                     company_id=alarm["company_id"], after={"comment": text})
