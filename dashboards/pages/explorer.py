"""Point explorer (admins, support): any points of a device over a range, automatic resolution.

The site list comes from the user's scope; every callback re-checks the site or
device id it receives against that scope in SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html

from auth.callbacks import connection, current_scope, guarded_callback
from dashboards.components import ranges
from dashboards.components.inputs import as_id
from dashboards.components.telemetry import charts
from kilowatch import fleet
from kilowatch.ids import parse_id
from kilowatch.telemetry import history

ROLES = ("admin", "support", "superadmin")
MAX_POINTS = 8

dash.register_page(__name__, path="/explorer", name="Point explorer",
                   title="Point explorer · Kilowatch", roles=ROLES, menu="main", order=50)


def layout(site: str | None = None, device: str | None = None, **_query) -> html.Div:
    """Show the pickers (site, device, points, range) and the chart."""
    with connection() as conn:
        sites = fleet.list_sites(conn, current_scope())
    options = [{"label": f"{s['name']} · {s['company_name']}", "value": s["id"]} for s in sites]
    chosen = parse_id(site) or (sites[0]["id"] if sites else None)
    return html.Div([
        html.H1("Point explorer", className="h4 mb-3"),
        dbc.Card(dbc.CardBody(dbc.Row(className="g-3", children=[
            dbc.Col([dbc.Label("Site", html_for="explorer-site"),
                     dcc.Dropdown(id="explorer-site", options=options, value=chosen,
                                  clearable=False)], md=4),
            dbc.Col([dbc.Label("Device", html_for="explorer-device"),
                     dcc.Dropdown(id="explorer-device", clearable=False,
                                  value=parse_id(device))],
                    md=3),
            dbc.Col([dbc.Label("Points", html_for="explorer-points"),
                     dcc.Dropdown(id="explorer-points", multi=True,
                                  placeholder=f"Up to {MAX_POINTS} points")], md=5),
            *ranges.range_controls("explorer"),
            dbc.Col(html.Small(id="explorer-resolution", className="text-muted"), xs="auto",
                    className="align-self-center"),
        ])), className="mb-3 kw-card"),
        dbc.Card(dbc.CardBody(dcc.Loading(dcc.Graph(
            id="explorer-graph", config={"displaylogo": False},
            figure=charts.empty_figure("Pick a device and points", height=440)),
            type="dot", color="#0f766e", delay_show=400)), className="kw-card"),
    ])


@guarded_callback(Output("explorer-device", "options"), Output("explorer-device", "value"),
                  Input("explorer-site", "value"), State("explorer-device", "value"),
                  roles=ROLES)
def list_devices(site_id, chosen):
    """Offer the devices of the chosen site."""
    with connection() as conn:
        site = fleet.get_site(conn, current_scope(), as_id(site_id))
        devices = fleet.list_devices(conn, current_scope(), site["id"])
    options = [{"label": f"{d['serial']} ({d['model']})", "value": d["id"]} for d in devices]
    ids = [d["id"] for d in devices]
    return options, chosen if chosen in ids else (ids[0] if ids else None)


@guarded_callback(Output("explorer-points", "options"), Output("explorer-points", "value"),
                  Input("explorer-device", "value"), roles=ROLES)
def list_points(device_id):
    """Offer the points the chosen device has sent."""
    with connection() as conn:
        device = history.get_device(conn, current_scope(), as_id(device_id))
        points = history.device_points(conn, current_scope(), device["id"])
    options = [{"label": f"{p['name']} ({p['unit']})" if p["unit"] else p["name"],
                "value": p["name"]} for p in points]
    names = [p["name"] for p in points]
    default = [n for n in ("pcs.p", "bms.soc") if n in names] or names[:1]
    return options, default


@guarded_callback(Output("explorer-graph", "figure"), Output("explorer-resolution", "children"),
                  Input("explorer-device", "value"), Input("explorer-points", "value"),
                  *ranges.range_inputs("explorer"), roles=ROLES)
def plot_points(device_id, points, key, start, end):
    """Plot the chosen points of the device over the range."""
    device_id = as_id(device_id)
    points = [p for p in points if isinstance(p, str)] if isinstance(points, list) else []
    points = points[:MAX_POINTS]
    if not points:
        return charts.empty_figure("Pick one or more points", height=440), ""
    with connection() as conn:
        device = history.get_device(conn, current_scope(), device_id)
        try:
            lo, hi = ranges.picked_range(key, device["timezone"], start, end)
            resolution = history.choose_resolution(lo, hi)
            hi = min(hi, datetime.now(UTC))
            if hi <= lo:
                raise history.HistoryError("Nothing to show yet: this range has not begun")
            data = history.device_history(conn, current_scope(), device_id, points, lo, hi,
                                          resolution=resolution)
        except history.HistoryError as error:
            return charts.empty_figure(str(error), height=440), ""
    return (charts.explorer_figure([data], [device["serial"]]),
            f"Resolution: {data.resolution.label} · times in {device['timezone']}")


ranges.custom_toggle("explorer")
