"""Worker jobs for schedules: publish revisions the broker missed; alarm on late acks."""

from __future__ import annotations

import datetime as dt
import logging

import psycopg

from kilowatch.access import system_scope
from kilowatch.alarms import events as alarms
from kilowatch.jobs import Job
from kilowatch.schedules import delivery as schedule_delivery
from kilowatch.schedules import store as schedule_store
from kilowatch.settings import Settings

log = logging.getLogger(__name__)


def republish(conn: psycopg.Connection, settings: Settings) -> int:
    """Publish every site's latest revision to the devices that have not received it."""
    scope = system_scope("worker")
    sent = 0
    for site_id in schedule_store.sites_to_republish(conn, scope):
        result = schedule_delivery.publish_latest(conn, scope, site_id, only_unpublished=True,
                                                  settings=settings)
        if result is not None and result.ok:
            sent += len(result.published)
            log.info("published schedule revision %s of site %s to %s", result.revision,
                     site_id, ", ".join(result.published))
        elif result is not None:
            log.warning("schedule revision %s of site %s not published to %s: %s",
                        result.revision, site_id, ", ".join(result.failed), result.error)
            break  # the broker is still away; the next run tries again
    return sent


def alarm_pending(conn: psycopg.Connection, settings: Settings,
                  now: dt.datetime | None = None) -> tuple[int, int]:
    """Raise a warning for revisions unacknowledged too long; clear it once answered."""
    scope = system_scope("worker")
    now = now or dt.datetime.now(dt.UTC)
    older = now - dt.timedelta(seconds=settings.schedule_pending_alarm_after)
    raised = 0
    for row in schedule_store.overdue_deliveries(conn, scope, older):
        where = ("not yet published: " + (row["publish_error"] or "waiting for the broker")
                 if row["published_at"] is None else "published, no answer from the device")
        alarms.raise_alarm(conn, device_id=row["device_id"], code=schedule_store.PENDING_ALARM,
                           severity="warning", source="platform", at=now,
                           message=f"schedule revision {row['revision']} pending since "
                                   f"{row['created_at']:%Y-%m-%d %H:%M %Z} ({where})")
        raised += 1
    cleared = 0
    for device_id in schedule_store.settled_pending_alarms(conn, scope):
        alarms.clear_alarm(conn, device_id=device_id, code=schedule_store.PENDING_ALARM, at=now)
        cleared += 1
    return raised, cleared


JOBS = [
    Job("schedules.republish", 60, republish),
    Job("schedules.pending_alarm", 60, alarm_pending),
]
