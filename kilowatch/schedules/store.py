"""Store operating schedules: immutable revisions per site and their delivery per device.

Every function a person reaches takes an :class:`AccessScope` and filters in SQL;
``record_ack`` is the device's path (the collector calls it for the device's own
acks). Saving does not publish: :mod:`kilowatch.schedules.delivery` does that.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from kilowatch import audit
from kilowatch.access import AccessDenied, AccessScope, site_filter
from kilowatch.alarms import events as alarms
from kilowatch.errors import UserFacingError
from kilowatch.fleet import STORAGE_MODELS
from kilowatch.schedules import model as schedules

ACK_STATUSES = ("applied", "rejected")
# Used when a storage device was registered without its rated power.
NOMINAL_POWER_KW = {"HES-L": 50.0, "HES-XL": 125.0, "HES-XXL": 250.0}
_REASON_MAX = 500
PENDING_ALARM = "SCHEDULE_PENDING"
REJECTED_ALARM = "SCHEDULE_REJECTED"


class ScheduleNotFound(UserFacingError, LookupError):
    """The site has no such schedule revision (or none yet)."""


class UnknownRevision(ValueError):
    """A device acknowledged a revision that its site does not have."""


def _visible_site(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                  *, lock: bool = False) -> dict:
    query = sql.SQL("SELECT s.* FROM sites s WHERE s.id = %s AND {}{}").format(
        site_filter(scope), sql.SQL(" FOR UPDATE") if lock else sql.SQL(""))
    row = conn.execute(query, (site_id,)).fetchone()
    if row is None:
        raise AccessDenied("no such site")
    return row


def site_limits(conn: psycopg.Connection, scope: AccessScope, site_id: int) -> schedules.SiteLimits:
    """Return what a visible site allows: its time zone, storage rated power, optimiser."""
    site = _visible_site(conn, scope, site_id)
    return _limits(conn, site)


def rated_power(device: dict) -> float:
    """Return a storage device row's rated power, its model's nominal one when not on file."""
    return device["rated_power_kw"] or NOMINAL_POWER_KW[device["model"]]


def share_labels(rows: list[dict]) -> dict[str, str]:
    """Label each storage device row of a site with its share of the site's power.

    Empty for a site with one storage device, which runs the schedule as it is.
    """
    if len(rows) < 2:
        return {}
    total = sum(rated_power(r) for r in rows)
    return {r["serial"]: f"{rated_power(r):g} kW, {rated_power(r) / total * 100:.0f} % of the "
                         f"site's power" for r in rows}


def _limits(conn: psycopg.Connection, site: dict) -> schedules.SiteLimits:
    rows = conn.execute("SELECT model, rated_power_kw FROM devices WHERE site_id = %s "
                        "AND model = ANY(%s)", (site["id"], list(STORAGE_MODELS))).fetchall()
    rated = sum(rated_power(r) for r in rows)
    return schedules.SiteLimits(timezone=site["timezone"], rated_power_kw=rated if rows else None,
                                has_optimizer=site["has_optimizer"])


def save_revision(conn: psycopg.Connection, scope: AccessScope, site_id: int, body: Any, *,
                  comment: str = "", restored_from: int | None = None,
                  now: dt.datetime | None = None) -> dict:
    """Validate a schedule and store it as the site's next revision, pending on every device.

    Raises AccessDenied unless the caller may edit the site, ScheduleInvalid when a
    rule is broken. Returns the new revision row.
    """
    comment = (comment or "").strip()
    with conn.transaction():
        site = _visible_site(conn, scope, site_id, lock=True)  # serialises revision numbers
        if not scope.may_edit_site(site["company_id"], site["id"]):
            raise AccessDenied("you may read this site's schedule but not change it")
        checked = schedules.validate(body, _limits(conn, site), now=now)
        row = conn.execute(
            """INSERT INTO schedule_revisions (site_id, revision, body, comment, author,
                                               author_user_id, restored_from)
               SELECT %(site)s, coalesce(max(revision), 0) + 1, %(body)s, %(comment)s,
                      %(author)s, %(user)s, %(restored)s
               FROM schedule_revisions WHERE site_id = %(site)s
               RETURNING *""",
            {"site": site_id, "body": Jsonb(checked), "comment": comment,
             "author": scope.actor, "user": scope.user_id, "restored": restored_from},
        ).fetchone()
        _add_deliveries(conn, row["id"], site_id)
        audit.record(conn, scope, "schedule.save", target=f"site:{site_id}",
                     company_id=site["company_id"],
                     after={"revision": row["revision"], "comment": comment,
                            "restored_from": restored_from, "schedule": checked})
    return row


def _add_deliveries(conn: psycopg.Connection, revision_id: int, site_id: int) -> None:
    conn.execute(
        """INSERT INTO schedule_deliveries (revision_id, device_id)
           SELECT %s, id FROM devices WHERE site_id = %s AND model = ANY(%s)
           ON CONFLICT DO NOTHING""",
        (revision_id, site_id, list(STORAGE_MODELS)),
    )


def restore_revision(conn: psycopg.Connection, scope: AccessScope, site_id: int, revision: int,
                     *, comment: str | None = None, now: dt.datetime | None = None) -> dict:
    """Save an older revision again as the site's newest one; past exceptions are dropped."""
    old = get_revision(conn, scope, site_id, revision)
    today = schedules.local_today(old["body"]["timezone"], now).isoformat()
    body = {**old["body"],
            "exceptions": [e for e in old["body"].get("exceptions", []) if e["date"] >= today]}
    return save_revision(conn, scope, site_id, body, restored_from=revision, now=now,
                         comment=comment or f"restore revision {revision}")


def get_revision(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                 revision: int | None = None) -> dict:
    """Return one revision of a visible site (the latest when ``revision`` is None)."""
    query = sql.SQL(
        """SELECT r.* FROM schedule_revisions r JOIN sites s ON s.id = r.site_id
           WHERE r.site_id = %(site)s AND (%(rev)s::int IS NULL OR r.revision = %(rev)s) AND {}
           ORDER BY r.revision DESC LIMIT 1"""
    ).format(site_filter(scope))
    row = conn.execute(query, {"site": site_id, "rev": revision}).fetchone()
    if row is None:
        _visible_site(conn, scope, site_id)  # AccessDenied first, so nothing leaks
        what = f"revision {revision}" if revision else "schedule yet"
        raise ScheduleNotFound(f"site {site_id} has no {what}")
    return row


def latest_revision(conn: psycopg.Connection, scope: AccessScope, site_id: int) -> dict | None:
    """Return a visible site's newest revision, or None when it has no schedule yet."""
    try:
        return get_revision(conn, scope, site_id)
    except ScheduleNotFound:
        return None


def history(conn: psycopg.Connection, scope: AccessScope, site_id: int) -> list[dict]:
    """Return a visible site's revisions, newest first, with their delivery counts."""
    _visible_site(conn, scope, site_id)
    query = sql.SQL(
        """SELECT r.id, r.revision, r.comment, r.author, r.author_user_id, r.restored_from,
                  r.created_at,
                  count(d.device_id) FILTER (WHERE d.status = 'applied') AS applied,
                  count(d.device_id) FILTER (WHERE d.status = 'rejected') AS rejected,
                  count(d.device_id) FILTER (WHERE d.status = 'pending') AS pending,
                  count(d.device_id) FILTER (WHERE d.published_at IS NULL) AS unpublished
           FROM schedule_revisions r JOIN sites s ON s.id = r.site_id
           LEFT JOIN schedule_deliveries d ON d.revision_id = r.id
           WHERE r.site_id = %s AND {}
           GROUP BY r.id ORDER BY r.revision DESC"""
    ).format(site_filter(scope))
    return conn.execute(query, (site_id,)).fetchall()


def delivery_state(conn: psycopg.Connection, scope: AccessScope, site_id: int) -> list[dict]:
    """Return, per storage device of a visible site, how the latest revision fared.

    Each row has serial, model, rated_power_kw (as registered, may be None), revision
    (latest), status, published_at,
    publish_error, acked_at, reason, pending_since and applied_revision (the newest
    revision the device confirmed, which may be older than the latest).
    """
    query = sql.SQL(
        """WITH latest AS (
               SELECT id, revision, created_at FROM schedule_revisions
               WHERE site_id = %(site)s ORDER BY revision DESC LIMIT 1)
           SELECT dev.id AS device_id, dev.serial, dev.model, dev.rated_power_kw,
                  latest.revision,
                  coalesce(d.status, CASE WHEN latest.id IS NULL THEN NULL ELSE 'pending' END)
                      AS status,
                  d.published_at, d.publish_error, d.acked_at, d.reason,
                  CASE WHEN coalesce(d.status, 'pending') = 'pending'
                       THEN coalesce(d.created_at, latest.created_at) END AS pending_since,
                  (SELECT max(r2.revision) FROM schedule_deliveries d2
                   JOIN schedule_revisions r2 ON r2.id = d2.revision_id
                   WHERE d2.device_id = dev.id AND d2.status = 'applied') AS applied_revision
           FROM devices dev JOIN sites s ON s.id = dev.site_id
           LEFT JOIN latest ON TRUE
           LEFT JOIN schedule_deliveries d ON d.revision_id = latest.id
                                          AND d.device_id = dev.id
           WHERE dev.site_id = %(site)s AND dev.model = ANY(%(models)s) AND {}
           ORDER BY dev.serial"""
    ).format(site_filter(scope))
    rows = conn.execute(query, {"site": site_id, "models": list(STORAGE_MODELS)}).fetchall()
    if not rows:
        _visible_site(conn, scope, site_id)
    return rows


def describe_delivery(rows: list[dict], timezone: str) -> str:
    """Sum up delivery rows in one line: ``applied revision 4`` or ``pending since …``."""
    if not rows:
        return "no storage device on this site"
    if rows[0]["revision"] is None:
        return "no schedule yet"
    revision = rows[0]["revision"]
    rejected = [r for r in rows if r["status"] == "rejected"]
    if rejected:
        reasons = "; ".join(f"{r['serial']}: {r['reason'] or 'no reason given'}"
                            for r in rejected)
        return f"revision {revision} rejected ({reasons})"
    pending = [r for r in rows if r["status"] == "pending"]
    if pending:
        since = min(r["pending_since"] for r in pending).astimezone(schedules.zone(timezone))
        unpublished = " (not yet published)" if any(r["published_at"] is None
                                                     for r in pending) else ""
        return f"revision {revision} pending since {since:%Y-%m-%d %H:%M %Z}{unpublished}"
    return f"applied revision {revision}"


def add_missing_deliveries(conn: psycopg.Connection, scope: AccessScope, revision: dict) -> None:
    """Add pending delivery rows for storage devices registered after a revision was saved."""
    _visible_site(conn, scope, revision["site_id"])
    _add_deliveries(conn, revision["id"], revision["site_id"])


def deliveries(conn: psycopg.Connection, scope: AccessScope, revision_id: int) -> list[dict]:
    """Return the delivery rows of one revision of a visible site, with device serials."""
    query = sql.SQL(
        """SELECT d.*, dev.serial, dev.model, dev.rated_power_kw, r.revision, r.site_id
           FROM schedule_deliveries d
           JOIN schedule_revisions r ON r.id = d.revision_id
           JOIN devices dev ON dev.id = d.device_id
           JOIN sites s ON s.id = r.site_id
           WHERE d.revision_id = %s AND {} ORDER BY dev.serial"""
    ).format(site_filter(scope))
    return conn.execute(query, (revision_id,)).fetchall()


def mark_published(conn: psycopg.Connection, scope: AccessScope, revision_id: int,
                   device_ids: list[int], *, at: dt.datetime) -> None:
    """Note that the broker confirmed a revision's message for these devices."""
    _mark(conn, scope, revision_id, device_ids,
          sql.SQL("published_at = coalesce(d.published_at, %(at)s), publish_error = NULL"), at,
          None)


def mark_publish_failed(conn: psycopg.Connection, scope: AccessScope, revision_id: int,
                        device_ids: list[int], *, error: str, at: dt.datetime) -> None:
    """Note that a revision could not be published to these devices, and why."""
    _mark(conn, scope, revision_id, device_ids, sql.SQL("publish_error = %(error)s"), at, error)


def _mark(conn: psycopg.Connection, scope: AccessScope, revision_id: int, device_ids: list[int],
          assignment: sql.Composable, at: dt.datetime, error: str | None) -> None:
    if not device_ids:
        return
    query = sql.SQL(
        """UPDATE schedule_deliveries d SET {}, publish_attempts = d.publish_attempts + 1,
                  last_attempt_at = %(at)s
           FROM schedule_revisions r JOIN sites s ON s.id = r.site_id
           WHERE r.id = d.revision_id AND d.revision_id = %(revision)s
             AND d.device_id = ANY(%(devices)s) AND {}"""
    ).format(assignment, site_filter(scope))
    conn.execute(query, {"at": at, "error": error, "revision": revision_id,
                         "devices": list(device_ids)})


def sites_to_republish(conn: psycopg.Connection, scope: AccessScope) -> list[int]:
    """Return visible sites whose latest revision some storage device has not received."""
    query = sql.SQL(
        """WITH latest AS (
               SELECT DISTINCT ON (site_id) id, site_id FROM schedule_revisions
               ORDER BY site_id, revision DESC)
           SELECT latest.site_id FROM latest JOIN sites s ON s.id = latest.site_id
           WHERE {} AND EXISTS (
               SELECT 1 FROM devices dev
               LEFT JOIN schedule_deliveries d ON d.revision_id = latest.id
                                              AND d.device_id = dev.id
               WHERE dev.site_id = latest.site_id AND dev.model = ANY(%s)
                 AND (d.device_id IS NULL OR d.published_at IS NULL))
           ORDER BY latest.site_id"""
    ).format(site_filter(scope))
    return [r["site_id"] for r in conn.execute(query, (list(STORAGE_MODELS),)).fetchall()]


def overdue_deliveries(conn: psycopg.Connection, scope: AccessScope,
                       older_than: dt.datetime) -> list[dict]:
    """Return latest-revision deliveries pending since before ``older_than``, not yet alarmed."""
    query = sql.SQL(
        """WITH latest AS (
               SELECT DISTINCT ON (site_id) id, site_id, revision FROM schedule_revisions
               ORDER BY site_id, revision DESC)
           SELECT d.device_id, dev.serial, latest.site_id, latest.revision, d.created_at,
                  d.published_at, d.publish_error
           FROM latest JOIN sites s ON s.id = latest.site_id
           JOIN schedule_deliveries d ON d.revision_id = latest.id
           JOIN devices dev ON dev.id = d.device_id
           WHERE {} AND d.status = 'pending' AND d.created_at < %(older)s
             AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.device_id = d.device_id
                             AND a.code = %(code)s AND a.cleared_at IS NULL)
           ORDER BY latest.site_id, dev.serial"""
    ).format(site_filter(scope))
    return conn.execute(query, {"older": older_than, "code": PENDING_ALARM}).fetchall()


def settled_pending_alarms(conn: psycopg.Connection, scope: AccessScope) -> list[int]:
    """Return devices with an active pending-schedule alarm whose latest revision is answered."""
    query = sql.SQL(
        """SELECT a.device_id FROM alarms a JOIN sites s ON s.id = a.site_id
           WHERE a.code = %s AND a.cleared_at IS NULL AND {} AND NOT EXISTS (
               SELECT 1 FROM schedule_deliveries d
               JOIN schedule_revisions r ON r.id = d.revision_id
               WHERE d.device_id = a.device_id AND d.status = 'pending'
                 AND r.revision = (SELECT max(revision) FROM schedule_revisions
                                   WHERE site_id = a.site_id))"""
    ).format(site_filter(scope))
    return [r["device_id"] for r in conn.execute(query, (PENDING_ALARM,)).fetchall()]


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
            _update_alarms(conn, params)
            return True
        known = conn.execute(
            """SELECT 1 FROM devices dev JOIN schedule_revisions r ON r.site_id = dev.site_id
               WHERE dev.id = %(device_id)s AND r.revision = %(revision)s""",
            params,
        ).fetchone()
    if known is None:
        raise UnknownRevision(f"device {device_id} has no schedule revision {revision}")
    return False


def _update_alarms(conn: psycopg.Connection, ack: dict) -> None:
    """Settle the device's schedule alarms when it answered its site's latest revision."""
    latest = conn.execute(
        """SELECT max(r.revision) AS revision FROM devices dev
           JOIN schedule_revisions r ON r.site_id = dev.site_id WHERE dev.id = %s""",
        (ack["device_id"],),
    ).fetchone()["revision"]
    if ack["revision"] != latest:
        return
    device, at = ack["device_id"], ack["at"]
    alarms.clear_alarm(conn, device_id=device, code=PENDING_ALARM, at=at)
    if ack["status"] == "applied":
        alarms.clear_alarm(conn, device_id=device, code=REJECTED_ALARM, at=at)
    else:
        alarms.raise_alarm(conn, device_id=device, code=REJECTED_ALARM, severity="warning",
                           source="platform", at=at,
                           message=f"schedule revision {ack['revision']} rejected: "
                                   f"{ack['reason'] or 'no reason given'}")
