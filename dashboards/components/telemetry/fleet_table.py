"""The fleet grid: its columns and theme, rows from the overview, and the headline figures."""

from __future__ import annotations

from datetime import datetime

from dashboards.components.telemetry.live import format_kw
from dashboards.components.telemetry.tiles import fleet_row, kpi

FILTERS = {"all": "All sites", "problems": "Problems", "offline": "Offline", "alarms": "Alarms"}
GRID_THEME = ("themeQuartz.withParams({accentColor: '#0f766e', headerBackgroundColor: '#f8fafc',"
              " fontFamily: 'inherit', fontSize: 13, rowHeight: 40, headerHeight: 40,"
              " borderColor: '#e5e7eb', wrapperBorderRadius: 8})")

_NUMBER = {"type": "numericColumn", "width": 92, "minWidth": 80}
COLUMNS = [
    {"field": "status_text", "headerName": "Status", "width": 165, "pinned": "left",
     "cellClassRules": {"kw-cell-offline": "params.data.status == 'offline'",
                        "kw-cell-partial": "params.data.status == 'partial'",
                        "kw-cell-online": "params.data.status == 'online'"},
     "comparator": {"function": "(a, b, nodeA, nodeB) => nodeA.data.rank - nodeB.data.rank"}},
    {"field": "name", "headerName": "Site", "minWidth": 230, "flex": 2,
     "cellClass": "kw-cell-site", "tooltipField": "name"},
    {"field": "company", "headerName": "Company", "minWidth": 130, "flex": 1},
    {"field": "alarms", "headerName": "Active alarms", "width": 150,
     "cellClassRules": {"kw-sev-critical": "params.data.worst == 'critical'",
                        "kw-sev-major": "params.data.worst == 'major'",
                        "kw-sev-minor": "params.data.worst == 'minor'",
                        "kw-sev-warning": "params.data.worst == 'warning'"},
     "comparator": {"function": "(a, b, nodeA, nodeB) => nodeA.data.rank - nodeB.data.rank"}},
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
    {"field": "last_seen", "headerName": "Last seen", "width": 110, "sortable": False},
]


def _keep(site: dict, status_filter: str) -> bool:
    down = site["status"] in ("offline", "partial")
    alarmed = any(site["alarms"].values())
    return {"all": True, "problems": down or alarmed, "offline": down,
            "alarms": alarmed}.get(status_filter, True)


def grid_rows(sites: list[dict], status_filter: str = "all", *,
              now: datetime | None = None) -> list[dict]:
    """Return the grid rows of the fleet overview (already in problems-first order)."""
    rows = []
    for rank, site in enumerate(sites):
        if _keep(site, status_filter):
            row = fleet_row(site, now=now)
            row["rank"] = rank
            row["row_id"] = str(row.pop("id"))  # AG Grid row ids are strings
            rows.append(row)
    return rows


def columns(sites: list[dict]) -> list[dict]:
    """Return the grid's columns, without the company when all sites share one."""
    if len({s["company_name"] for s in sites}) > 1:
        return COLUMNS
    return [c for c in COLUMNS if c.get("field") != "company"]


def summary_cards(sites: list[dict]) -> list:
    """Return the fleet's headline figures: sites, offline, alarms, power now, mean SoC."""
    online = sum(s["status"] == "online" for s in sites)
    down = sum(s["status"] in ("offline", "partial") for s in sites)
    critical = sum(s["alarms"]["critical"] for s in sites)
    alarms = sum(sum(s["alarms"].values()) for s in sites)
    socs = [s["soc"] for s in sites if s["soc"] is not None]
    pv = sum(s["pv_kw"] or 0.0 for s in sites)
    battery = sum(s["battery_kw"] or 0.0 for s in sites)
    return [
        kpi("Sites", str(len(sites)), "fleet-kpi-sites", hint=f"{online} online"),
        kpi("Offline", str(down), "fleet-kpi-offline", hint="fully or partly",
            tone="text-danger" if down else ""),
        kpi("Active alarms", str(alarms), "fleet-kpi-alarms", hint=f"{critical} critical",
            tone="text-danger" if critical else ""),
        kpi("PV now", format_kw(pv), "fleet-kpi-pv"),
        kpi("Battery now", format_kw(battery), "fleet-kpi-battery", hint="+ discharging"),
        kpi("Mean SoC", f"{sum(socs) / len(socs):.0f} %" if socs else "—", "fleet-kpi-soc"),
    ]
