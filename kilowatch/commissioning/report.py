"""Commissioning reports: issue a numbered, never-changed version per site, list and read them.

Issuing gathers what the report says (the checklist, the inventory, the
company's logins, the audited actions on the company, the site and its
devices, the support contacts from the settings, the commissioner's comment),
renders it once as HTML and PDF and stores all three in one row; no code
path changes a row afterwards (the table refuses UPDATE and DELETE). The PDF
goes to every active admin of the company through the durable e-mail outbox,
as an attachment, in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import html

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from kilowatch import audit, fleet
from kilowatch.access import AccessDenied, AccessScope, site_filter
from kilowatch.alarms import outbox
from kilowatch.commissioning import checklist, render
from kilowatch.errors import UserFacingError
from kilowatch.settings import Settings

MAX_COMMENT = 4000
MAX_ACTIONS = 500
# Audited actions that are not something somebody carried out.
_SKIPPED_ACTIONS = ("device.activation_refused",)
# Never printed, whatever an audit entry holds.
_SECRET_WORDS = ("password", "hash", "code", "nonce", "token", "secret")


class ReportError(UserFacingError, ValueError):
    """A report cannot be issued as asked (the message says why)."""


def clean_comment(comment: str | None) -> str:
    """Return the comment trimmed, or raise ReportError when it is too long or unprintable."""
    comment = (comment or "").strip().replace("\r\n", "\n")
    if len(comment) > MAX_COMMENT:
        raise ReportError(f"the comment is {len(comment)} characters; at most {MAX_COMMENT}")
    if any(ord(c) < 32 and c not in "\n\t" for c in comment):
        raise ReportError("the comment contains control characters")
    return comment


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _summary(after) -> str:
    if not isinstance(after, dict):
        return "" if after is None else str(after)[:160]
    shown = [f"{key}: {value}" for key, value in after.items()
             if not any(word in key.lower() for word in _SECRET_WORDS) and value not in (None, "")]
    return ", ".join(shown)[:160]


def _actions(conn: psycopg.Connection, site: dict, device_ids: list[int]) -> list[dict]:
    targets = [f"site:{site['id']}", *(f"device:{d}" for d in device_ids)]
    rows = conn.execute(
        """SELECT at, actor, action, target, after FROM audit_log
           WHERE company_id = %(company)s AND action <> ALL(%(skipped)s)
             AND (target = ANY(%(targets)s) OR target LIKE ANY(%(kinds)s))
           ORDER BY at, id LIMIT %(limit)s""",
        {"company": site["company_id"], "skipped": list(_SKIPPED_ACTIONS), "targets": targets,
         "kinds": ["company:%", "user:%", "tariff:%"], "limit": MAX_ACTIONS}).fetchall()
    return [{"at": _iso(r["at"]), "who": r["actor"], "what": r["action"],
             "detail": " · ".join(p for p in (r["target"], _summary(r["after"])) if p)}
            for r in rows]


def _inventory(devices: list[dict]) -> list[dict]:
    def state(device: dict) -> str:
        if checklist.activated(device):
            return "activated"
        return "revoked" if device["revoked_at"] else "registered"

    return [{"serial": d["serial"], "model": d["model"], "rated_power_kw": d["rated_power_kw"],
             "capacity_kwh": d["capacity_kwh"], "firmware": d["firmware"], "state": state(d),
             "activated_at": _iso(d["activated_at"]), "first_data": _iso(d["first_data"])}
            for d in devices]


def _logins(conn: psycopg.Connection, company_id: int) -> list[dict]:
    rows = conn.execute("SELECT email, display_name, role, active, created_at FROM users "
                        "WHERE company_id = %s ORDER BY role, email", (company_id,)).fetchall()
    return [{"email": r["email"], "name": r["display_name"], "role": r["role"],
             "active": r["active"], "created_at": _iso(r["created_at"])} for r in rows]


def gather(conn: psycopg.Connection, scope: AccessScope, settings: Settings, site_id: int, *,
           comment: str, version: int, now: dt.datetime) -> dict:
    """Return what a report of a visible site says, as JSON-ready data."""
    site = fleet.get_site(conn, scope, site_id)
    devices = checklist.site_devices(conn, site_id, now)
    return {
        "site": {"id": site["id"], "name": site["name"], "company": site["company_name"],
                 "address": site.get("address"), "timezone": site["timezone"]},
        "version": version, "issued_at": now.isoformat(), "issued_by": scope.actor,
        "checklist": [i.as_json() for i in checklist.checklist(conn, scope, site_id, now)],
        "inventory": _inventory(devices),
        "logins": _logins(conn, site["company_id"]),
        "actions": _actions(conn, site, [d["id"] for d in devices]),
        "support": {"email": settings.support_email, "phone": settings.support_phone,
                    "procedure": settings.support_procedure},
        "comment": comment,
    }


def _mail_admins(conn: psycopg.Connection, site: dict, content: dict, pdf: bytes,
                 now: dt.datetime) -> int:
    admins = conn.execute("SELECT id, email FROM users WHERE company_id = %s AND role = 'admin' "
                          "AND active ORDER BY id", (site["company_id"],)).fetchall()
    subject = render.title(content)
    text = (f"{subject} was issued by {content['issued_by']}.\n\n"
            "The report is attached as a PDF. It lists the equipment, the logins, the actions "
            "carried out and how to reach support.\n")
    attachment = (filename(site["id"], content["version"]), "application/pdf", pdf)
    for admin in admins:
        outbox.enqueue(conn, user_id=admin["id"], recipient=admin["email"], subject=subject,
                       text=text, html=f"<p>{html.escape(text)}</p>", now=now,
                       attachments=[attachment])
    return len(admins)


def issue(conn: psycopg.Connection, scope: AccessScope, settings: Settings, site_id: int, *,
          comment: str = "", now: dt.datetime | None = None) -> dict:
    """Issue the site's next report version, e-mail it to the admins; return id, version, mailed.

    Only the company's admins and superadmins issue (AccessDenied otherwise).
    """
    comment = clean_comment(comment)
    now = now or dt.datetime.now(dt.UTC)
    with conn.transaction():
        site = fleet.get_site(conn, scope, site_id)
        if not scope.may_administer_company(site["company_id"]):
            raise AccessDenied("only the company's admins issue commissioning reports")
        conn.execute("SELECT 1 FROM sites WHERE id = %s FOR UPDATE", (site_id,))  # one at a time
        version = conn.execute("SELECT coalesce(max(version), 0) + 1 AS v FROM "
                               "commissioning_reports WHERE site_id = %s", (site_id,)
                               ).fetchone()["v"]
        content = gather(conn, scope, settings, site_id, comment=comment, version=version,
                         now=now)
        html_text, pdf = render.to_html(content), render.to_pdf(content)
        report_id = conn.execute(
            """INSERT INTO commissioning_reports (site_id, company_id, version, comment, content,
                   html, pdf, issued_by, issued_by_user_id, issued_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (site_id, site["company_id"], version, comment, Jsonb(content), html_text, pdf,
             scope.actor, scope.user_id, now)).fetchone()["id"]
        mailed = _mail_admins(conn, site, content, pdf, now)
        audit.record(conn, scope, "commissioning.issue", target=f"site:{site_id}",
                     company_id=site["company_id"],
                     after={"report": report_id, "version": version, "mailed_to": mailed})
    return {"id": report_id, "version": version, "mailed": mailed}


def list_reports(conn: psycopg.Connection, scope: AccessScope, site_id: int) -> list[dict]:
    """Return a visible site's reports, newest first (without their files)."""
    fleet.get_site(conn, scope, site_id)
    return conn.execute("SELECT id, version, issued_at, issued_by, comment, length(pdf) AS size "
                        "FROM commissioning_reports WHERE site_id = %s ORDER BY version DESC",
                        (site_id,)).fetchall()


def get_report(conn: psycopg.Connection, scope: AccessScope, report_id: int) -> dict:
    """Return one report with its files, if its site is visible (AccessDenied otherwise)."""
    query = sql.SQL(
        "SELECT r.*, s.name AS site_name FROM commissioning_reports r "
        "JOIN sites s ON s.id = r.site_id WHERE r.id = %s AND {}").format(site_filter(scope))
    row = conn.execute(query, (report_id,)).fetchone()
    if row is None:
        raise AccessDenied("no such report")
    return row


def filename(site_id: int, version: int) -> str:
    """Return the file name of a report's PDF."""
    return f"commissioning-site{site_id}-v{version}.pdf"
