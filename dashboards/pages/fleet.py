"""Fleet overview, the landing page: every visible site with its status, live power and energy.

The grid loads its rows a window at a time from the server (AG Grid's infinite
row model): sorting, filtering, the search box and the status view all run in
SQL, so the browser never holds the whole fleet. Problems come first (offline,
partly offline, then by active alarms by severity). A click on a row opens the site.
"""

from __future__ import annotations

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html

from auth.callbacks import ALL_ROLES, connection, current_scope, guarded_callback
from auth.callbacks import guarded_clientside_callback as clientside
from auth.scope import app_settings
from dashboards.components.telemetry import fleet_table
from kilowatch.redis_client import get_redis
from kilowatch.telemetry import fleet_grid

dash.register_page(__name__, path="/", name="Fleet", title="Fleet · Kilowatch",
                   roles=ALL_ROLES, menu="main", order=0)

REFRESH_MS = 30_000


def _read_summary() -> dict:
    with connection() as conn:
        return fleet_grid.fleet_summary(conn, get_redis(app_settings()), current_scope())


def layout(**_query) -> html.Div:
    """Show the fleet: headline figures, search and views, and the grid of sites."""
    summary = _read_summary()
    if not summary["sites"]:
        return html.Div([html.H1("Fleet", className="h4 mb-3"),
                         dbc.Alert("No site is shared with you yet. Ask your administrator.",
                                   color="info", id="fleet-no-sites")])
    return html.Div([
        html.Div(className="d-flex align-items-baseline gap-3 mb-3", children=[
            html.H1("Fleet", className="h4 mb-0"),
            html.Small("Problems first · refreshed every 30 s", className="text-muted")]),
        dbc.Row(fleet_table.summary_cards(summary), id="fleet-kpis", className="g-3 mb-3"),
        dbc.Row(className="g-2 mb-2 align-items-center", children=[
            dbc.Col(dbc.Input(id="fleet-search", type="search", debounce=300, maxLength=200,
                              placeholder="Search sites and companies…"), xs=12, md=5),
            dbc.Col(dbc.RadioItems(
                id="fleet-filter", value="all", inline=True,
                options=[{"label": label, "value": value}
                         for value, label in fleet_table.VIEWS.items()],
                className="btn-group kw-segmented", inputClassName="btn-check",
                labelClassName="btn btn-sm btn-outline-primary",
                labelCheckedClassName="active"), xs=12, md=7, className="text-md-end"),
        ]),
        html.Div(id="fleet-problem", className="text-danger small mb-2"),
        dag.AgGrid(
            id="fleet-grid", rowModelType="infinite",
            columnDefs=fleet_table.columns(companies=summary["companies"]),
            defaultColDef={"sortable": True, "resizable": True, "filter": False},
            getRowId="params.data.row_id", className="kw-grid",
            dashGridOptions={"theme": {"function": fleet_table.GRID_THEME}, "animateRows": False,
                             "tooltipShowDelay": 300,
                             "cacheBlockSize": fleet_table.BLOCK_ROWS,
                             "maxBlocksInCache": 20, "maxConcurrentDatasourceRequests": 1,
                             "infiniteInitialRowCount": min(summary["sites"], 1)},
            style={"height": fleet_table.grid_height(summary["sites"]), "width": "100%"}),
        dcc.Interval(id="fleet-refresh", interval=REFRESH_MS),
        dcc.Store(id="fleet-reload"),
        dcc.Location(id="fleet-go", refresh="callback-nav"),
    ])


@guarded_callback(Output("fleet-grid", "getRowsResponse"), Output("fleet-problem", "children"),
                  Input("fleet-grid", "getRowsRequest"), State("fleet-search", "value"),
                  State("fleet-filter", "value"), prevent_initial_call=True, roles=ALL_ROLES)
def load_rows(request, search, view):
    """Send the window of sites the grid asks for, sorted and filtered in the user's scope."""
    try:
        query = fleet_grid.parse_request(request, search=search, view=view)
    except fleet_grid.FleetQueryError as error:
        return {"rowData": [], "rowCount": 0}, f"The grid could not load: {error}."
    with connection() as conn:
        window = fleet_grid.fleet_window(conn, get_redis(app_settings()), current_scope(),
                                         query)
    return {"rowData": fleet_table.grid_rows(window.rows), "rowCount": window.total}, ""


@guarded_callback(Output("fleet-kpis", "children"), Input("fleet-refresh", "n_intervals"),
                  prevent_initial_call=True, roles=ALL_ROLES)
def refresh_summary(_tick):
    """Recount the headline figures over the user's whole scope."""
    return fleet_table.summary_cards(_read_summary())


# A new search or view asks the grid for its rows again from the top; the timer refreshes
# the rows in place. Either way the rows come through load_rows.
clientside(
    """(search, view, tick) => {
        let grid = null;
        try { grid = dash_ag_grid.getApi('fleet-grid'); } catch (notYet) { /* not drawn */ }
        if (grid && window.dash_clientside.callback_context.triggered_id === 'fleet-refresh') {
            grid.refreshInfiniteCache();
        } else if (grid) {
            grid.purgeInfiniteCache();
            grid.ensureIndexVisible(0, 'top');
        }
        return window.dash_clientside.no_update;
    }""",
    Output("fleet-reload", "data"), Input("fleet-search", "value"),
    Input("fleet-filter", "value"), Input("fleet-refresh", "n_intervals"),
    prevent_initial_call=True)

clientside(
    "(cell) => cell && cell.rowId ? '/site/' + cell.rowId : window.dash_clientside.no_update",
    Output("fleet-go", "pathname"), Input("fleet-grid", "cellClicked"),
    prevent_initial_call=True)
