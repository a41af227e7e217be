"""The fleet grid: its columns and theme, rows of one window, and the headline figures."""

from __future__ import annotations

from datetime import datetime

from dashboards.components.telemetry.live import format_kw
from dashboards.components.telemetry.tiles import fleet_row, kpi

VIEWS = {"all": "All sites", "problems": "Problems", "offline": "Offline", "alarms": "Alarms"}
GRID_THEME = ("themeQuartz.withParams({accentColor: '#0f766e', headerBackgroundColor: '#f8fafc',"
              " fontFamily: 'inherit', fontSize: 13, rowHeight: 40, headerHeight: 40,"
              " borderColor: '#e5e7eb', wrapperBorderRadius: 8})")

_NUMBER = {"type": "numericColumn", "width": 92, "minWidth": 80, "sortable": False}
_TEXT_FILTER = {"filter": "agTextColumnFilter",
                "filterParams": {"filterOptions": ["contains", "notContains", "equals",
                                                   "notEqual", "startsWith", "endsWith"],
                                 "maxNumConditions": 2, "buttons": ["reset"]}}
# Sorting and filtering run in SQL (kilowatch.telemetry.fleet_grid): only the columns it
# knows sort or filter; live values come from Redis for the rows shown and do not sort.
COLUMNS = [
    {"field": "status_text", "headerName": "Status", "width": 165, "pinned": "left",
     "cellClassRules": {"kw-cell-offline": "params.data && params.data.status == 'offline'",
                        "kw-cell-partial": "params.data && params.data.status == 'partial'",
                        "kw-cell-online": "params.data && params.data.status == 'online'"}},
    {"field": "name", "headerName": "Site", "minWidth": 230, "flex": 2,
     "cellClass": "kw-cell-site", "tooltipField": "name", **_TEXT_FILTER},
    {"field": "company", "headerName": "Company", "minWidth": 130, "flex": 1, **_TEXT_FILTER},
    {"field": "alarms", "headerName": "Active alarms", "width": 150,
     "filter": "agNumberColumnFilter", "filterParams": {"maxNumConditions": 1,
                                                      "buttons": ["reset"]},
     "headerTooltip": "Sorts by severity; filters by the number of active alarms",
     "cellClassRules": {"kw-sev-critical": "params.data && params.data.worst == 'critical'",
                        "kw-sev-major": "params.data && params.data.worst == 'major'",
                        "kw-sev-minor": "params.data && params.data.worst == 'minor'",
                        "kw-sev-warning": "params.data && params.data.worst == 'warning'"}},
    {"field": "soc", "headerName": "SoC %", **_NUMBER, "width": 84},
    {"headerName": "Now (kW)", "children": [
        {"field": "battery_kw", "headerName": "Battery", **_NUMBER,
         "headerTooltip": "> 0 discharging, < 0 charging"},
        {"field": "pv_kw", "headerName": "PV", **_NUMBER},
        {"field": "load_kw", "headerName": "Load", **_NUMBER},
        {"field": "grid_kw", "headerName": "Grid", **_NUMBER,
         "headerTooltip": "> 0 import, < 0 export"}]},
    {"headerName": "Today (kWh)", "children": [
        {"field": "pv_kwh", "headerName": "PV", **_NUMBER},
        {"field": "load_kwh", "headerName": "Load", **_NUMBER},
        {"field": "import_kwh", "headerName": "Import", **_NUMBER}]},
    {"field": "last_seen", "headerName": "Last seen", "width": 110},
]
BLOCK_ROWS = 100  # rows per request of the grid (its cache block)


def grid_rows(sites: list[dict], *, now: datetime | None = None) -> list[dict]:
    """Return the grid rows of one window of the fleet (already sorted by the server)."""
    rows = []
    for site in sites:
        row = fleet_row(site, now=now)
        row["row_id"] = str(row.pop("id"))  # AG Grid row ids are strings
        rows.append(row)
    return rows


def columns(*, companies: int) -> list[dict]:
    """Return the grid's columns, without the company when all sites share one."""
    if companies > 1:
        return COLUMNS
    return [c for c in COLUMNS if c.get("field") != "company"]


def grid_height(sites: int) -> str:
    """Return the grid's CSS height: every row of a small fleet, a scrolling box otherwise."""
    if sites > 25:
        return "70vh"
    return f"{84 + 41 * max(sites, 1)}px"  # two header rows, the rows, their borders


def summary_cards(summary: dict) -> list:
    """Return the fleet's headline figures (see ``fleet_grid.fleet_summary``)."""
    critical, down = summary["critical"], summary["down"]
    return [
        kpi("Sites", str(summary["sites"]), "fleet-kpi-sites", hint=f"{summary['online']} online"),
        kpi("Offline", str(down), "fleet-kpi-offline", hint="fully or partly",
            tone="text-danger" if down else ""),
        kpi("Active alarms", str(summary["alarms"]), "fleet-kpi-alarms",
            hint=f"{critical} critical", tone="text-danger" if critical else ""),
        kpi("PV now", format_kw(summary["pv_kw"] or 0.0), "fleet-kpi-pv"),
        kpi("Battery now", format_kw(summary["battery_kw"] or 0.0), "fleet-kpi-battery",
            hint="+ discharging"),
        kpi("Mean SoC", f"{summary['soc']:.0f} %" if summary["soc"] is not None else "—",
            "fleet-kpi-soc", hint="weighted by capacity"),
    ]
