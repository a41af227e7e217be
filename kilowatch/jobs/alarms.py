"""Evaluate the companies' alert rules on the telemetry stored since the last run."""

from __future__ import annotations

import psycopg

from kilowatch.alarms import rules as alert_rules
from kilowatch.jobs import Job
from kilowatch.settings import Settings


def run(conn: psycopg.Connection, settings: Settings) -> dict:
    """Feed each enabled rule the samples newer than its per-device watermark."""
    return alert_rules.evaluate_rules(conn)


JOBS = [Job("alert_rules", 10, run)]
