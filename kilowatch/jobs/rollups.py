"""Maintain the per-minute and per-hour rollups: new buckets, then late data newest first.

Late data is shared by two jobs, each with its own connection (so, a core of
PostgreSQL each), newest window first: ``rollups`` takes the even 6-hour windows
after the new buckets, ``rollups.late`` the odd ones.
"""

from __future__ import annotations

import datetime as dt

import psycopg

from kilowatch.jobs import Job
from kilowatch.settings import Settings
from kilowatch.telemetry import rollups
from kilowatch.telemetry.storage import ROLLUPS

PARTS = 2


def run(conn: psycopg.Connection, settings: Settings) -> list[dict]:
    """Compute closed buckets up to each rollup's watermark, then the even late windows."""
    now = dt.datetime.now(dt.UTC)
    done = [rollups.catch_up(conn, rollup, now) for rollup in ROLLUPS]
    return [*done, rollups.catch_up_late(conn, part=(0, PARTS))]


def run_late(conn: psycopg.Connection, settings: Settings) -> dict:
    """Recompute the odd late windows, newest first."""
    return rollups.catch_up_late(conn, part=(1, PARTS))


JOBS = [Job("rollups", 30, run), Job("rollups.late", 30, run_late)]
