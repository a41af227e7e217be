"""Worker job for bills: close last month, refresh the current month, redo stale bills."""

from __future__ import annotations

import logging

import psycopg

from kilowatch.access import system_scope
from kilowatch.billing import savings
from kilowatch.jobs import Job
from kilowatch.settings import Settings

log = logging.getLogger(__name__)


def refresh_bills(conn: psycopg.Connection, settings: Settings) -> int:
    """Compute the site-months whose bills are missing, stale or out of date."""
    done = savings.refresh(conn, system_scope("worker"))
    if done:
        log.info("computed the bills of %d site-month(s)", done)
    return done


JOBS = [Job("savings", 300, refresh_bills)]
