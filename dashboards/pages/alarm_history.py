"""Alarm history: filter the user's alarms, see durations in AG Grid, export them as CSV.

Filters: time range, site, device, code, severity, source, state, acknowledged
and minimum duration. Every value from the browser goes through
``alarm_views.history_query``; a site id is checked against the user's scope
(another company's site gives "no update") and every query filters by the
scope in SQL. ``?site=ID&severity=critical&days=7`` preselects filters.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html

from auth.callbacks import ALL_ROLES, connection, current_scope, guarded_callback
from auth.callbacks import guarded_clientside_callback as clientside
from dashboards.components.alarms import views as alarm_views
from kilowatch import fleet
from kilowatch.alarms import events as alarms
from kilowatch.alarms.events import SEVERITIES, SOURCES, AlarmError
from kilowatch.ids import parse_id
from kilowatch.telemetry import history

dash.register_page(__name__, path="/alarm-history", name="Alarm history",
                   title="Alarm history · Kilowatch", roles=ALL_ROLES)

FILTERS = ("start_date", "end_date", "site", "device", "code", "severities", "sources", "state",
           "acknowledged", "min_minutes")
ALL_DEVICES = [{"label": "All devices", "value": ""}]
_INPUTS = [("alarm-history-range", "start_date"), ("alarm-history-range", "end_date"),
           ("alarm-history-site", "value"), ("alarm-history-device", "value"),
           ("alarm-history-code", "value"), ("alarm-history-severity", "value"),
           ("alarm-history-source", "value"), ("alarm-history-state", "value"),
           ("alarm-history-ack", "value"), ("alarm-history-min", "value")]


def _segmented(element_id: str, choices: dict[str, str]) -> dbc.RadioItems:
    return dbc.RadioItems(
        id=element_id, value="any", inline=True,
        options=[{"label": label, "value": key} for key, label in choices.items()],
        className="btn-group kw-segmented", inputClassName="btn-check",
        labelClassName="btn btn-sm btn-outline-primary", labelCheckedClassName="active")


def _filters(options: dict, site: int | None, severity: list[str], days: int) -> dbc.Card:
    today = datetime.now(UTC).date()
    sites = [{"label": "All sites", "value": ""}, *(
        {"label": f"{s['name']} ({s['company_name']})", "value": str(s["id"])}
        for s in options["sites"])]
    codes = [{"label": "All codes", "value": ""}, *(
        {"label": c["code"], "value": c["code"]} for c in options["codes"])]
    return dbc.Card(dbc.CardBody([
        dbc.Row(className="g-2 align-items-end", children=[
            dbc.Col([dbc.Label("Raised or active between (UTC dates)", className="small mb-1"),
                     dcc.DatePickerRange(id="alarm-history-range",
                                         start_date=today - timedelta(days=days - 1),
                                         end_date=today, display_format="YYYY-MM-DD",
                                         minimum_nights=0, className="kw-date-range")],
                    xs="auto"),
            dbc.Col([dbc.Label("Site", className="small mb-1"),
                     dbc.Select(id="alarm-history-site", options=sites,
                                value="" if site is None else str(site))], md=3),
            dbc.Col([dbc.Label("Device", className="small mb-1"),
                     dbc.Select(id="alarm-history-device", options=ALL_DEVICES, value="")],
                    md=2),
            dbc.Col([dbc.Label("Code", className="small mb-1"),
                     dbc.Select(id="alarm-history-code", options=codes, value="")], md=2),
        ]),
        dbc.Row(className="g-3 align-items-end mt-1", children=[
            dbc.Col([dbc.Label("Severity", className="small mb-1 d-block"),
                     dbc.Checklist(id="alarm-history-severity", inline=True, value=severity,
                                   options=[{"label": s.title(), "value": s}
                                            for s in SEVERITIES])], xs="auto"),
            dbc.Col([dbc.Label("Source", className="small mb-1 d-block"),
                     dbc.Checklist(id="alarm-history-source", inline=True, value=[],
                                   options=[{"label": alarm_views.SOURCE_LABELS[s], "value": s}
                                            for s in SOURCES])], xs="auto"),
            dbc.Col([dbc.Label("State", className="small mb-1 d-block"),
                     _segmented("alarm-history-state", alarm_views.STATE_CHOICES)], xs="auto"),
            dbc.Col([dbc.Label("Acknowledged", className="small mb-1 d-block"),
                     _segmented("alarm-history-ack", alarm_views.ACK_CHOICES)], xs="auto"),
            dbc.Col([dbc.Label("Lasting at least (min)", className="small mb-1"),
                     dbc.Input(id="alarm-history-min", type="number", min=0, step=1,
                               debounce=True, size="sm")], xs=6, md=2),
        ]),
    ]), className="kw-card mb-3")


def _int_arg(value: str | None, default: int | None, high: int) -> int | None:
    number = parse_id(value)
    return number if number is not None and number <= high else default


def layout(site: str | None = None, severity: str | None = None, days: str | None = None,
           **_query) -> html.Div:
    """Show the history filters and the (initially last week's) alarms of the user's sites."""
    with connection() as conn:
        options = alarms.history_options(conn, current_scope())
    site_id = _int_arg(site, None, 2**31 - 1)
    if site_id not in {s["id"] for s in options["sites"]}:
        site_id = None
    severities = [severity] if severity in SEVERITIES else []
    return html.Div([
        html.Div(className="d-flex flex-wrap align-items-center gap-3 mb-3", children=[
            html.H1("Alarm history", className="h4 mb-0"),
            html.Span(id="alarm-history-count", className="text-muted"),
            html.Div(className="ms-auto d-flex gap-2", children=[
                dcc.Link("Active alarms", href="/alarms",
                         className="btn btn-sm btn-outline-secondary"),
                dbc.Button("Export CSV", id="alarm-history-export", size="sm",
                           color="primary", outline=True),
                dcc.Download(id="alarm-history-download")]),
        ]),
        _filters(options, site_id, severities, _int_arg(days, 7, 3660)),
        dbc.Alert(id="alarm-history-error", color="warning", is_open=False),
        dag.AgGrid(
            id="alarm-history-grid", rowData=[], columnDefs=alarm_views.HISTORY_COLUMNS,
            defaultColDef={"sortable": True, "resizable": True,
                           "suppressHeaderMenuButton": True},
            getRowId="params.data.row_id", className="kw-grid",
            dashGridOptions=alarm_views.grid_options(100),
            style={"height": "65vh", "width": "100%"}),
        dcc.Location(id="alarm-history-go", refresh="callback-nav"),
    ])


def _search(values: tuple) -> list[dict]:
    """Read the alarms matching the filter values (AlarmError for bad values)."""
    query = alarm_views.history_query(**dict(zip(FILTERS, values, strict=True)))
    with connection() as conn:
        scope = current_scope()
        if query.site_id is not None:
            fleet.get_site(conn, scope, query.site_id)  # AccessDenied → no update
        if query.device_id is not None:
            history.get_device(conn, scope, query.device_id)
        return [alarm_views.alarm_row(a) for a in alarms.search_alarms(conn, scope, query)]


@guarded_callback(Output("alarm-history-grid", "rowData"),
                  Output("alarm-history-count", "children"),
                  Output("alarm-history-error", "children"),
                  Output("alarm-history-error", "is_open"),
                  *[Input(element, prop) for element, prop in _INPUTS], roles=ALL_ROLES)
def search(*values):
    """Show the alarms matching the filters."""
    try:
        rows = _search(values)
    except AlarmError as error:
        return [], "", str(error), True
    limit = alarms.HistoryQuery().limit
    count = f"{len(rows)} alarms" + (" (the newest only: narrow the filters)"
                                     if len(rows) >= limit else "")
    return rows, count, "", False


@guarded_callback(Output("alarm-history-download", "data"),
                  Input("alarm-history-export", "n_clicks"),
                  *[State(element, prop) for element, prop in _INPUTS],
                  prevent_initial_call=True, roles=ALL_ROLES)
def export(_clicks, *values):
    """Send the alarms matching the filters as a CSV file."""
    try:
        rows = _search(values)
    except AlarmError:
        raise dash.exceptions.PreventUpdate from None
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return dcc.send_string(alarm_views.history_csv(rows), f"alarms-{stamp}.csv",
                           type="text/csv")


@guarded_callback(Output("alarm-history-device", "options"),
                  Output("alarm-history-device", "value"),
                  Input("alarm-history-site", "value"), roles=ALL_ROLES)
def devices_of_site(site_id):
    """Offer the devices of the chosen site (none until a site is chosen)."""
    if site_id in (None, ""):
        return ALL_DEVICES, ""
    site_id = parse_id(site_id)
    if site_id is None:
        raise dash.exceptions.PreventUpdate
    with connection() as conn:
        devices = fleet.list_devices(conn, current_scope(),
                                     fleet.get_site(conn, current_scope(), site_id)["id"])
    return ALL_DEVICES + [{"label": d["serial"], "value": str(d["id"])} for d in devices], ""


clientside(
    "(cell) => cell && cell.rowId ? '/alarms/' + cell.rowId : window.dash_clientside.no_update",
    Output("alarm-history-go", "pathname"), Input("alarm-history-grid", "cellClicked"),
    prevent_initial_call=True)
