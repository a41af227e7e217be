"""Fleet overview, the landing page: every visible site with its status, live power and energy.

Problems come first (offline, partly offline, then by active alarms by
severity); the grid sorts by any column, searches as you type (in the
browser) and filters by status (on the server). A click on a row opens the site.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html

from auth.callbacks import ALL_ROLES, connection, current_scope, guarded_callback
from auth.callbacks import guarded_clientside_callback as clientside
from auth.scope import app_settings
from dashboards.components.live import format_kw
from dashboards.components.tiles import fleet_row, kpi
from kilowatch import overview
from kilowatch.redis_client import get_redis

dash.register_page(__name__, path="/", name="Fleet", title="Fleet · Kilowatch",
                   roles=ALL_ROLES, menu="main", order=0)

REFRESH_MS = 30_000
FILTERS = {"all": "All sites", "problems": "Problems", "offline": "Offline", "alarms": "Alarms"}
GRID_THEME = ("themeQuartz.withParams({accentColor: '#0f766e', headerBackgroundColor: '#f8fafc',"
              " fontFamily: 'inherit', fontSize: 13, rowHeight: 40, headerHeight: 40,"
              " borderColor: '#e5e7eb', wrapperBorderRadius: 8})")

_NUMBER = {"type": "numericColumn", "width": 92, "minWidth": 80}
COLUMNS = [
    {"field": "status_text", "headerName": "Status", "width": 180, "pinned": "left",
     "cellClassRules": {"kw-cell-offline": "params.data.status == 'offline'",
                        "kw-cell-partial": "params.data.status == 'partial'",
                        "kw-cell-online": "params.data.status == 'online'"},
     "comparator": {"function": "(a, b, nodeA, nodeB) => nodeA.data.rank - nodeB.data.rank"}},
    {"field": "name", "headerName": "Site", "minWidth": 200, "flex": 2,
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


def _keep(row: dict, status_filter: str) -> bool:
    problem = row["status"] in ("offline", "partial") or row["alarm_count"] > 0
    return {"all": True, "problems": problem, "offline": row["status"] in ("offline", "partial"),
            "alarms": row["alarm_count"] > 0}.get(status_filter, True)


def grid_rows(sites: list[dict], status_filter: str = "all", *,
              now: datetime | None = None) -> list[dict]:
    """Return the grid rows of the fleet overview (already in problems-first order)."""
    rows = []
    for rank, site in enumerate(sites):
        row = fleet_row(site, now=now)
        row["rank"] = rank
        row["row_id"] = str(row["id"])  # AG Grid row ids are strings
        if _keep(row, status_filter):
            rows.append(row)
    return rows


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


def _read_fleet() -> list[dict]:
    with connection() as conn:
        return overview.fleet_overview(conn, get_redis(app_settings()), current_scope())


def layout(**_query) -> html.Div:
    """Show the fleet: headline figures, filters and the sortable grid of sites."""
    sites = _read_fleet()
    if not sites:
        return html.Div([html.H1("Fleet", className="h4 mb-3"),
                         dbc.Alert("No site is shared with you yet. Ask your administrator.",
                                   color="info", id="fleet-no-sites")])
    now = datetime.now(UTC)
    return html.Div([
        html.Div(className="d-flex align-items-baseline gap-3 mb-3", children=[
            html.H1("Fleet", className="h4 mb-0"),
            html.Small("Problems first · refreshed every 30 s", className="text-muted")]),
        dbc.Row(summary_cards(sites), id="fleet-kpis", className="g-3 mb-3"),
        dbc.Row(className="g-2 mb-2 align-items-center", children=[
            dbc.Col(dbc.Input(id="fleet-search", type="search", debounce=False,
                              placeholder="Search sites, companies, alarms…"), xs=12, md=5),
            dbc.Col(dbc.RadioItems(
                id="fleet-filter", value="all", inline=True,
                options=[{"label": label, "value": value} for value, label in FILTERS.items()],
                className="btn-group kw-segmented", inputClassName="btn-check",
                labelClassName="btn btn-sm btn-outline-primary",
                labelCheckedClassName="active"), xs=12, md=7, className="text-md-end"),
        ]),
        dag.AgGrid(
            id="fleet-grid", rowData=grid_rows(sites, now=now), columnDefs=COLUMNS,
            defaultColDef={"sortable": True, "resizable": True, "filter": False,
                           "suppressHeaderMenuButton": True},
            getRowId="params.data.row_id", className="kw-grid",
            dashGridOptions={"theme": {"function": GRID_THEME}, "animateRows": False,
                             "tooltipShowDelay": 300,
                             "domLayout": "autoHeight" if len(sites) <= 25 else "normal"},
            style={"height": None if len(sites) <= 25 else "70vh", "width": "100%"}),
        dcc.Interval(id="fleet-refresh", interval=REFRESH_MS),
        dcc.Location(id="fleet-go", refresh="callback-nav"),
    ])


@guarded_callback(Output("fleet-grid", "rowData"), Output("fleet-kpis", "children"),
                  Input("fleet-refresh", "n_intervals"), Input("fleet-filter", "value"),
                  prevent_initial_call=True, roles=ALL_ROLES)
def refresh_fleet(_tick, status_filter):
    """Reload the sites of the user's scope, filtered by status."""
    sites = _read_fleet()
    return grid_rows(sites, status_filter if status_filter in FILTERS else "all"), \
        summary_cards(sites)


clientside(
    "(text, options) => Object.assign({}, options, {quickFilterText: text || ''})",
    Output("fleet-grid", "dashGridOptions"), Input("fleet-search", "value"),
    State("fleet-grid", "dashGridOptions"), prevent_initial_call=True)

clientside(
    "(cell) => cell && cell.rowId ? '/site/' + cell.rowId : window.dash_clientside.no_update",
    Output("fleet-go", "pathname"), Input("fleet-grid", "cellClicked"),
    prevent_initial_call=True)
