"""Data export: a site's chosen points over a range as CSV or XLSX, streamed.

``GET /export/site/<id>.csv`` (or ``.xlsx``) with the query string
``range`` (``today``, ``yesterday``, ``7d``, ``30d``, ``12m`` or ``custom`` with
``first`` and ``last`` as ``YYYY-MM-DD``), ``points`` (comma-separated point
names) and ``resolution`` (``raw``, ``1m``, ``15m``, ``1h``, ``1d``).

The request guard refuses it without a login; the site is checked against the
user's scope in SQL (a site outside it answers 404, as if it did not exist).
The header names the site's time zone and each column's device, point and
unit; times are the site's local time with their UTC offset. CSV rows are
written as the database streams them; XLSX goes through xlsxwriter's
``constant_memory`` mode into a temporary file, so a year of minute data is
never held in memory.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import tempfile
from datetime import date
from zoneinfo import ZoneInfo

import xlsxwriter
from flask import Blueprint, Flask, Response, abort, request, send_file, stream_with_context

from auth.scope import connection, current_scope
from kilowatch import fleet
from kilowatch.access import AccessDenied
from kilowatch.ids import parse_id
from kilowatch.telemetry import history

log = logging.getLogger(__name__)

blueprint = Blueprint("export", __name__)
MAX_POINTS = 32
EXCEL_MAX_ROWS = 1_048_575
_POINT = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


class ExportRequestError(ValueError):
    """A query string the export cannot honour; the message is shown to the user."""


def _day(name: str) -> date | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ExportRequestError(f"{name} must be a date like 2026-01-31") from None


def _points() -> list[str]:
    names = [p.strip() for p in request.args.get("points", "").split(",") if p.strip()]
    if not names:
        raise ExportRequestError("choose at least one point")
    if len(names) > MAX_POINTS or any(not _POINT.match(n) or len(n) > 64 for n in names):
        raise ExportRequestError(f"points must be up to {MAX_POINTS} point names")
    return list(dict.fromkeys(names))


def _parse(site: dict) -> tuple:
    """Read the query string: (start, end, resolution, points), or raise ExportRequestError."""
    try:
        start, end = history.time_range(request.args.get("range", "today"), site["timezone"],
                                        first_day=_day("first"), last_day=_day("last"))
        resolution = history.export_resolution(request.args.get("resolution", "1h"))
    except history.HistoryError as error:
        raise ExportRequestError(str(error)) from None
    return start, end, resolution, _points()


def _filename(site: dict, start, resolution, extension: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", site["name"]).strip("-").lower() or "site"
    local = start.astimezone(ZoneInfo(site["timezone"]))
    return f"{slug}-{local:%Y%m%d}-{resolution.label.replace(' ', '')}.{extension}"


def _number(value: float | None) -> str:
    return "" if value is None else repr(value)


def _csv_lines(scope, site: dict, columns, start, end, resolution):
    tz = ZoneInfo(site["timezone"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([f"time ({site['timezone']})", *(c.header for c in columns)])
    yield buffer.getvalue()
    with connection() as conn:
        for moment, values in history.export_rows(conn, scope, site["id"], columns, start, end,
                                                  resolution):
            buffer.seek(0)
            buffer.truncate()
            writer.writerow([moment.astimezone(tz).isoformat(), *map(_number, values)])
            yield buffer.getvalue()


def _write_xlsx(target, scope, site: dict, columns, start, end, resolution) -> None:
    tz = ZoneInfo(site["timezone"])
    book = xlsxwriter.Workbook(target, {"constant_memory": True, "remove_timezone": True})
    sheet = book.add_worksheet("data")
    bold = book.add_format({"bold": True})
    when = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    sheet.set_column(0, 0, 20)
    sheet.set_column(1, len(columns), 22)
    sheet.write_row(0, 0, [f"time ({site['timezone']})", *(c.header for c in columns)], bold)
    row = 0
    with connection() as conn:
        for moment, values in history.export_rows(conn, scope, site["id"], columns, start, end,
                                                  resolution):
            if row >= EXCEL_MAX_ROWS:
                break
            row += 1
            sheet.write_datetime(row, 0, moment.astimezone(tz).replace(tzinfo=None), when)
            for index, value in enumerate(values, start=1):
                if value is not None:
                    sheet.write_number(row, index, value)
    about = book.add_worksheet("about")
    lines = [("site", site["name"]), ("time zone", site["timezone"]),
             ("from", start.astimezone(tz).isoformat()), ("to", end.astimezone(tz).isoformat()),
             ("resolution", resolution.label), ("rows", row)]
    if row >= EXCEL_MAX_ROWS:
        lines.append(("note", "stopped at Excel's row limit: choose a coarser resolution"))
    for index, (label, value) in enumerate(lines):
        about.write_row(index, 0, [label, value])
    book.close()


@blueprint.route("/export/site/<site_ref>.<any(csv, xlsx):extension>")
def export_site(site_ref: str, extension: str):
    """Stream a site's points over a range as CSV or XLSX (404 outside the user's scope)."""
    scope = current_scope()
    site_id = parse_id(site_ref)
    if site_id is None:
        abort(404)
    with connection() as conn:
        try:
            site = fleet.get_site(conn, scope, site_id)
        except AccessDenied:
            log.warning("export of site %s refused to %s", site_id, scope.actor)
            abort(404)
        try:
            start, end, resolution, points = _parse(site)
        except ExportRequestError as error:
            return Response(f"Cannot export: {error}\n", status=400, mimetype="text/plain")
        columns = history.export_columns(conn, scope, site_id, points)
    name = _filename(site, start, resolution, extension)
    if extension == "csv":
        lines = _csv_lines(scope, site, columns, start, end, resolution)
        return Response(stream_with_context(lines), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    target = tempfile.TemporaryFile()  # noqa: SIM115 - send_file closes it
    _write_xlsx(target, scope, site, columns, start, end, resolution)
    target.seek(0)
    return send_file(target, as_attachment=True, download_name=name, mimetype=(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))


def init_export(server: Flask) -> None:
    """Add the export routes to the web app's server (behind its request guard)."""
    server.register_blueprint(blueprint)
