"""Store operating schedules: immutable revisions per site and their delivery per device."""

from __future__ import annotations

import datetime as dt

import psycopg

ACK_STATUSES = ("applied", "rejected")
_REASON_MAX = 500


class UnknownRevision(ValueError):
    """A device acknowledged a revision that its site does not have."""


def record_ack(conn: psycopg.Connection, *, device_id: int, revision: int, status: str,
               reason: str | None = None, at: dt.datetime | None = None) -> bool:
    """Record a device's answer to a schedule revision; False when it is an older duplicate.

    Called by the collector for ``{prefix}/{serial}/schedule/ack`` messages, so the
    device's own identity is the scope. Raises UnknownRevision when the device's site
    has no such revision and ValueError for a status other than applied/rejected.
    """
    if status not in ACK_STATUSES:
        raise ValueError(f"ack status must be applied or rejected, not {status!r}")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        raise ValueError("ack revision must be a whole number of at least 1")
    at = at or dt.datetime.now(dt.UTC)
    reason = reason[:_REASON_MAX] if reason else None
    params = {"device_id": device_id, "revision": revision, "status": status,
              "reason": reason, "at": at}
    with conn.transaction():
        row = conn.execute(
            """INSERT INTO schedule_deliveries AS d (revision_id, device_id, status, reason,
                                                     acked_at)
               SELECT r.id, dev.id, %(status)s, %(reason)s, %(at)s
               FROM devices dev
               JOIN schedule_revisions r ON r.site_id = dev.site_id
                                        AND r.revision = %(revision)s
               WHERE dev.id = %(device_id)s
               ON CONFLICT (revision_id, device_id) DO UPDATE
                   SET status = EXCLUDED.status, reason = EXCLUDED.reason,
                       acked_at = EXCLUDED.acked_at
                   WHERE d.acked_at IS NULL OR d.acked_at <= EXCLUDED.acked_at
               RETURNING d.revision_id""",
            params,
        ).fetchone()
        if row is not None:
            return True
        known = conn.execute(
            """SELECT 1 FROM devices dev JOIN schedule_revisions r ON r.site_id = dev.site_id
               WHERE dev.id = %(device_id)s AND r.revision = %(revision)s""",
            params,
        ).fetchone()
    if known is None:
        raise UnknownRevision(f"device {device_id} has no schedule revision {revision}")
    return False
