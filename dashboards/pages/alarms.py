"""Active alarms across the user's sites, most severe and newest first; a click opens one."""

from __future__ import annotations

import dash
import dash_ag_grid as dag
from dash import Input, Output, dcc, html

from auth.callbacks import ALL_ROLES, connection, current_scope, guarded_callback
from auth.callbacks import guarded_clientside_callback as clientside
from dashboards.components.alarms import badges as alarm_badges
from dashboards.components.alarms import views as alarm_views
from kilowatch.alarms import events as alarms

dash.register_page(__name__, path="/alarms", name="Alarms", title="Alarms · Kilowatch",
                   roles=ALL_ROLES, menu="main", order=10)

REFRESH_MS = 30_000


def _read() -> tuple[list[dict], dict[str, int]]:
    with connection() as conn:
        scope = current_scope()
        return ([alarm_views.alarm_row(a) for a in alarms.active_alarms(conn, scope)],
                alarms.severity_counts(conn, scope))


def layout(**_query) -> html.Div:
    """Show the active alarms of the user's sites."""
    rows, counts = _read()
    return html.Div([
        html.Div(className="d-flex flex-wrap align-items-center gap-3 mb-3", children=[
            html.H1("Active alarms", className="h4 mb-0"),
            html.Div(alarm_views.severity_counts(counts, "alarms-count"), id="alarms-counts"),
            html.Div(className="ms-auto d-flex gap-2", children=[
                dcc.Link("History", href="/alarm-history", id="alarms-history-link",
                         className="btn btn-sm btn-outline-primary"),
                dcc.Link("Notification settings", href="/account/notifications",
                         className="btn btn-sm btn-outline-secondary")]),
        ]),
        dag.AgGrid(
            id="alarms-grid", rowData=rows, columnDefs=alarm_views.ACTIVE_COLUMNS,
            defaultColDef={"sortable": True, "resizable": True,
                           "suppressHeaderMenuButton": True},
            getRowId="params.data.row_id", className="kw-grid",
            dashGridOptions=alarm_views.grid_options(len(rows)),
            style={"height": None if len(rows) <= 20 else "70vh", "width": "100%"}),
        html.Small("Times are each site's local time. Refreshed every 30 s.",
                   className="text-muted"),
        dcc.Interval(id="alarms-refresh", interval=REFRESH_MS),
        dcc.Location(id="alarms-go", refresh="callback-nav"),
    ])


@guarded_callback(Output("alarms-grid", "rowData"), Output("alarms-counts", "children"),
                  Input("alarms-refresh", "n_intervals"), prevent_initial_call=True,
                  roles=ALL_ROLES)
def refresh_alarms(_tick):
    """Reload the active alarms of the user's sites."""
    rows, counts = _read()
    return rows, alarm_views.severity_counts(counts, "alarms-count")


clientside(
    "(cell) => cell && cell.rowId ? '/alarms/' + cell.rowId : window.dash_clientside.no_update",
    Output("alarms-go", "pathname"), Input("alarms-grid", "cellClicked"),
    prevent_initial_call=True)


@guarded_callback(Output("nav-alarms-counts", "children"),
                  Input("nav-alarms-refresh", "n_intervals"), roles=ALL_ROLES)
def refresh_nav_counts(_tick):
    """Count the active alarms of the user's sites by severity, for the navbar."""
    with connection() as conn:
        return alarm_badges.counts_pills(alarms.severity_counts(conn, current_scope()))
