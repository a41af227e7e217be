"""Alarm e-mails: turn alarm events into notifications, then send the outbox over SMTP.

Two jobs so that a slow or absent SMTP server never holds up the fan-out:
``notifications`` writes e-mails to the durable outbox, ``outbox`` sends them
with retries and backoff (see :mod:`kilowatch.alarms.outbox`).
"""

from __future__ import annotations

import psycopg

from kilowatch.alarms import notifications, outbox
from kilowatch.jobs import Job
from kilowatch.settings import Settings


def notify(conn: psycopg.Connection, settings: Settings) -> dict:
    """Fan out new alarm events, queue reminders, write due e-mails to the outbox."""
    return notifications.run(conn, settings)


def send(conn: psycopg.Connection, settings: Settings) -> dict:
    """Send the due e-mails of the outbox."""
    return outbox.send_due(conn, settings)


JOBS = [Job("notifications", 10, notify), Job("outbox", 10, send)]
