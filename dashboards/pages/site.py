"""Site page: live tiles, history, energy, battery health, dispatch plan, equipment, export.

Every callback takes the site id from the page's ``site-id`` store — a value
from the browser — and hands it to a ``kilowatch`` function with the user's
scope, which checks it in SQL: another company's site gives "no update".
Charts are drawn only for the visible tab.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, dcc, html

from auth.callbacks import ALL_ROLES, connection, current_scope, guarded_callback
from auth.callbacks import guarded_clientside_callback as clientside
from auth.scope import app_settings
from dashboards.components import ranges
from dashboards.components.dispatch import cards as dispatch_cards
from dashboards.components.dispatch import charts as dispatch_charts
from dashboards.components.inputs import as_id
from dashboards.components.schedules.history import delivery_summary
from dashboards.components.shell import not_found
from dashboards.components.telemetry import charts
from dashboards.components.telemetry.live import energy_flow_figure, format_kw, soc_gauge_figure
from dashboards.components.telemetry.tiles import ago, local_time, power_tile, status_badge
from kilowatch import fleet
from kilowatch.dispatch import views as dispatch_views
from kilowatch.ids import parse_id
from kilowatch.redis_client import get_redis
from kilowatch.schedules import store as schedule_store
from kilowatch.telemetry import history, overview

dash.register_page(__name__, path_template="/site/<site_id>", name="Site",
                   title="Site · Kilowatch", roles=ALL_ROLES)

LIVE_MS = 5_000
EXPORT_POINTS = ("meter.grid.p", "meter.pv.p", "meter.load.p", "pcs.p", "bms.soc",
                 "bms.t_min", "bms.t_max", "meter.grid.e_import", "meter.grid.e_export",
                 "meter.pv.e", "meter.load.e", "pcs.e_charge", "pcs.e_discharge")
EXPORT_RESOLUTIONS = {"raw": "Raw samples", "1m": "1 minute", "15m": "15 minutes",
                      "1h": "1 hour", "1d": "1 day"}
TABS = {"power": "Power", "battery": "Battery", "energy": "Energy", "health": "Health",
        "plan": "Plan", "equipment": "Equipment", "export": "Export"}
ACCURACY_DAYS = 7


# ---- layout ---------------------------------------------------------------------------------

def _card(title: str, body, **kwargs) -> dbc.Card:
    return dbc.Card([dbc.CardHeader(title, className="kw-card-title"), dbc.CardBody(body)],
                    className="h-100 kw-card", **kwargs)


def _live_row() -> dbc.Row:
    return dbc.Row(className="g-3 mb-3", children=[
        dbc.Col(_card("Energy flow", dcc.Graph(id="site-flow", config={"displayModeBar": False},
                                               figure=energy_flow_figure({}))), lg=5),
        dbc.Col(_card("Battery", [
            dcc.Graph(id="site-soc-gauge", config={"displayModeBar": False},
                      figure=soc_gauge_figure(None)),
            dbc.Row(id="site-live-tiles", className="g-2")]), md=6, lg=4),
        dbc.Col(_card("Devices", html.Div(id="site-live-devices")), md=6, lg=3),
    ])


def _range_controls(timezone: str) -> dbc.Row:
    return dbc.Row(className="g-2 align-items-center mb-2", children=[
        *ranges.range_controls("site"),
        dbc.Col(html.Small(id="site-resolution", className="text-muted"), xs="auto"),
        dbc.Col(html.Small(f"Times in {timezone}", className="text-muted"), xs="auto",
                className="ms-auto"),
    ])


def _equipment(devices: list[dict], timezone: str) -> dbc.Table:
    header = html.Thead(html.Tr([html.Th(h) for h in (
        "Model", "Serial", "Rated power", "Capacity", "Firmware", "State", "Last seen")]))
    rows = [html.Tr([
        html.Td(d["model"]), html.Td(d["serial"], className="font-monospace"),
        html.Td(format_kw(d["rated_power_kw"]) if d["rated_power_kw"] else "—"),
        html.Td(f"{d['capacity_kwh']:g} kWh" if d["capacity_kwh"] else "—"),
        html.Td(d["firmware"] or "—"),
        html.Td(status_badge("online" if d["online"] else "offline")),
        html.Td(local_time(d["last_seen"], timezone)),
    ]) for d in devices]
    if not rows:
        rows = [html.Tr(html.Td("No device registered yet.", colSpan=7,
                                className="text-muted"))]
    return dbc.Table([header, html.Tbody(rows)], id="site-equipment", hover=True,
                     responsive=True, className="mb-0 align-middle")


def _export_form(points: list[dict], timezone: str) -> html.Div:
    available = [p for p in points if p["name"] in EXPORT_POINTS] or points[:12]
    options = [{"label": f"{p['name']} ({p['unit']})" if p["unit"] else p["name"],
                "value": p["name"]} for p in available]
    chosen = [o["value"] for o in options if o["value"] in EXPORT_POINTS[:5]]
    return html.Div([
        html.P(["The range is the one picked above; times are local to the site (",
                timezone, "), each column names its device, point and unit."],
               className="text-muted small"),
        dbc.Label("Points", html_for="site-export-points"),
        dbc.Checklist(id="site-export-points", options=options, value=chosen, inline=True,
                      className="mb-3 kw-checklist"),
        dbc.Label("Resolution", html_for="site-export-resolution"),
        dbc.RadioItems(id="site-export-resolution", value="1h", inline=True, className="mb-3",
                       options=[{"label": v, "value": k} for k, v in EXPORT_RESOLUTIONS.items()]),
        html.Div(className="d-flex gap-2", children=[
            html.A("Download CSV", id="site-export-csv", className="btn btn-primary",
                   href="#", download=""),
            html.A("Download XLSX", id="site-export-xlsx", className="btn btn-outline-primary",
                   href="#", download=""),
        ]),
    ])


def _graph(element_id: str, height: int) -> dcc.Loading:
    return dcc.Loading(dcc.Graph(id=element_id, config={"displaylogo": False},
                                 figure=charts.empty_figure("Loading…", height=height),
                                 style={"minHeight": f"{height}px"}),
                       type="dot", color="#0f766e", delay_show=400)


def _plan_tab() -> html.Div:
    return html.Div([
        html.Div(id="site-plan-summary"),
        _graph("site-plan-graph", dispatch_charts.PLAN_HEIGHT),
        html.H2(f"Forecast accuracy, last {ACCURACY_DAYS} days", className="h6 mt-3"),
        html.Small("Each day against the newest forecast made by its midnight. MAE: mean "
                   "absolute error of the 15-minute averages; nMAE: MAE over the mean "
                   "measured power.", className="text-muted d-block mb-2"),
        _graph("site-accuracy-graph", dispatch_charts.ACCURACY_HEIGHT),
        html.Div(id="site-accuracy-days"),
    ])


def _tabs(site: dict, devices: list[dict], points: list[dict], planned: bool) -> dbc.Tabs:
    contents = {
        "power": _graph("site-power-graph", 320),
        "battery": _graph("site-battery-graph", 380),
        "energy": html.Div([dbc.Row(id="site-energy-ratios", className="g-3 mb-2"),
                            _graph("site-energy-graph", 340),
                            _graph("site-energy-months-graph", 300)]),
        "health": _graph("site-health-graph", 520),
        "plan": _plan_tab() if planned else None,
        "equipment": _equipment(devices, site["timezone"]),
        "export": _export_form(points, site["timezone"]),
    }
    return dbc.Tabs(id="site-tabs", active_tab="power", className="mb-3 kw-tabs", children=[
        dbc.Tab(html.Div(body, className="pt-3"), label=TABS[key], tab_id=key)
        for key, body in contents.items() if body is not None])


def layout(site_id: str | None = None, **_query) -> html.Div:
    """Show one site the user may see (the shell shows "not allowed" otherwise)."""
    number = parse_id(site_id)
    if number is None:
        return not_found()
    scope = current_scope()
    with connection() as conn:
        site = fleet.get_site(conn, scope, number)
        devices = fleet.list_devices(conn, scope, site["id"])
        points = history.site_points(conn, scope, site["id"])
        delivery = schedule_store.delivery_state(conn, scope, site["id"])
        # The plan tab: sites offered the optimiser, and any site planned before.
        planned = site["has_optimizer"] or any(
            dispatch_views.newest_plans(conn, scope, site["id"]))
    schedule_text, schedule_color = delivery_summary(delivery, site["timezone"])
    subtitle = " · ".join(filter(None, [site["company_name"], site["address"], site["timezone"]]))
    return html.Div([
        dcc.Store(id="site-id", data=site["id"]),
        html.Div(className="d-flex flex-wrap align-items-center gap-2 mb-3", children=[
            dcc.Link("← Fleet", href="/", className="btn btn-sm btn-light"),
            html.H1(site["name"], className="h4 mb-0", id="site-name"),
            html.Span(id="site-status"),
            # Whether the equipment runs the latest schedule, as of this page's load.
            dbc.Badge(schedule_text, color=schedule_color, id="site-schedule-state",
                      className="ms-auto text-wrap"),
            dcc.Link("Schedule", href=f"/site/{site['id']}/schedule", id="site-schedule-link",
                     className="btn btn-sm btn-outline-primary"),
            dcc.Link("Savings", href=f"/site/{site['id']}/savings", id="site-savings-link",
                     className="btn btn-sm btn-outline-primary"),
            dcc.Link("Commissioning", href=f"/site/{site['id']}/commissioning",
                     id="site-commissioning-link", className="btn btn-sm btn-outline-primary"),
            html.Small(subtitle, className="text-muted w-100"),
        ]),
        _live_row(),
        html.Small(id="site-live-updated", className="text-muted d-block mb-3"),
        _range_controls(site["timezone"]),
        _tabs(site, devices, points, planned),
        dcc.Interval(id="site-live-interval", interval=LIVE_MS),
    ])


# ---- callbacks ------------------------------------------------------------------------------

def _devices_list(live: dict, timezone: str) -> html.Div:
    if not live["devices"]:
        return html.Div("No device registered yet.", className="text-muted")
    return html.Div([html.Div(className="kw-device-row", children=[
        html.Div([html.Span(d["serial"], className="fw-semibold me-2"),
                  html.Small(d["model"], className="text-muted")]),
        html.Div([status_badge("online" if d["online"] else "offline",
                               element_id=f"site-device-state-{d['id']}"),
                  html.Small(f" last seen {ago(d['last_seen'])}", className="text-muted",
                             title=local_time(d["last_seen"], timezone))]),
    ]) for d in live["devices"]])


def _tiles(live: dict) -> list:
    return [
        power_tile("Battery", live["battery_kw"], "site-tile-battery", positive="Discharging",
                   negative="Charging"),
        power_tile("Grid", live["grid_kw"], "site-tile-grid", positive="Importing",
                   negative="Exporting"),
        power_tile("PV", live["pv_kw"], "site-tile-pv", positive="Producing"),
        power_tile("Load", live["load_kw"], "site-tile-load", positive="Consuming"),
    ]


@guarded_callback(Output("site-flow", "figure"), Output("site-soc-gauge", "figure"),
                  Output("site-live-tiles", "children"), Output("site-live-devices", "children"),
                  Output("site-status", "children"), Output("site-live-updated", "children"),
                  Input("site-live-interval", "n_intervals"), Input("site-id", "data"),
                  roles=ALL_ROLES)
def update_live(_tick, site_id):
    """Refresh the live tiles from the devices' latest values in Redis."""
    with connection() as conn:
        site = fleet.get_site(conn, current_scope(), as_id(site_id))
        live = overview.site_live(conn, get_redis(app_settings()), current_scope(), site["id"])
    updated = f"Live · last data {local_time(live['last_seen'], site['timezone'])}"
    return (energy_flow_figure(live), soc_gauge_figure(live["soc"]), _tiles(live),
            _devices_list(live, site["timezone"]), status_badge(live["status"]), updated)


def _chart(site_id, key, start, end, points, build, *, height: int):
    """Read a site's history over the picked range and draw it; errors become a message."""
    with connection() as conn:
        site = fleet.get_site(conn, current_scope(), as_id(site_id))
        try:
            lo, hi = ranges.picked_range(key, site["timezone"], start, end)
            resolution = history.choose_resolution(lo, hi)  # of the whole range, e.g. a day
            full_end, hi = hi, min(hi, datetime.now(UTC))
            if hi <= lo:
                raise history.HistoryError("Nothing to show yet: this range has not begun")
            data = history.site_history(conn, current_scope(), site["id"], points, lo, hi,
                                        resolution=resolution)
        except history.HistoryError as error:
            return charts.empty_figure(str(error), height=height), str(error)
    figure = build(data)
    if any(series.times for series in data.series.values()):
        charts.show_range(figure, lo, full_end, site["timezone"])
    return figure, f"Resolution: {data.resolution.label}"


_RANGE_INPUTS = (Input("site-id", "data"), Input("site-tabs", "active_tab"),
                 *ranges.range_inputs("site"))


@guarded_callback(Output("site-power-graph", "figure"), Output("site-resolution", "children"),
                  *_RANGE_INPUTS, roles=ALL_ROLES)
def update_power(site_id, tab, key, start, end):
    """Draw the power flows over the picked range."""
    if tab != "power":
        raise dash.exceptions.PreventUpdate
    return _chart(site_id, key, start, end, charts.POWER_POINTS, charts.power_figure,
                  height=320)


@guarded_callback(Output("site-battery-graph", "figure"),
                  Output("site-resolution", "children", allow_duplicate=True),
                  *_RANGE_INPUTS, roles=ALL_ROLES, prevent_initial_call="initial_duplicate")
def update_battery(site_id, tab, key, start, end):
    """Draw state of charge and cell temperatures over the picked range."""
    if tab != "battery":
        raise dash.exceptions.PreventUpdate
    return _chart(site_id, key, start, end, charts.SOC_POINTS, charts.soc_temperature_figure,
                  height=380)


@guarded_callback(Output("site-health-graph", "figure"),
                  Output("site-resolution", "children", allow_duplicate=True),
                  *_RANGE_INPUTS, roles=ALL_ROLES, prevent_initial_call="initial_duplicate")
def update_health(site_id, tab, key, start, end):
    """Draw state of health, cell voltage spread and temperature extremes."""
    if tab != "health":
        raise dash.exceptions.PreventUpdate
    return _chart(site_id, key, start, end, charts.HEALTH_POINTS, charts.health_figure,
                  height=520)


@guarded_callback(Output("site-plan-graph", "figure"), Output("site-plan-summary", "children"),
                  Input("site-id", "data"), Input("site-tabs", "active_tab"), roles=ALL_ROLES)
def update_plan(site_id, tab):
    """Draw the newest dispatch plan against what happened, with its savings and why."""
    if tab != "plan":
        raise dash.exceptions.PreventUpdate
    with connection() as conn:
        view = dispatch_views.plan_view(conn, current_scope(), as_id(site_id))
    return dispatch_charts.plan_figure(view), dispatch_cards.plan_summary(view)


@guarded_callback(Output("site-accuracy-graph", "figure"),
                  Output("site-accuracy-days", "children"), Input("site-id", "data"),
                  Input("site-tabs", "active_tab"), roles=ALL_ROLES)
def update_accuracy(site_id, tab):
    """Draw the last days' load and PV forecasts against the meters, with MAE per day."""
    if tab != "plan":
        raise dash.exceptions.PreventUpdate
    with connection() as conn:
        accuracy = dispatch_views.forecast_accuracy(conn, current_scope(), as_id(site_id),
                                                    days=ACCURACY_DAYS)
    return (dispatch_charts.accuracy_figure(accuracy),
            dispatch_cards.accuracy_table(accuracy))


def _figure_card(label: str, value: str, hint: str, element_id: str) -> dbc.Col:
    return dbc.Col(html.Div(className="kw-tile", children=[
        html.Div(label, className="kw-kpi-label"),
        html.Div(value, className="kw-tile-value", id=element_id),
        html.Div(hint, className="kw-kpi-hint")]), xs=6, md=3)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


def _kwh(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} kWh"


def energy_cards(totals: dict) -> list:
    """Return the range's self-consumption and self-sufficiency, PV and consumption."""
    ratios = history.energy_ratios(totals)
    return [
        _figure_card("Self-consumption", _percent(ratios["self_consumption"]),
                     "of PV used on site", "site-ratio-consumption"),
        _figure_card("Self-sufficiency", _percent(ratios["self_sufficiency"]),
                     "of load not from the grid", "site-ratio-sufficiency"),
        _figure_card("PV production", _kwh(totals.get("pv")), "over the range",
                     "site-total-pv"),
        _figure_card("Consumption", _kwh(totals.get("load")), "over the range",
                     "site-total-load"),
    ]


@guarded_callback(Output("site-energy-graph", "figure"),
                  Output("site-energy-ratios", "children"), *_RANGE_INPUTS, roles=ALL_ROLES)
def update_energy(site_id, tab, key, start, end):
    """Draw energy bars for the picked range, with its ratios."""
    if tab != "energy":
        raise dash.exceptions.PreventUpdate
    with connection() as conn:
        site = fleet.get_site(conn, current_scope(), as_id(site_id))
        try:
            lo, hi, step = history.energy_window(
                *ranges.picked_range(key, site["timezone"], start, end), site["timezone"])
        except history.HistoryError as error:
            return charts.empty_figure(str(error), height=340), []
        bars = history.energy_bars(conn, current_scope(), site["id"], lo, hi, step)
    totals = {q: bars.total(q) for q in bars.quantities}
    label = {"day": "Daily energy", "month": "Monthly energy"}.get(step, "Hourly energy")
    return charts.energy_figure(bars, title=label), energy_cards(totals)


@guarded_callback(Output("site-energy-months-graph", "figure"), Input("site-id", "data"),
                  Input("site-tabs", "active_tab"), roles=ALL_ROLES)
def update_energy_months(site_id, tab):
    """Draw the last 12 months' energy by month (whatever the picked range)."""
    if tab != "energy":
        raise dash.exceptions.PreventUpdate
    with connection() as conn:
        site = fleet.get_site(conn, current_scope(), as_id(site_id))
        year = history.energy_window(*history.time_range("12m", site["timezone"]),
                                     site["timezone"])
        months = history.energy_bars(conn, current_scope(), site["id"], *year)
    return charts.energy_figure(months, title="Last 12 months", height=300)


ranges.custom_toggle("site")

clientside(
    """(siteId, key, start, end, points, resolution) => {
        if (!siteId || !points || !points.length) { return ['#', '#']; }
        const query = new URLSearchParams({range: key || 'today', points: points.join(','),
                                           resolution: resolution || '1h'});
        if (key === 'custom') { query.set('first', (start || '').slice(0, 10));
                                query.set('last', (end || '').slice(0, 10)); }
        const base = '/export/site/' + encodeURIComponent(siteId);
        return [base + '.csv?' + query, base + '.xlsx?' + query];
    }""",
    Output("site-export-csv", "href"), Output("site-export-xlsx", "href"),
    Input("site-id", "data"), Input("site-range", "value"), Input("site-custom", "start_date"),
    Input("site-custom", "end_date"), Input("site-export-points", "value"),
    Input("site-export-resolution", "value"))
