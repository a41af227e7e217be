"""Drop old raw and per-minute telemetry, stale late-data marks and old dispatch forecasts and
plans; compress when allowed."""

from __future__ import annotations

import datetime as dt
import logging

import psycopg

from kilowatch.dispatch import store as dispatch_store
from kilowatch.jobs import Job
from kilowatch.settings import Settings
from kilowatch.telemetry import storage as telemetry

log = logging.getLogger(__name__)


def run(conn: psycopg.Connection, settings: Settings) -> dict:
    """Drop raw chunks past the raw retention and minute chunks past theirs; hourly stay.

    Dispatch forecasts and plans go after ``KILOWATCH_FORECAST_RETENTION_DAYS``.
    """
    done = {
        "raw_chunks_dropped": telemetry.drop_old_chunks(conn, "telemetry",
                                                        settings.raw_retention_days),
        "minute_chunks_dropped": telemetry.drop_old_chunks(conn, "telemetry_1m",
                                                           settings.minute_retention_days),
        "pending_ranges_dropped": telemetry.drop_old_pending(conn, settings.raw_retention_days),
        **dispatch_store.drop_old(conn, dt.datetime.now(dt.UTC)
                                  - dt.timedelta(days=settings.forecast_retention_days)),
    }
    if telemetry.compression_available(conn):
        done["raw_chunks_compressed"] = telemetry.compress_old_raw(
            conn, older_than=dt.timedelta(days=1))
        log.info("compressed %d raw chunks older than a day", done["raw_chunks_compressed"])
    else:
        log.info("compression unavailable: this TimescaleDB build is Apache-licensed; "
                 "raw chunks stay uncompressed")
        done["compression"] = "unavailable (apache license)"
    return done


JOBS = [Job("retention", 3600, run)]
