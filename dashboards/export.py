"""Data export: a site's chosen points over a range as CSV or XLSX, streamed.

``GET /export/site/<id>.csv`` (or ``.xlsx``) with the query string
``range`` (``today``, ``yesterday``, ``7d``, ``30d``, ``12m`` or ``custom`` with
``first`` and ``last`` as ``YYYY-MM-DD``), ``points`` (comma-separated point
names) and ``resolution`` (``raw``, ``1m``, ``15m``, ``1h``, ``1d``).

The request guard refuses it without a login; the site is checked against the
user's scope in SQL (a site outside it answers 404, as if it did not exist).
The header names the site's time zone and each column's device, point and
unit; times are the site's local time with their UTC offset.

Both formats are written to a temporary file first, then sent from it: the
query runs on a pooled connection with a statement timeout
(``KILOWATCH_EXPORT_TIMEOUT``), and a slow client reading the file holds no
database connection. A user runs at most ``KILOWATCH_EXPORTS_PER_USER``
exports at once (a Redis slot, from the query to the last byte sent); one more
gets 429. XLSX goes through xlsxwriter's ``constant_memory`` mode, stores text
as text (never a formula) and stops with a clear 400 past ``XLSX_MAX_CELLS``
cells (time column included); CSV quotes text that a spreadsheet would run
(:mod:`kilowatch.spreadsheets`).
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import os
import re
import tempfile
from datetime import date
from zoneinfo import ZoneInfo

import psycopg
import xlsxwriter
from flask import Blueprint, Flask, Response, abort, request
from flask_login import current_user

from auth.scope import app_settings, connection, current_scope
from kilowatch import fleet, slots, spreadsheets
from kilowatch.access import AccessDenied
from kilowatch.ids import parse_id
from kilowatch.telemetry import history

log = logging.getLogger(__name__)

blueprint = Blueprint("export", __name__)
MAX_POINTS = 32
# An XLSX is built in the request: a million cells take about 5 s (xlsxwriter, one core).
XLSX_MAX_CELLS = 1_000_000
# A slot whose holder never gave it back (a killed worker) frees itself after this.
SLOT_STALE_AFTER_S = 3600
CHUNK_BYTES = 64 * 1024
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_POINT = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


class ExportRequestError(ValueError):
    """A query string the export cannot honour; the message is shown to the user."""


class TooManyRows(ExportRequestError):
    """More rows than an XLSX export holds."""


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


def _write_csv(target, scope, site: dict, columns, start, end, resolution) -> None:
    tz = ZoneInfo(site["timezone"])
    text = io.TextIOWrapper(target, encoding="utf-8", newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(spreadsheets.text_row([f"time ({site['timezone']})",
                                           *(c.header for c in columns)]))
    with connection() as conn, history.time_limit(conn, app_settings().export_timeout):
        for moment, values in history.export_rows(conn, scope, site["id"], columns, start, end,
                                                  resolution):
            writer.writerow([moment.astimezone(tz).isoformat(), *map(_number, values)])
    text.flush()
    text.detach()  # leave the file open for sending


def xlsx_max_rows(column_count: int) -> int:
    """Return how many rows an XLSX export of this many point columns may hold."""
    return XLSX_MAX_CELLS // (column_count + 1)


def _write_xlsx(target, scope, site: dict, columns, start, end, resolution) -> None:
    tz = ZoneInfo(site["timezone"])
    book = xlsxwriter.Workbook(target, {"constant_memory": True, "remove_timezone": True,
                                        **spreadsheets.TEXT_OPTIONS})
    sheet = book.add_worksheet("data")
    bold = book.add_format({"bold": True})
    when = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    sheet.set_column(0, 0, 20)
    sheet.set_column(1, len(columns), 22)
    sheet.write_row(0, 0, [f"time ({site['timezone']})", *(c.header for c in columns)], bold)
    row = 0
    max_rows = xlsx_max_rows(len(columns))
    with connection() as conn, history.time_limit(conn, app_settings().export_timeout):
        for moment, values in history.export_rows(conn, scope, site["id"], columns, start, end,
                                                  resolution):
            if row >= max_rows:
                points = f"{len(columns)} point" + ("s" if len(columns) > 1 else "")
                raise TooManyRows(f"an XLSX export holds at most {max_rows:,} rows with {points};"
                                  " choose a coarser resolution, a shorter range or fewer "
                                  "points, or export CSV")
            row += 1
            sheet.write_datetime(row, 0, moment.astimezone(tz).replace(tzinfo=None), when)
            for index, value in enumerate(values, start=1):
                if value is not None:
                    sheet.write_number(row, index, value)
    about = book.add_worksheet("about")
    lines = [("site", site["name"]), ("time zone", site["timezone"]),
             ("from", start.astimezone(tz).isoformat()), ("to", end.astimezone(tz).isoformat()),
             ("resolution", resolution.label), ("rows", row)]
    for index, (label, value) in enumerate(lines):
        about.write_row(index, 0, [label, value])
    book.close()


def _refusal(status: int, message: str) -> Response:
    return Response(f"Cannot export: {message}\n", status=status, mimetype="text/plain")


def _write_file(extension: str, scope, site: dict, columns, start, end, resolution):
    """Write the export to a temporary file; return it, or a refusal saying why not."""
    target = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the response
    write = _write_csv if extension == "csv" else _write_xlsx
    try:
        write(target, scope, site, columns, start, end, resolution)
    except ExportRequestError as error:
        target.close()
        return _refusal(400, str(error))
    except psycopg.errors.QueryCanceled:
        target.close()
        log.warning("export of site %s by %s ran over %s s", site["id"], scope.actor,
                    app_settings().export_timeout)
        return _refusal(503, f"it took longer than {app_settings().export_timeout} s; choose "
                             "a shorter range or a coarser resolution")
    except BaseException:
        target.close()
        raise
    target.seek(0)
    return target


def _send(target, name: str, mimetype: str, *, done) -> Response:
    """Answer the file's bytes as an attachment; call ``done`` once sent or abandoned."""
    size = os.fstat(target.fileno()).st_size

    def chunks():
        while chunk := target.read(CHUNK_BYTES):
            yield chunk
        done()

    def close():
        target.close()
        done()

    response = Response(chunks(), mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Content-Length": str(size)})
    response.call_on_close(close)
    return response


def _read_request(scope, site_ref: str) -> tuple:
    """Return (site, columns, start, end, resolution); abort 404 or raise ExportRequestError."""
    site_id = parse_id(site_ref)
    if site_id is None:
        abort(404)
    with connection() as conn:
        try:
            site = fleet.get_site(conn, scope, site_id)
        except AccessDenied:
            log.warning("export of site %s refused to %s", site_id, scope.actor)
            abort(404)
        start, end, resolution, points = _parse(site)
        columns = history.export_columns(conn, scope, site_id, points)
    return site, columns, start, end, resolution


@blueprint.route("/export/site/<site_ref>.<any(csv, xlsx):extension>")
def export_site(site_ref: str, extension: str):
    """Send a site's points over a range as CSV or XLSX (404 outside the user's scope)."""
    scope = current_scope()
    try:
        site, columns, start, end, resolution = _read_request(scope, site_ref)
    except ExportRequestError as error:
        return _refusal(400, str(error))
    settings = app_settings()
    slot = f"export:{current_user.id}"
    token = slots.take(settings, slot, limit=settings.exports_per_user,
                       stale_after_s=SLOT_STALE_AFTER_S)
    if token is None:
        log.warning("export refused to %s: %d already running", scope.actor,
                    settings.exports_per_user)
        return _refusal(429, f"you already have {settings.exports_per_user} exports running; "
                             "wait until one has finished downloading")
    give_back = functools.partial(slots.give_back, settings, slot, token)
    try:
        written = _write_file(extension, scope, site, columns, start, end, resolution)
    except BaseException:
        give_back()
        raise
    if isinstance(written, Response):
        give_back()
        return written
    # The slot is held until the last byte is sent (or the client goes away).
    return _send(written, _filename(site, start, resolution, extension),
                 "text/csv" if extension == "csv" else XLSX_MIMETYPE, done=give_back)


def init_export(server: Flask) -> None:
    """Add the export routes to the web app's server (behind its request guard)."""
    server.register_blueprint(blueprint)
