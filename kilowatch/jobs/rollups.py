"""Maintain the per-minute and per-hour rollups: new buckets, then late data newest first."""

from __future__ import annotations

import datetime as dt

import psycopg

from kilowatch.jobs import Job
from kilowatch.settings import Settings
from kilowatch.telemetry import rollups
from kilowatch.telemetry.storage import ROLLUPS


def run(conn: psycopg.Connection, settings: Settings) -> list[dict]:
    """Compute closed buckets up to each rollup's watermark, then the late ranges."""
    now = dt.datetime.now(dt.UTC)
    done = [rollups.catch_up(conn, rollup, now) for rollup in ROLLUPS]
    return [*done, rollups.catch_up_late(conn)]


JOBS = [Job("rollups", 30, run)]
