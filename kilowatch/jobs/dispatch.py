"""Worker job: every 15 minutes, forecast and plan each site that runs the ``optimized`` mode.

A site that cannot be planned (no tariff, no data, an infeasible or timed-out
problem, or an unexpected error) gets a ``failed`` row saying why and a
``DISPATCH_FAILED`` warning alarm on its storage devices, which run their last
plan until it expires and then the weekly schedule; the next plan clears the
alarm. One site's failure never stops the others or the worker.

A new plan of a site whose schedule is in the ``optimized`` mode at some time of the
plan is sent to its storage devices (:mod:`kilowatch.dispatch.delivery`); a broker
that cannot be reached is logged and the next plan tries again.
"""

from __future__ import annotations

import datetime as dt
import logging

import psycopg

from kilowatch.access import AccessScope, system_scope
from kilowatch.alarms import events as alarms
from kilowatch.dispatch import delivery as plan_delivery
from kilowatch.dispatch import optimizer
from kilowatch.dispatch import store as dispatch_store
from kilowatch.fleet import STORAGE_MODELS
from kilowatch.jobs import Job
from kilowatch.schedules import store as schedule_store
from kilowatch.settings import Settings

log = logging.getLogger(__name__)

FAILED_ALARM = "DISPATCH_FAILED"


def _storage_devices(conn: psycopg.Connection, site_id: int) -> list[int]:
    rows = conn.execute("SELECT id FROM devices WHERE site_id = %s AND model = ANY(%s)",
                        (site_id, list(STORAGE_MODELS))).fetchall()
    return [row["id"] for row in rows]


def plan_sites(conn: psycopg.Connection, settings: Settings,
               now: dt.datetime | None = None) -> dict[str, int]:
    """Plan every site whose schedule has an ``optimized`` time and send the plans.

    Counts plans, failures and plans sent. Once the broker cannot be reached, the
    run stops sending (each try would wait for it) and only plans.
    """
    scope = system_scope("worker")
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    start = dispatch_store.quarter(now)
    counts = {"planned": 0, "failed": 0, "sent": 0}
    broker_up = True
    for site_id in dispatch_store.sites_to_plan(conn):
        try:
            made = dispatch_store.plan_site(conn, scope, site_id, now,
                                            wear_cost_per_kwh=settings.dispatch_wear_cost)
        except optimizer.DispatchError as error:
            _failed(conn, site_id, start, str(error))
            counts["failed"] += 1
            continue
        except Exception as error:
            log.exception("dispatch plan of site %s failed", site_id)
            _failed(conn, site_id, start, f"internal error ({type(error).__name__})")
            counts["failed"] += 1
            continue
        plan_id = dispatch_store.store_plan(conn, site_id, start, made)
        if broker_up:
            sent = _send(conn, scope, settings, site_id, plan_id,
                         [step.start for step in made.steps])
            broker_up = sent is not False
            counts["sent"] += bool(sent)
        for device_id in _storage_devices(conn, site_id):
            alarms.clear_alarm(conn, device_id=device_id, code=FAILED_ALARM, at=now)
        counts["planned"] += 1
    return counts


def _send(conn: psycopg.Connection, scope: AccessScope, settings: Settings, site_id: int,
          plan_id: int, starts: list[dt.datetime]) -> bool | None:
    """Send a plan if the schedule is optimized during it.

    Return True when sent, False when the broker is unreachable, and None otherwise
    (nothing to send, or this site's message alone failed).
    """
    try:
        schedule = schedule_store.latest_revision(conn, scope, site_id)
        if not plan_delivery.optimized_during(schedule and schedule["body"], starts):
            return None
        result = plan_delivery.publish_plan(conn, scope, plan_id, settings=settings)
    except (psycopg.OperationalError, psycopg.InterfaceError):
        raise
    except Exception:
        log.exception("dispatch plan of site %s not sent", site_id)
        return None
    if result.ok:
        return True
    log.warning("dispatch plan revision %s of site %s not published to %s: %s",
                result.revision, site_id, ", ".join(result.failed), result.error)
    return False if not result.published else None


def _failed(conn: psycopg.Connection, site_id: int, start: dt.datetime, reason: str) -> None:
    log.warning("no dispatch plan for site %s: %s", site_id, reason)
    dispatch_store.store_plan(conn, site_id, start, None, reason)
    for device_id in _storage_devices(conn, site_id):
        alarms.raise_alarm(conn, device_id=device_id, code=FAILED_ALARM, severity="warning",
                           source="platform", at=start,
                           message=f"no dispatch plan: {reason}; the devices run their last "
                                   "plan until it expires, then the weekly schedule")


JOBS = [Job("dispatch.plan", 900, plan_sites)]
