"""Building blocks of the alarm pages: grid rows and columns, CSV, timeline, badges, chart.

Pure functions of rows already read through the user's scope.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboards.components.telemetry import charts
from dashboards.components.telemetry.fleet_table import GRID_THEME
from dashboards.components.telemetry.tiles import SEVERITY_COLORS
from kilowatch import spreadsheets
from kilowatch.alarms.events import SEVERITIES, SOURCES, AlarmError, HistoryQuery
from kilowatch.alarms.rules import format_duration
from kilowatch.ids import parse_id
from kilowatch.telemetry.history import History

SEVERITY_LABELS = {s: s.title() for s in SEVERITIES}
SOURCE_LABELS = {"device": "Device", "rule": "Alert rule", "platform": "Platform"}
EVENT_LABELS = {"raised": "Raised", "re-raised": "Raised again", "acknowledged": "Acknowledged",
                "commented": "Comment", "cleared": "Cleared", "notified": "E-mail sent"}
EVENT_ICONS = {"raised": "▲", "re-raised": "▲", "acknowledged": "✔", "commented": "✎",
               "cleared": "●", "notified": "✉"}
SEVERITY_CLASS = {s: f"kw-sev-{s}" for s in SEVERITIES}
PERIOD_FILL = "rgba(239, 68, 68, 0.08)"

_SEVERITY_COLUMN = {
    "field": "severity_label", "headerName": "Severity", "width": 110, "pinned": "left",
    "cellClassRules": {f"kw-sev-{s}": f"params.data.severity == '{s}'" for s in SEVERITIES},
    "comparator": {"function": "(a, b, nodeA, nodeB) => nodeA.data.rank - nodeB.data.rank"}}
_COMMON = [
    {"field": "site", "headerName": "Site", "minWidth": 160, "flex": 1,
     "cellClass": "kw-cell-site"},
    {"field": "device", "headerName": "Device", "width": 130},
    {"field": "code", "headerName": "Code", "width": 170},
    {"field": "message", "headerName": "Message", "minWidth": 200, "flex": 2,
     "tooltipField": "message"},
]
ACTIVE_COLUMNS = [
    _SEVERITY_COLUMN,
    {"field": "raised", "headerName": "Raised (site time)", "width": 160, "sort": None},
    *_COMMON,
    {"field": "duration", "headerName": "For", "width": 100,
     "comparator": {"function": "(a, b, nodeA, nodeB) => "
                                "nodeA.data.duration_s - nodeB.data.duration_s"}},
    {"field": "ack", "headerName": "Acknowledged", "width": 170},
]
HISTORY_COLUMNS = [
    _SEVERITY_COLUMN,
    {"field": "raised", "headerName": "Raised (site time)", "width": 160},
    {"field": "cleared", "headerName": "Cleared", "width": 160},
    {"field": "duration", "headerName": "Duration", "width": 105,
     "comparator": {"function": "(a, b, nodeA, nodeB) => "
                                "nodeA.data.duration_s - nodeB.data.duration_s"}},
    *_COMMON,
    {"field": "source_label", "headerName": "Source", "width": 105},
    {"field": "ack", "headerName": "Acknowledged", "width": 170},
    {"field": "company", "headerName": "Company", "width": 140},
]
CSV_FIELDS = (("id", "id"), ("severity", "severity"), ("code", "code"), ("state", "state"),
              ("raised_utc", "raised_at"), ("cleared_utc", "cleared_at"),
              ("duration_s", "duration_s"), ("company", "company"), ("site", "site"),
              ("device", "device"), ("source", "source"), ("message", "message"),
              ("acknowledged_by", "acknowledged_by"), ("acknowledged_utc", "acknowledged_at"))


def site_time(moment: datetime | None, timezone: str) -> str:
    """Say a time as the site's wall clock: ``2026-11-21 14:05``."""
    if moment is None:
        return ""
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def _utc(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).isoformat()


def alarm_row(alarm: dict) -> dict:
    """Turn one alarm into a flat grid row (times in the site's zone, duration in words)."""
    ack = ""
    if alarm["acknowledged_at"] is not None:
        when = site_time(alarm["acknowledged_at"], alarm["timezone"])
        ack = f"{alarm['acknowledged_by']} · {when}"
    return {
        "id": alarm["id"], "row_id": str(alarm["id"]), "severity": alarm["severity"],
        "severity_label": SEVERITY_LABELS[alarm["severity"]],
        "rank": SEVERITIES.index(alarm["severity"]), "code": alarm["code"],
        "message": alarm["message"], "site": alarm["site_name"], "site_id": alarm["site_id"],
        "company": alarm["company_name"], "device": alarm["serial"],
        "source": alarm["source"], "source_label": SOURCE_LABELS[alarm["source"]],
        "raised": site_time(alarm["raised_at"], alarm["timezone"]),
        "cleared": site_time(alarm["cleared_at"], alarm["timezone"]) or "active",
        "state": "active" if alarm["cleared_at"] is None else "cleared",
        "duration": format_duration(alarm["duration_s"]),
        "duration_s": round(alarm["duration_s"]), "ack": ack,
        "acknowledged_by": alarm["acknowledged_by"] or "",
        "raised_at": _utc(alarm["raised_at"]), "cleared_at": _utc(alarm["cleared_at"]),
        "acknowledged_at": _utc(alarm["acknowledged_at"]),
    }


def history_csv(rows: list[dict]) -> str:
    """Return grid rows as CSV (UTC times in ISO 8601, durations in seconds).

    Codes and messages come from devices: text that a spreadsheet would run as a
    formula is quoted (:mod:`kilowatch.spreadsheets`).
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([name for name, _ in CSV_FIELDS])
    for row in rows:
        writer.writerow(spreadsheets.text_row(row[field] for _, field in CSV_FIELDS))
    return out.getvalue()


def grid_options(count: int) -> dict:
    """Return the AG Grid options shared by the alarm grids."""
    return {"theme": {"function": GRID_THEME}, "animateRows": False, "tooltipShowDelay": 300,
            "domLayout": "autoHeight" if count <= 20 else "normal"}


def severity_counts(counts: dict[str, int], prefix: str) -> list:
    """Return one pill per severity with active alarms, or a calm "no active alarms"."""
    pills = [dbc.Badge(f"{counts[s]} {s}", color=SEVERITY_COLORS[s], pill=True,
                       className="me-1", id=f"{prefix}-{s}")
             for s in SEVERITIES if counts.get(s)]
    if not pills:
        return [html.Span("No active alarms", className="text-muted small",
                          id=f"{prefix}-none")]
    return pills


def timeline(events: list[dict], timezone: str) -> html.Ul:
    """Return an alarm's events as a vertical timeline, oldest first."""
    items = []
    for event in events:
        details = event["details"] or {}
        text = details.get("comment") or details.get("message") or ""
        if event["kind"] == "notified":
            text = f"to {details.get('to', '?')} ({details.get('kind', '')})"
        items.append(html.Li(className=f"kw-timeline-item kw-timeline-{event['kind']}", children=[
            html.Span(EVENT_ICONS.get(event["kind"], "•"), className="kw-timeline-icon"),
            html.Div([
                html.Div([html.Strong(EVENT_LABELS.get(event["kind"], event["kind"])),
                          html.Small(f" · {site_time(event['at'], timezone)}"
                                     f"{' · ' + event['actor'] if event['actor'] else ''}",
                                     className="text-muted")]),
                html.Div(text, className="kw-timeline-text") if text else None,
            ]),
        ]))
    return html.Ul(items, className="kw-timeline list-unstyled mb-0", id="alarm-timeline-list")


def alarm_figure(history: History, alarm: dict) -> dict:
    """Draw the device's related points with the alarm's active period shaded."""
    fig = charts.explorer_figure([history], [alarm["serial"]])
    if not fig["data"]:
        return charts.empty_figure("No data from this device around the alarm", height=440)
    end = alarm["cleared_at"] or datetime.now(UTC)
    start_ms, end_ms = charts.local_ms([alarm["raised_at"], end], history.timezone)
    fig["layout"]["shapes"] = [{"type": "rect", "xref": "x", "yref": "paper",
                                "x0": float(start_ms), "x1": float(end_ms), "y0": 0, "y1": 1,
                                "fillcolor": PERIOD_FILL, "line": {"width": 0},
                                "layer": "below"}]
    charts.show_range(fig, history.start, history.end, history.timezone)
    return fig


def chart_card(figure: dict, note: str) -> dbc.Card:
    """Return the chart card of the alarm page."""
    return dbc.Card([dbc.CardHeader(["Device data around the alarm ",
                                     html.Small(note, className="text-muted fw-normal")]),
                     dbc.CardBody(dcc.Graph(id="alarm-chart", figure=figure,
                                            config={"displayModeBar": False}))],
                    className="kw-card mb-3")


# ---- history filters --------------------------------------------------------------------------

STATE_CHOICES = {"any": "Any", "active": "Active", "cleared": "Cleared"}
ACK_CHOICES = {"any": "Any", "yes": "Acknowledged", "no": "Not acknowledged"}


def _choice_list(values: object, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if values in (None, ""):
        return ()
    if not isinstance(values, list) or any(v not in allowed for v in values):
        raise AlarmError("pick values from the lists")
    return tuple(values)


def _day(value: object, label: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(value)[:10]).replace(tzinfo=UTC)
    except ValueError:
        raise AlarmError(f"the {label} date is not a date") from None


def _optional_id(value: object, label: str) -> int | None:
    if value in (None, ""):
        return None
    number = parse_id(value)
    if number is None:
        raise AlarmError(f"pick a {label} from the list")
    return number


def history_query(*, start_date, end_date, site, device, code, severities, sources, state,
                  acknowledged, min_minutes) -> HistoryQuery:
    """Turn the history page's filter values (from the browser) into a query."""
    start, end = _day(start_date, "start"), _day(end_date, "end")
    if end is not None:
        end += timedelta(days=1)  # the end date is included
    if state not in (None, *STATE_CHOICES) or acknowledged not in (None, *ACK_CHOICES):
        raise AlarmError("pick values from the lists")
    if code is not None and (not isinstance(code, str) or len(code) > 64):
        raise AlarmError("pick a code from the list")
    try:
        minimum = None if min_minutes in (None, "") else float(min_minutes) * 60
    except (TypeError, ValueError):
        raise AlarmError("the minimum duration is a number of minutes") from None
    if minimum is not None and not 0 <= minimum <= 10 * 365 * 86400:
        raise AlarmError("the minimum duration is a number of minutes from 0")
    return HistoryQuery(
        start=start, end=end, site_id=_optional_id(site, "site"),
        device_id=_optional_id(device, "device"), code=code or None,
        severities=_choice_list(severities, SEVERITIES),
        sources=_choice_list(sources, SOURCES),
        state=None if state in (None, "any") else state,
        acknowledged=None if acknowledged in (None, "any") else acknowledged == "yes",
        min_duration_s=minimum)
