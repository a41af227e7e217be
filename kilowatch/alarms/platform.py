"""Incidents of the platform itself: nothing ingested, told to the staff, never to tenants.

When no collector has written its heartbeat (``collector_heartbeats``) within
``KILOWATCH_OFFLINE_AFTER`` seconds, every device would look silent: the fault
is the platform's (collector, broker or database down), not the devices'. The
offline job then opens ONE ``ingest_stalled`` incident (a ``platform_incidents``
row, an ERROR log line and an e-mail to ``KILOWATCH_STAFF_EMAIL`` when set) and
marks no device offline, so no company gets ``COMM_LOST``. When heartbeats come
back the incident is closed (a log line, an e-mail), and devices are judged
again only one offline delay later, once they have had the time to be heard.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import logging

import psycopg

from kilowatch.access import AccessDenied, AccessScope
from kilowatch.alarms import outbox
from kilowatch.settings import Settings
from kilowatch.telemetry import ingest

log = logging.getLogger(__name__)

INGEST_STALLED = "ingest_stalled"


@dataclasses.dataclass(frozen=True)
class IngestState:
    """Whether devices may be judged silent now, and why not."""

    hold: bool
    reason: str = ""


def check_ingest(conn: psycopg.Connection, settings: Settings, *,
                 now: dt.datetime) -> IngestState:
    """Open or close the ``ingest_stalled`` incident; say whether to hold offline marking."""
    window = dt.timedelta(seconds=settings.offline_after)
    beat = ingest.last_heartbeat(conn)
    if beat is None or beat < now - window:
        if _anyone_online(conn):
            _open(conn, settings, now=now, beat=beat)
            return IngestState(True, "no collector heartbeat")
        return IngestState(False)
    closed = _close(conn, settings, now=now)
    ended = conn.execute("SELECT max(ended_at) AS at FROM platform_incidents WHERE kind = %s",
                         (INGEST_STALLED,)).fetchone()["at"]
    if closed or (ended is not None and ended > now - window):
        return IngestState(True, "ingest resumed less than one offline delay ago")
    return IngestState(False)


def open_incidents(conn: psycopg.Connection) -> list[dict]:
    """Return the platform incidents still open (for platform processes)."""
    return conn.execute("SELECT * FROM platform_incidents WHERE ended_at IS NULL "
                        "ORDER BY started_at").fetchall()


def list_incidents(conn: psycopg.Connection, scope: AccessScope, *,
                   limit: int = 50) -> list[dict]:
    """Return the newest platform incidents, open or closed; platform staff only."""
    if not scope.platform_wide:
        raise AccessDenied("only platform staff see platform incidents")
    return conn.execute("SELECT * FROM platform_incidents ORDER BY started_at DESC LIMIT %s",
                        (limit,)).fetchall()


def _anyone_online(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM devices WHERE online) AS any"
                        ).fetchone()["any"]


def _open(conn: psycopg.Connection, settings: Settings, *, now: dt.datetime,
          beat: dt.datetime | None) -> None:
    since = f"since {beat:%Y-%m-%d %H:%M:%S %Z}" if beat else "ever"
    message = (f"No collector has ingested {since} (more than {settings.offline_after} s): "
               "the collector, the broker or the database is down. Devices are not marked "
               "offline and tenants are not alerted meanwhile.")
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO platform_incidents (kind, message, started_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (kind) WHERE ended_at IS NULL DO NOTHING RETURNING id",
            (INGEST_STALLED, message, now)).fetchone()
        if row is None:
            return  # already open: told once
        log.error("platform incident %s opened: %s", row["id"], message)
        _tell_staff(conn, settings, f"Kilowatch platform incident: nothing ingested {since}",
                    message, now=now)


def _close(conn: psycopg.Connection, settings: Settings, *, now: dt.datetime) -> bool:
    with conn.transaction():
        row = conn.execute(
            "UPDATE platform_incidents SET ended_at = %s WHERE kind = %s AND ended_at IS NULL "
            "RETURNING id, started_at", (now, INGEST_STALLED)).fetchone()
        if row is None:
            return False
        minutes = (now - row["started_at"]).total_seconds() / 60
        message = (f"Collectors ingest again; nothing was ingested for about {minutes:.0f} "
                   f"min. Devices still silent in {settings.offline_after} s are then marked "
                   "offline as usual.")
        log.warning("platform incident %s closed: %s", row["id"], message)
        _tell_staff(conn, settings, "Kilowatch platform incident over: ingesting again",
                    message, now=now)
    return True


def _tell_staff(conn: psycopg.Connection, settings: Settings, subject: str, text: str, *,
                now: dt.datetime) -> None:
    if not settings.staff_email:
        return
    page = (f"<!doctype html><html><body><h2>{html.escape(subject)}</h2>"
            f"<p>{html.escape(text)}</p></body></html>")
    outbox.enqueue(conn, user_id=None, recipient=settings.staff_email, subject=subject,
                   text=text, html=page, now=now)
