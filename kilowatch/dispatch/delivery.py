"""Send a site's dispatch plan to its storage devices, and keep what each device answered.

A plan goes to every storage device of a site whose schedule is in the ``optimized``
mode at some time of the plan (:func:`optimized_during`), retained with QoS 1 on
``{prefix}/{serial}/plan``, each device with its share of the power
(:func:`kilowatch.dispatch.message.device_message`). Its revision is the plan's
``revision``, from a sequence (a plan made again in the same step gets a new one).
One row per (revision, device) in ``dispatch_plan_deliveries`` says whether the
broker took it and what the device answered on ``…/plan/ack`` (the collector calls
:func:`record_ack`). A plan the broker missed is not sent again: the next plan,
15 minutes later, replaces it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import psycopg
from psycopg import sql

from kilowatch.access import AccessDenied, AccessScope, site_filter
from kilowatch.dispatch import message
from kilowatch.fleet import STORAGE_MODELS
from kilowatch.schedules import store as schedule_store
from kilowatch.schedules.delivery import PublishResult, publish_retained
from kilowatch.schedules.program import mode_at
from kilowatch.settings import Settings, get_settings

ACK_STATUSES = ("applied", "rejected")
_REASON_MAX = 500


class UnknownPlan(ValueError):
    """A device acknowledged a plan revision that was never sent to it."""


def plan_topic(serial: str, settings: Settings | None = None) -> str:
    """Return the topic a device reads its dispatch plan from."""
    return f"{(settings or get_settings()).mqtt_prefix}/{serial}/plan"


def optimized_during(schedule: dict | None, starts: Sequence[dt.datetime]) -> bool:
    """Whether a schedule puts the ``optimized`` mode in force at one of these step starts."""
    if not schedule:
        return False
    return any(mode_at(schedule, start).mode == "optimized" for start in starts)


def publish_plan(conn: psycopg.Connection, scope: AccessScope, plan_id: int, *,
                 settings: Settings | None = None, timeout_s: float = 10.0) -> PublishResult:
    """Send a stored plan to its site's storage devices and note which the broker confirmed.

    Call it on an autocommit connection (as the worker's): the delivery rows must be
    visible before a device's ack reaches the collector.
    """
    settings = settings or get_settings()
    row = conn.execute(
        sql.SQL("""SELECT p.id, p.revision, p.site_id, p.made_at, p.plan FROM dispatch_plans p
                   JOIN sites s ON s.id = p.site_id
                   WHERE p.id = %s AND p.status = 'planned' AND {}""").format(site_filter(scope)),
        (plan_id,)).fetchone()
    if row is None:
        raise AccessDenied("no such plan")
    devices = conn.execute(
        """SELECT id, serial, model, rated_power_kw FROM devices
           WHERE site_id = %s AND model = ANY(%s) ORDER BY serial""",
        (row["site_id"], list(STORAGE_MODELS))).fetchall()
    site_kw = sum(schedule_store.rated_power(d) for d in devices)
    conn.execute(
        """INSERT INTO dispatch_plan_deliveries (revision, plan_id, device_id)
           SELECT %s, %s, unnest(%s::int[]) ON CONFLICT DO NOTHING""",
        (row["revision"], plan_id, [d["id"] for d in devices]))
    messages = [(plan_topic(d["serial"], settings),
                 message.device_json(row["revision"], row["made_at"], row["plan"],
                                     device_kw=schedule_store.rated_power(d), site_kw=site_kw))
                for d in devices]
    confirmed, error = publish_retained(messages, settings=settings, timeout_s=timeout_s)
    done = [d for i, d in enumerate(devices) if i in confirmed]
    missed = [d for i, d in enumerate(devices) if i not in confirmed]
    now = dt.datetime.now(dt.UTC)
    conn.execute(
        """UPDATE dispatch_plan_deliveries SET published_at = %s, publish_error = NULL
           WHERE revision = %s AND device_id = ANY(%s)""",
        (now, row["revision"], [d["id"] for d in done]))
    conn.execute(
        """UPDATE dispatch_plan_deliveries SET publish_error = %s
           WHERE revision = %s AND device_id = ANY(%s)""",
        (error or "not confirmed", row["revision"], [d["id"] for d in missed]))
    return PublishResult(row["site_id"], row["revision"], tuple(d["serial"] for d in done),
                         tuple(d["serial"] for d in missed), error if missed else None)


def record_ack(conn: psycopg.Connection, *, device_id: int, revision: int, status: str,
               reason: str | None = None, at: dt.datetime | None = None) -> bool:
    """Record a device's answer to a plan revision; False when it is an older duplicate.

    Called by the collector for ``{prefix}/{serial}/plan/ack``, so the device's own
    identity is the scope. Raises UnknownPlan when the plan was never sent to the
    device and ValueError for a status other than applied/rejected.
    """
    if status not in ACK_STATUSES:
        raise ValueError(f"ack status must be applied or rejected, not {status!r}")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        raise ValueError("ack revision must be a whole number of at least 1")
    params = {"device": device_id, "revision": revision, "status": status,
              "reason": reason[:_REASON_MAX] if reason else None,
              "at": at or dt.datetime.now(dt.UTC)}
    updated = conn.execute(
        """UPDATE dispatch_plan_deliveries SET status = %(status)s, reason = %(reason)s,
                  acked_at = %(at)s
           WHERE revision = %(revision)s AND device_id = %(device)s
             AND (acked_at IS NULL OR acked_at <= %(at)s)
           RETURNING revision""", params).fetchone()
    if updated is not None:
        return True
    known = conn.execute("""SELECT 1 FROM dispatch_plan_deliveries
                            WHERE revision = %(revision)s AND device_id = %(device)s""",
                         params).fetchone()
    if known is None:
        raise UnknownPlan(f"device {device_id} was never sent plan revision {revision}")
    return False


def delivery_state(conn: psycopg.Connection, scope: AccessScope, site_id: int) -> list[dict]:
    """Per storage device of a visible site: the newest plan sent to it and how it fared.

    Each row has device_id, serial, revision and plan_id (None when no plan was sent),
    made_at, status (pending, applied or rejected), published_at, publish_error,
    acked_at and reason.
    """
    query = sql.SQL(
        """SELECT dev.id AS device_id, dev.serial, d.revision, d.plan_id, p.made_at,
                  d.status, d.published_at, d.publish_error, d.acked_at, d.reason
           FROM devices dev JOIN sites s ON s.id = dev.site_id
           LEFT JOIN LATERAL (
               SELECT * FROM dispatch_plan_deliveries x WHERE x.device_id = dev.id
               ORDER BY x.revision DESC LIMIT 1) d ON TRUE
           LEFT JOIN dispatch_plans p ON p.id = d.plan_id
           WHERE dev.site_id = %s AND dev.model = ANY(%s) AND {}
           ORDER BY dev.serial""").format(site_filter(scope))
    return conn.execute(query, (site_id, list(STORAGE_MODELS))).fetchall()
