"""Maintain the per-minute and per-hour rollups from raw telemetry."""

from __future__ import annotations

import datetime as dt

import psycopg

from kilowatch.jobs import Job
from kilowatch.settings import Settings
from kilowatch.telemetry import storage as telemetry


def run(conn: psycopg.Connection, settings: Settings) -> list[dict]:
    """Compute closed buckets up to each rollup's watermark, then the marked late ones."""
    now = dt.datetime.now(dt.UTC)
    return [telemetry.catch_up(conn, rollup, now) for rollup in telemetry.ROLLUPS]


JOBS = [Job("rollups", 30, run)]
