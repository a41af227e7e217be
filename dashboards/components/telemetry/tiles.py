"""Small building blocks shared by the fleet and site pages: badges, tiles, time texts, rows."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dash_bootstrap_components as dbc
from dash import html

from dashboards.components.telemetry.live import format_kw
from kilowatch.alarms.events import SEVERITIES

STATUS_LABELS = {"online": "Online", "offline": "Offline", "partial": "Partly offline",
                 "no devices": "No devices"}
STATUS_COLORS = {"online": "success", "offline": "danger", "partial": "warning",
                 "no devices": "secondary"}
SEVERITY_COLORS = {"critical": "danger", "major": "warning", "minor": "info",
                   "warning": "secondary"}


def local_time(moment: datetime | None, timezone: str, *, now: datetime | None = None) -> str:
    """Say a time in a zone: ``14:05:09`` today, ``21 Nov 14:05`` before, ``never`` if None."""
    if moment is None:
        return "never"
    tz = ZoneInfo(timezone)
    local = moment.astimezone(tz)
    today = (now or datetime.now(UTC)).astimezone(tz).date()
    return local.strftime("%H:%M:%S") if local.date() == today else local.strftime(
        "%d %b %H:%M")


def ago(moment: datetime | None, *, now: datetime | None = None) -> str:
    """Say how long ago: ``12 s ago``, ``5 min ago``, ``3 h ago``, ``2 days ago``."""
    if moment is None:
        return "never"
    seconds = max(((now or datetime.now(UTC)) - moment).total_seconds(), 0)
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''} ago"
    return f"{int(seconds)} s ago"


def status_text(row: dict, timezone: str, *, now: datetime | None = None) -> str:
    """Say a site's status, with the time it went offline."""
    if row["status"] == "offline":
        if row.get("offline_since") is None:
            return "Never seen"
        return f"Offline since {local_time(row['offline_since'], timezone, now=now)}"
    return STATUS_LABELS[row["status"]]


def status_badge(status: str, element_id: str | None = None, text: str | None = None):
    """Return a coloured pill for a site or device status."""
    props = {"id": element_id} if element_id else {}
    return dbc.Badge(text or STATUS_LABELS.get(status, status),
                     color=STATUS_COLORS.get(status, "secondary"), pill=True,
                     className="kw-status-badge", **props)


def alarms_text(alarms: dict[str, int]) -> str:
    """Say active alarms by severity: ``2 critical · 1 minor`` (empty when none)."""
    return " · ".join(f"{alarms[s]} {s}" for s in SEVERITIES if alarms.get(s))


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def fleet_row(row: dict, *, now: datetime | None = None) -> dict:
    """Turn one site of the fleet overview into a flat, rounded grid row."""
    alarms = row["alarms"]
    today = row["today_kwh"]
    worst = next((s for s in SEVERITIES if alarms.get(s)), "")
    return {
        "id": row["id"], "name": row["name"], "company": row["company_name"],
        "status": row["status"], "status_text": status_text(row, row["timezone"], now=now),
        "alarms": alarms_text(alarms), "worst": worst,
        "soc": _round(row["soc"], 0), "battery_kw": _round(row["battery_kw"]),
        "pv_kw": _round(row["pv_kw"]), "load_kw": _round(row["load_kw"]),
        "grid_kw": _round(row["grid_kw"]), "pv_kwh": _round(today.get("pv")),
        "load_kwh": _round(today.get("load")), "import_kwh": _round(today.get("grid_import")),
        "last_seen": ago(row["last_seen"], now=now),
    }


def kpi(label: str, value: str, element_id: str, *, hint: str | None = None,
        tone: str = "") -> dbc.Col:
    """Return a small figure card: a label, a big value and an optional hint."""
    return dbc.Col(dbc.Card(dbc.CardBody([
        html.Div(label, className="kw-kpi-label"),
        html.Div(value, className=f"kw-kpi-value {tone}", id=element_id),
        html.Div(hint or "", className="kw-kpi-hint"),
    ]), className="kw-kpi h-100"), xs=6, md=4, xl=2)


def power_tile(label: str, value: float | None, element_id: str, *,
               positive: str = "", negative: str = "") -> dbc.Col:
    """Return a live power tile saying the direction (e.g. Charging / Discharging)."""
    direction = ""
    if value is not None and abs(value) >= 0.05:
        direction = positive if value > 0 else negative
    elif value is not None:
        direction = "Idle"
    return dbc.Col(html.Div(className="kw-tile", children=[
        html.Div(label, className="kw-kpi-label"),
        html.Div(format_kw(None if value is None else abs(value)), id=element_id,
                 className="kw-tile-value"),
        html.Div(direction, className="kw-kpi-hint"),
    ]), xs=6)
