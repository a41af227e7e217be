"""Who gets which alarm e-mail, when: preferences, fan-out, reminders, rate limit, outbox.

The path of a notification:

1. :func:`fan_out` takes the raises and clears that :mod:`kilowatch.alarms.events`
   wrote to ``notification_inbox`` and turns them into ``notification_items``
   (user, alarm, kind, due time) for the users who may see the site and want
   it: company administrators always get ``COMM_LOST`` (due after
   ``KILOWATCH_COMM_LOST_RECHECK`` seconds) and its recovery; anyone else per
   their own preferences (severities, sites, on raise/clear, delay). An alarm
   cleared before its raise was due drops both: nobody hears of a blip.
2. :func:`queue_reminders` adds a reminder item for every active,
   unacknowledged critical alarm whose last e-mail to a user is older than
   that user's ``reminder_hours``.
3. :func:`dispatch` re-checks each due item with the recipient's current
   scope (the alarm is read through it: no data of a site the recipient may
   not see ever reaches a body), that the alarm is still active (and, for
   ``COMM_LOST``, that the device is still offline), then writes e-mails to
   the outbox — one per item, or one summary when the user's hourly budget
   (``KILOWATCH_NOTIFY_MAX_PER_HOUR``) would otherwise run out.
4. :mod:`kilowatch.alarms.outbox` sends the outbox with retries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from kilowatch import audit
from kilowatch.access import AccessDenied, AccessScope, site_filter, system_scope
from kilowatch.accounts import users
from kilowatch.alarms import events as alarms
from kilowatch.alarms import outbox
from kilowatch.alarms import texts as notification_texts
from kilowatch.ids import parse_id
from kilowatch.settings import Settings

log = logging.getLogger(__name__)

COMM_LOST = "COMM_LOST"
FAN_OUT_BATCH = 1000
MAX_DELAY_S = 86_400


class PreferenceError(ValueError):
    """Notification settings the platform does not accept."""


# ---- preferences -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class Preferences:
    """One user's choice of alarm e-mails."""

    enabled: bool = False
    severities: tuple[str, ...] = ("critical", "major")
    all_sites: bool = True
    site_ids: tuple[int, ...] = ()
    on_raise: bool = True
    on_clear: bool = False
    delay_s: int = 0
    reminder_hours: int | None = None


def _whole(value: object, label: str, low: int, high: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PreferenceError(f"{label} must be a whole number") from None
    if not number.is_integer() or not low <= number <= high:
        raise PreferenceError(f"{label} must be a whole number from {low} to {high}")
    return int(number)


def validate_preferences(fields: Mapping[str, Any]) -> Preferences:
    """Check notification settings from a form and return them."""
    chosen = fields.get("severities") or ()
    if not isinstance(chosen, list | tuple) or any(s not in alarms.SEVERITIES for s in chosen):
        raise PreferenceError(f"severities are among {', '.join(alarms.SEVERITIES)}")
    severities = tuple(s for s in alarms.SEVERITIES if s in chosen)
    raw_sites = fields.get("site_ids") or ()
    if not isinstance(raw_sites, list | tuple) or any(parse_id(s) is None for s in raw_sites):
        raise PreferenceError("sites are given by their ids")
    site_ids = tuple(sorted({parse_id(s) for s in raw_sites}))
    all_sites = bool(fields.get("all_sites", True))
    enabled = bool(fields.get("enabled", True))
    on_raise, on_clear = bool(fields.get("on_raise", True)), bool(fields.get("on_clear", False))
    if enabled and not severities:
        raise PreferenceError("pick at least one severity, or turn e-mails off")
    if enabled and not (on_raise or on_clear):
        raise PreferenceError("pick when to be told: when alarms are raised, cleared or both")
    if enabled and not all_sites and not site_ids:
        raise PreferenceError("pick at least one site, or all sites")
    reminder = fields.get("reminder_hours")
    return Preferences(
        enabled=enabled, severities=severities, all_sites=all_sites,
        site_ids=() if all_sites else site_ids, on_raise=on_raise, on_clear=on_clear,
        delay_s=_whole(fields.get("delay_s") or 0, "the delay (seconds)", 0, MAX_DELAY_S),
        reminder_hours=None if reminder in (None, "", 0, "0")
        else _whole(reminder, "the reminder interval (hours)", 1, 168))


def get_preferences(conn: psycopg.Connection, scope: AccessScope) -> Preferences:
    """Return the caller's own notification settings (off when never saved)."""
    if scope.user_id is None:
        raise AccessDenied("only people have notification settings")
    row = conn.execute("SELECT * FROM notification_preferences WHERE user_id = %s",
                       (scope.user_id,)).fetchone()
    if row is None:
        return Preferences()
    site_ids = [r["site_id"] for r in conn.execute(
        sql.SQL("SELECT ns.site_id FROM notification_sites ns JOIN sites s ON s.id = ns.site_id "
                "WHERE ns.user_id = %s AND {} ORDER BY ns.site_id").format(site_filter(scope)),
        (scope.user_id,))]
    return Preferences(enabled=row["enabled"], severities=tuple(row["severities"]),
                       all_sites=row["all_sites"], site_ids=tuple(site_ids),
                       on_raise=row["on_raise"], on_clear=row["on_clear"],
                       delay_s=row["delay_s"], reminder_hours=row["reminder_hours"])


def save_preferences(conn: psycopg.Connection, scope: AccessScope,
                     fields: Mapping[str, Any]) -> Preferences:
    """Save the caller's own notification settings; sites must be within their scope."""
    if scope.user_id is None:
        raise AccessDenied("only people have notification settings")
    prefs = validate_preferences(fields)
    with conn.transaction():
        visible = {r["id"] for r in conn.execute(
            sql.SQL("SELECT s.id FROM sites s WHERE s.id = ANY(%s) AND {}").format(
                site_filter(scope)), (list(prefs.site_ids),))}
        if visible != set(prefs.site_ids):
            raise AccessDenied("a chosen site is not one of yours")
        conn.execute(
            """INSERT INTO notification_preferences (user_id, enabled, severities, all_sites,
                   on_raise, on_clear, delay_s, reminder_hours)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (user_id) DO UPDATE SET enabled = excluded.enabled,
                   severities = excluded.severities, all_sites = excluded.all_sites,
                   on_raise = excluded.on_raise, on_clear = excluded.on_clear,
                   delay_s = excluded.delay_s, reminder_hours = excluded.reminder_hours,
                   updated_at = now()""",
            (scope.user_id, prefs.enabled, list(prefs.severities), prefs.all_sites,
             prefs.on_raise, prefs.on_clear, prefs.delay_s, prefs.reminder_hours))
        conn.execute("DELETE FROM notification_sites WHERE user_id = %s", (scope.user_id,))
        conn.execute("INSERT INTO notification_sites (user_id, site_id) "
                     "SELECT %s, unnest(%s::int[])", (scope.user_id, list(prefs.site_ids)))
        audit.record(conn, scope, "notifications.update", target=f"user:{scope.user_id}",
                     company_id=scope.company_id, after=dataclasses.asdict(prefs))
    return prefs


# ---- fan-out: alarm events → items -------------------------------------------------------

# Active users who may see the alarm's site, with their preferences and
# whether they want this alarm (NULL: no preferences).
_RECIPIENTS_SQL = """
SELECT u.id AS user_id, u.role, (u.role = 'admin' AND %(comm_lost)s) AS mandatory,
       p.delay_s,
       (p.enabled AND %(severity)s = ANY(p.severities)
        AND (p.all_sites OR EXISTS (SELECT 1 FROM notification_sites ns
                                    WHERE ns.user_id = u.id AND ns.site_id = s.id))) AS wants,
       coalesce(p.on_raise, false) AS on_raise, coalesce(p.on_clear, false) AS on_clear
FROM sites s
JOIN users u ON u.active AND (
    u.role IN ('support', 'superadmin')
    OR (u.company_id = s.company_id AND (u.role = 'admin' OR EXISTS (
        SELECT 1 FROM group_members gm JOIN group_sites gs ON gs.group_id = gm.group_id
        WHERE gm.user_id = u.id AND gs.site_id = s.id))))
LEFT JOIN notification_preferences p ON p.user_id = u.id
WHERE s.id = %(site_id)s
ORDER BY u.id
"""


def _recipients(conn: psycopg.Connection, alarm: dict) -> list[dict]:
    return conn.execute(_RECIPIENTS_SQL, {"comm_lost": alarm["code"] == COMM_LOST,
                                          "severity": alarm["severity"],
                                          "site_id": alarm["site_id"]}).fetchall()


def _add_item(conn: psycopg.Connection, user_id: int, alarm_id: int, kind: str, *,
              mandatory: bool, event_at: dt.datetime, due_at: dt.datetime) -> None:
    conn.execute(
        """INSERT INTO notification_items (user_id, alarm_id, kind, mandatory, event_at, due_at)
           VALUES (%s, %s, %s, %s, %s, %s)
           ON CONFLICT (user_id, alarm_id, kind) WHERE kind IN ('raised', 'cleared')
           DO NOTHING""",
        (user_id, alarm_id, kind, mandatory, event_at, due_at))


def _on_raise(conn: psycopg.Connection, settings: Settings, alarm: dict,
              at: dt.datetime) -> None:
    for person in _recipients(conn, alarm):
        wants = bool(person["wants"]) and person["on_raise"]
        if not (person["mandatory"] or wants):
            continue
        delay = person["delay_s"] if wants else 0
        if alarm["code"] == COMM_LOST:  # whoever is told, only after the re-check
            delay = max(delay, settings.comm_lost_recheck)
        _add_item(conn, person["user_id"], alarm["id"], "raised", mandatory=person["mandatory"],
                  event_at=at, due_at=at + dt.timedelta(seconds=delay))


def _on_clear(conn: psycopg.Connection, alarm: dict, at: dt.datetime) -> None:
    items = {(r["user_id"], r["kind"]): r for r in conn.execute(
        "SELECT user_id, kind, status FROM notification_items WHERE alarm_id = %s "
        "AND status <> 'dropped'", (alarm["id"],))}
    conn.execute("UPDATE notification_items SET status = 'dropped', reason = %s, done_at = now() "
                 "WHERE alarm_id = %s AND status = 'pending' AND kind IN ('raised', 'reminder')",
                 ("cleared before it was due", alarm["id"]))
    for person in _recipients(conn, alarm):
        raised = items.get((person["user_id"], "raised"))
        wants = bool(person["wants"]) and person["on_clear"]
        if raised is not None and raised["status"] == "pending":
            continue  # dropped with its raise
        told = raised is not None and raised["status"] == "queued"
        if (told and (person["mandatory"] or wants)) or (raised is None and wants):
            _add_item(conn, person["user_id"], alarm["id"], "cleared",
                      mandatory=person["mandatory"], event_at=at, due_at=at)


def fan_out(conn: psycopg.Connection, settings: Settings) -> int:
    """Turn new alarm raises and clears into notification items; return events handled."""
    with conn.transaction():
        events = conn.execute(
            """WITH taken AS (
                   DELETE FROM notification_inbox WHERE event_id IN (
                       SELECT event_id FROM notification_inbox ORDER BY event_id
                       LIMIT %s FOR UPDATE SKIP LOCKED)
                   RETURNING event_id)
               SELECT e.id AS event_id, e.kind, e.at, a.id, a.code, a.severity, a.site_id
               FROM taken JOIN alarm_events e ON e.id = taken.event_id
               JOIN alarms a ON a.id = e.alarm_id ORDER BY e.id""",
            (FAN_OUT_BATCH,)).fetchall()
        for event in events:
            if event["kind"] == "raised":
                _on_raise(conn, settings, event, event["at"])
            else:
                _on_clear(conn, event, event["at"])
    return len(events)


def queue_reminders(conn: psycopg.Connection, now: dt.datetime) -> int:
    """Queue reminders of active unacknowledged critical alarms; return how many."""
    return conn.execute(
        """INSERT INTO notification_items (user_id, alarm_id, kind, event_at, due_at)
           SELECT i.user_id, i.alarm_id, 'reminder', %(now)s, %(now)s
           FROM notification_items i
           JOIN alarms a ON a.id = i.alarm_id
           JOIN notification_preferences p ON p.user_id = i.user_id
           WHERE a.cleared_at IS NULL AND a.acknowledged_at IS NULL AND a.severity = 'critical'
             AND p.enabled AND p.reminder_hours IS NOT NULL
             AND i.kind IN ('raised', 'reminder') AND i.status = 'queued'
             AND NOT EXISTS (SELECT 1 FROM notification_items q WHERE q.alarm_id = i.alarm_id
                             AND q.user_id = i.user_id AND q.status = 'pending')
           GROUP BY i.user_id, i.alarm_id, p.reminder_hours
           HAVING max(i.done_at) <= %(now)s - make_interval(hours => p.reminder_hours)""",
        {"now": now}).rowcount


# ---- dispatch: items → outbox ------------------------------------------------------------

def _drop(conn: psycopg.Connection, item_ids: list[int], reason: str) -> None:
    if item_ids:
        conn.execute("UPDATE notification_items SET status = 'dropped', reason = %s, "
                     "done_at = now() WHERE id = ANY(%s)", (reason, item_ids))


def _still_relevant(conn: psycopg.Connection, item: dict, alarm: dict) -> str | None:
    """Return why an item should not be sent any more, or None to send it."""
    if item["kind"] in ("raised", "reminder") and alarm["cleared_at"] is not None:
        return "cleared before it was due"
    if item["kind"] == "reminder" and alarm["acknowledged_at"] is not None:
        return "acknowledged"
    if item["kind"] == "raised" and alarm["code"] == COMM_LOST:
        online = conn.execute("SELECT online FROM devices WHERE id = %s",
                              (alarm["device_id"],)).fetchone()
        if online is None or online["online"]:
            return "device back online"
    return None


def _sent_last_hour(conn: psycopg.Connection, user_id: int, now: dt.datetime) -> int:
    """Alarm e-mails queued for the user in the last hour (invitations, reset links and
    reports share the outbox but not this limit)."""
    return conn.execute(
        "SELECT count(*) AS n FROM email_outbox o WHERE o.user_id = %s AND o.created_at > %s "
        "AND EXISTS (SELECT 1 FROM notification_items i WHERE i.outbox_id = o.id)",
        (user_id, now - dt.timedelta(hours=1))).fetchone()["n"]


def _enqueue(conn: psycopg.Connection, user: dict, email: notification_texts.Email,
             item_ids: list[int], now: dt.datetime) -> None:
    outbox_id = outbox.enqueue(conn, user_id=user["id"], recipient=user["email"],
                               subject=email.subject, text=email.text, html=email.html, now=now)
    conn.execute("UPDATE notification_items SET status = 'queued', outbox_id = %s, "
                 "done_at = %s WHERE id = ANY(%s)", (outbox_id, now, item_ids))


def _dispatch_user(conn: psycopg.Connection, settings: Settings, user_id: int,
                   items: list[dict], now: dt.datetime) -> int:
    """Write one user's due items to the outbox within their budget; return e-mails written."""
    admin = system_scope("notifications")
    scope = users.build_scope(conn, admin, user_id)
    if scope is None:
        _drop(conn, [i["id"] for i in items], "recipient inactive")
        return 0
    user = users.get_user(conn, admin, user_id)
    ready: list[tuple[dict, dict]] = []
    for item in items:
        try:
            alarm = alarms.get_alarm(conn, scope, item["alarm_id"])
        except AccessDenied:
            _drop(conn, [item["id"]], "recipient may not see the site")
            continue
        reason = _still_relevant(conn, item, alarm)
        if reason:
            _drop(conn, [item["id"]], reason)
        else:
            ready.append((item, alarm))
    budget = settings.notify_max_per_hour - _sent_last_hour(conn, user_id, now)
    if not ready or budget <= 0:
        return 0  # over the hourly limit: the items wait and become a summary
    language, base = user["language"], settings.base_url
    if len(ready) == 1 or len(ready) < budget:
        for item, alarm in ready:
            email = notification_texts.single(alarm, item["kind"], language=language,
                                              base_url=base)
            _enqueue(conn, user, email, [item["id"]], now)
        return len(ready)
    ready.sort(key=lambda pair: pair[0]["event_at"], reverse=True)
    email = notification_texts.summary([(alarm, item["kind"]) for item, alarm in ready],
                                       language=language, base_url=base)
    _enqueue(conn, user, email, [item["id"] for item, _ in ready], now)
    return 1


def dispatch(conn: psycopg.Connection, settings: Settings, now: dt.datetime) -> int:
    """Write the due notification items to the outbox, user by user; return e-mails written."""
    due = conn.execute("SELECT * FROM notification_items WHERE status = 'pending' "
                       "AND due_at <= %s ORDER BY user_id, id", (now,)).fetchall()
    by_user: dict[int, list[dict]] = defaultdict(list)
    for item in due:
        by_user[item["user_id"]].append(item)
    written = 0
    for user_id, items in by_user.items():
        try:
            with conn.transaction():
                written += _dispatch_user(conn, settings, user_id, items, now)
        except psycopg.OperationalError:
            raise
        except Exception:  # one recipient's problem must not hold up everyone's e-mails
            log.exception("notifications for user %s failed; retried next run", user_id)
    return written


def run(conn: psycopg.Connection, settings: Settings,
        now: dt.datetime | None = None) -> dict[str, int]:
    """Fan out new alarm events, queue reminders and write due e-mails to the outbox."""
    now = now or dt.datetime.now(dt.UTC)
    events = 0
    while True:
        handled = fan_out(conn, settings)
        events += handled
        if handled < FAN_OUT_BATCH:
            break
    reminders = queue_reminders(conn, now)
    return {"events": events, "reminders": reminders, "emails": dispatch(conn, settings, now)}
