"""Mark devices offline after ``KILOWATCH_OFFLINE_AFTER`` seconds of silence.

Unless the platform itself ingests nothing: then it is one platform incident for
the staff (see ``kilowatch.alarms.platform``), not a COMM_LOST per device.
"""

from __future__ import annotations

import datetime as dt
import logging

import psycopg
import redis

from kilowatch.alarms import platform
from kilowatch.jobs import Job
from kilowatch.redis_client import get_redis
from kilowatch.settings import Settings
from kilowatch.telemetry import ingest, live

log = logging.getLogger(__name__)


def run(conn: psycopg.Connection, settings: Settings) -> dict:
    """Set silent devices offline, log it, raise COMM_LOST and update their live hash."""
    now = dt.datetime.now(dt.UTC)
    state = platform.check_ingest(conn, settings, now=now)
    if state.hold:
        log.info("no device marked offline: %s", state.reason)
        return {"offline": 0, "held": state.reason}
    gone = ingest.mark_silent_devices_offline(conn, silent_s=settings.offline_after, now=now)
    client = get_redis(settings)
    for device_id in gone:
        log.warning("device %s offline: silent for %d s", device_id, settings.offline_after)
        try:
            live.set_online(client, device_id, False, settings=settings)
        except redis.RedisError as error:
            log.warning("could not mark device %s offline in Redis: %s", device_id, error)
    return {"offline": len(gone)}


JOBS = [Job("offline", 15, run)]
