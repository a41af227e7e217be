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
from dashboards.components.telemetry import fleet_table
from kilowatch.redis_client import get_redis
from kilowatch.telemetry import overview

dash.register_page(__name__, path="/", name="Fleet", title="Fleet · Kilowatch",
                   roles=ALL_ROLES, menu="main", order=0)

REFRESH_MS = 30_000


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
        dbc.Row(fleet_table.summary_cards(sites), id="fleet-kpis", className="g-3 mb-3"),
        dbc.Row(className="g-2 mb-2 align-items-center", children=[
            dbc.Col(dbc.Input(id="fleet-search", type="search", debounce=False,
                              placeholder="Search sites, companies, alarms…"), xs=12, md=5),
            dbc.Col(dbc.RadioItems(
                id="fleet-filter", value="all", inline=True,
                options=[{"label": label, "value": value}
                         for value, label in fleet_table.FILTERS.items()],
                className="btn-group kw-segmented", inputClassName="btn-check",
                labelClassName="btn btn-sm btn-outline-primary",
                labelCheckedClassName="active"), xs=12, md=7, className="text-md-end"),
        ]),
        dag.AgGrid(
            id="fleet-grid", rowData=fleet_table.grid_rows(sites, now=now),
            columnDefs=fleet_table.columns(sites),
            defaultColDef={"sortable": True, "resizable": True, "filter": False,
                           "suppressHeaderMenuButton": True},
            getRowId="params.data.row_id", className="kw-grid",
            dashGridOptions={"theme": {"function": fleet_table.GRID_THEME}, "animateRows": False,
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
    if not isinstance(status_filter, str) or status_filter not in fleet_table.FILTERS:
        status_filter = "all"
    return fleet_table.grid_rows(sites, status_filter), fleet_table.summary_cards(sites)


clientside(
    "(text, options) => Object.assign({}, options, {quickFilterText: text || ''})",
    Output("fleet-grid", "dashGridOptions"), Input("fleet-search", "value"),
    State("fleet-grid", "dashGridOptions"), prevent_initial_call=True)

clientside(
    "(cell) => cell && cell.rowId ? '/site/' + cell.rowId : window.dash_clientside.no_update",
    Output("fleet-go", "pathname"), Input("fleet-grid", "cellClicked"),
    prevent_initial_call=True)
