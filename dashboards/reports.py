"""Download issued commissioning reports: ``/reports/commissioning/<id>.pdf`` (or ``.html``).

Behind the request guard (a login is needed). The report's site is checked
against the user's scope in SQL: the company's users who may see the site and
platform staff get the stored file; anyone else, and any id that does not
exist, gets the same 403 "not allowed" page, so ids reveal nothing.
"""

from __future__ import annotations

import io
import logging

from flask import Blueprint, Flask, Response, render_template, send_file

from auth.scope import connection, current_scope
from kilowatch.access import AccessDenied
from kilowatch.commissioning import report
from kilowatch.ids import parse_id

log = logging.getLogger(__name__)

blueprint = Blueprint("reports", __name__, template_folder="templates")
# The stored HTML is escaped text and inline CSS: nothing else may load or run.
_HTML_POLICY = "default-src 'none'; style-src 'unsafe-inline'"


@blueprint.route("/reports/commissioning/<report_ref>.<any(pdf, html):extension>")
def commissioning_report(report_ref: str, extension: str):
    """Send a stored report as issued, or the 403 page outside the user's scope."""
    scope = current_scope()
    try:
        report_id = parse_id(report_ref)
        if report_id is None:
            raise AccessDenied("not a report id")
        with connection() as conn:
            row = report.get_report(conn, scope, report_id)
    except AccessDenied:
        log.warning("commissioning report %.40s refused to %s", report_ref, scope.actor)
        return render_template("reports/not_allowed.html"), 403
    if extension == "html":
        return Response(row["html"], mimetype="text/html",
                        headers={"Content-Security-Policy": _HTML_POLICY})
    return send_file(io.BytesIO(bytes(row["pdf"])), mimetype="application/pdf",
                     as_attachment=True,
                     download_name=report.filename(row["site_id"], row["version"]))


def init_reports(server: Flask) -> None:
    """Add the report routes to the web app's server (behind its request guard)."""
    server.register_blueprint(blueprint)
