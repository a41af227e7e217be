"""Send the durable e-mail outbox: retries with backoff, nothing lost while SMTP is down.

Every e-mail is a row of ``email_outbox`` before anyone tries to send it. The
worker's ``outbox`` job sends the due rows over one SMTP session; a row is
marked sent right after the server accepted it (delivery is at least once: a
crash between the two sends it again). When the server cannot be reached or
answers with a temporary error, the row waits ``30 s × 2^(attempts-1)`` (at
most an hour) and is tried again, for up to :data:`GIVE_UP_AFTER`; a
permanent refusal (5xx) is retried a few times, then marked failed. Sending
an alarm e-mail adds a ``notified`` event to the alarm's history. Files attached
to an e-mail (``email_attachments``, e.g. a commissioning report) are written
with it by :func:`enqueue` and sent with every try.

An e-mail that carries a secret (the token of a password link) keeps it in the
row's ``secret`` column, put in place of :data:`SECRET_MARK` in the bodies at
sending time and erased once the row is sent or given up: a kept e-mail does
not hold a working link.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
from collections.abc import Sequence

import psycopg

from kilowatch import mailer
from kilowatch.access import AccessDenied, AccessScope
from kilowatch.alarms import events as alarms
from kilowatch.settings import Settings

log = logging.getLogger(__name__)

BATCH = 200
FIRST_RETRY_S = 30
MAX_RETRY_S = 3600
GIVE_UP_AFTER = dt.timedelta(days=3)
PERMANENT_ATTEMPTS = 3
SECRET_MARK = "[[secret]]"  # noqa: S105 (a placeholder, not a password)


def enqueue(conn: psycopg.Connection, *, user_id: int | None, recipient: str, subject: str,
            text: str, html: str, secret: str | None = None,
            attachments: Sequence[mailer.Attachment] = (),
            now: dt.datetime | None = None) -> int:
    """Write one e-mail and its files to the outbox (sent by the ``outbox`` job); return its id."""
    now = now or dt.datetime.now(dt.UTC)
    outbox_id = conn.execute(
        """INSERT INTO email_outbox (user_id, recipient, subject, text_body, html_body, secret,
                                     created_at, next_attempt_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (user_id, recipient, subject, text, html, secret, now, now),
    ).fetchone()["id"]
    for name, content_type, content in attachments:
        conn.execute("INSERT INTO email_attachments (outbox_id, filename, content_type, content) "
                     "VALUES (%s, %s, %s, %s)", (outbox_id, name, content_type, content))
    return outbox_id


def list_outbox(conn: psycopg.Connection, scope: AccessScope, *, status: str = "pending",
                limit: int = 50) -> list[dict]:
    """Return the newest outbox e-mails in a state (platform staff only: any company's)."""
    if not scope.platform_wide:
        raise AccessDenied("only platform staff read the outbox")
    return conn.execute("SELECT id, created_at, recipient, subject, status, attempts, "
                        "next_attempt_at, last_error FROM email_outbox WHERE status = %s "
                        "ORDER BY id DESC LIMIT %s", (status, limit)).fetchall()


def retry_delay(attempts: int) -> dt.timedelta:
    """Return the wait before the next try after ``attempts`` failed ones."""
    return dt.timedelta(seconds=min(FIRST_RETRY_S * 2 ** max(attempts - 1, 0), MAX_RETRY_S))


def _permanent(error: Exception) -> bool:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    return isinstance(error, smtplib.SMTPResponseException) and error.smtp_code >= 500


def _failed(conn: psycopg.Connection, row: dict, error: Exception, now: dt.datetime, *,
            permanent: bool = False, give_up: bool = False) -> None:
    attempts = row["attempts"] + 1
    give_up = give_up or (permanent and attempts >= PERMANENT_ATTEMPTS) or (
        now - row["created_at"] >= GIVE_UP_AFTER)
    conn.execute(
        "UPDATE email_outbox SET attempts = %s, last_error = %s, next_attempt_at = %s, "
        "status = %s, secret = CASE WHEN %s THEN NULL ELSE secret END WHERE id = %s",
        (attempts, str(error)[:500], now + retry_delay(attempts),
         "failed" if give_up else "pending", give_up, row["id"]))
    if give_up:
        log.error("e-mail %s to %s given up after %d attempts: %s", row["id"], row["recipient"],
                  attempts, error)


def _sent(conn: psycopg.Connection, row: dict, now: dt.datetime) -> None:
    with conn.transaction():
        conn.execute("UPDATE email_outbox SET status = 'sent', sent_at = %s, secret = NULL, "
                     "attempts = attempts + 1, last_error = NULL WHERE id = %s", (now, row["id"]))
        notified = conn.execute("SELECT alarm_id, kind FROM notification_items "
                                "WHERE outbox_id = %s ORDER BY alarm_id", (row["id"],)).fetchall()
        for item in notified:
            alarms.add_event(conn, item["alarm_id"], "notified", at=now, actor="mailer",
                             actor_user_id=row["user_id"],
                             details={"to": row["recipient"], "kind": item["kind"]})


def _with_secret(body: str, secret: str | None) -> str:
    return body if secret is None else body.replace(SECRET_MARK, secret)


def _message(conn: psycopg.Connection, settings: Settings, row: dict):
    files = conn.execute("SELECT filename, content_type, content FROM email_attachments "
                         "WHERE outbox_id = %s ORDER BY id", (row["id"],)).fetchall()
    return mailer.build_message(
        sender=settings.mail_from, recipient=row["recipient"], subject=row["subject"],
        text=_with_secret(row["text_body"], row["secret"]),
        html=_with_secret(row["html_body"], row["secret"]),
        attachments=[(f["filename"], f["content_type"], bytes(f["content"])) for f in files])


def send_due(conn: psycopg.Connection, settings: Settings,
             now: dt.datetime | None = None) -> dict[str, int]:
    """Send the outbox rows that are due; return how many were sent and how many must wait."""
    now = now or dt.datetime.now(dt.UTC)
    pending = conn.execute("SELECT * FROM email_outbox WHERE status = 'pending' "
                           "AND next_attempt_at <= %s ORDER BY id LIMIT %s",
                           (now, BATCH)).fetchall()
    sent = refused = 0
    if not pending:
        return {"sent": 0, "refused": 0, "waiting": 0}
    try:
        with mailer.Mailer(mailer.parse_smtp_url(settings.smtp_url)) as session:
            while pending:
                row = pending[0]
                try:
                    message = _message(conn, settings, row)
                except ValueError as error:  # an address or header email cannot carry
                    _failed(conn, row, error, now, permanent=True, give_up=True)
                    refused += 1
                    pending.pop(0)
                    continue
                try:
                    session.send(message)
                except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused) as error:
                    # the server answered about this message: the others may still go
                    _failed(conn, row, error, now, permanent=_permanent(error))
                    refused += 1
                else:
                    _sent(conn, row, now)
                    sent += 1
                pending.pop(0)
    except (mailer.MailError, OSError, smtplib.SMTPException) as error:
        log.warning("SMTP unavailable, %d e-mails wait for the next try: %s", len(pending), error)
        for row in pending:
            _failed(conn, row, error, now)
    return {"sent": sent, "refused": refused, "waiting": len(pending)}
