"""A site's utility-bill savings: monthly bills, a month's breakdown, peaks, CSV export.

Three bills per month (see :mod:`kilowatch.billing.savings`): without system, PV only and
actual; the system saves 1 − 3, the storage alone 2 − 3. Choosing a month
computes its bills if they are missing or out of date.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html

from auth.callbacks import ALL_ROLES, connection, current_scope, guarded_callback
from dashboards.components.billing import savings_cards as cards
from dashboards.components.billing import savings_charts as charts
from kilowatch import fleet
from kilowatch.access import AccessDenied
from kilowatch.billing import savings, tariff_store
from kilowatch.billing import views as savings_views
from kilowatch.ids import parse_id

dash.register_page(__name__, path_template="/site/<site_id>/savings", name="Savings",
                   title="Savings · Kilowatch", roles=ALL_ROLES)

GRAPH_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def as_site_id(value) -> int:
    """Return a site id from the URL or the browser, or refuse it as out of scope."""
    site_id = parse_id(value)
    if site_id is None:
        raise AccessDenied(f"not a site id: {str(value)[:40]!r}")
    return site_id


def _card(title, body, *, element_id: str | None = None, extra=None) -> dbc.Card:
    header = dbc.CardHeader(html.Div([html.Span(title, className="fw-semibold"), extra or ""],
                                     className="d-flex justify-content-between "
                                               "align-items-center"))
    props = {"id": element_id} if element_id else {}
    return dbc.Card([header, dbc.CardBody(body)], className="mb-3 shadow-sm", **props)


def _graph(element_id: str, height: int) -> dcc.Loading:
    return dcc.Loading(dcc.Graph(id=element_id, config=GRAPH_CONFIG,
                                 style={"height": f"{height}px"}), type="circle",
                       color="#0f766e")


def _header(site: dict, assignments: list[dict], may_manage: bool) -> html.Div:
    manage = [dcc.Link("Manage tariffs", href=f"/admin/tariffs?site={site['id']}",
                       className="btn btn-outline-primary btn-sm me-2",
                       id="savings-manage-tariffs")] if may_manage else []
    return html.Div(className="d-flex flex-wrap justify-content-between align-items-start mb-3",
                    children=[
        html.Div([
            html.Div([dcc.Link(site["name"], href=f"/site/{site['id']}"), " / Savings"],
                     className="small text-muted"),
            html.H1(f"Savings · {site['name']}", className="h4 mb-1"),
            html.Div(f"{site['company_name']} · {site['timezone']}",
                     className="small text-muted mb-1"),
            cards.assignment_list(assignments),
        ]),
        html.Div([*manage,
                  dbc.Button("Export bills (CSV)", id="savings-export", color="primary",
                             outline=True, size="sm"),
                  dcc.Download(id="savings-download")], className="mt-2"),
    ])


def _month_picker(months: list[str], chosen: str) -> html.Div:
    return html.Div(className="d-flex align-items-center gap-2", children=[
        dbc.Label("Month", html_for="savings-month", className="mb-0 small text-muted"),
        dbc.Select(id="savings-month", value=chosen, size="sm", style={"width": "9rem"},
                   options=[{"label": m, "value": m} for m in months]),
    ])


def _no_tariff(site: dict, may_manage: bool) -> dbc.Alert:
    text = ("No tariff is assigned to this site yet, so there are no bills to compare. ")
    link = [dcc.Link("Assign a tariff", href=f"/admin/tariffs?site={site['id']}")] \
        if may_manage else ["Ask your administrator to assign one."]
    return dbc.Alert([text, *link], color="info", id="savings-no-tariff")


def layout(site_id=None, month=None, **_query) -> html.Div:
    """Show the site's bills and savings (the chosen month is computed on demand)."""
    scope = current_scope()
    site_id = as_site_id(site_id)
    with connection() as conn:
        site = fleet.get_site(conn, scope, site_id)
        months = savings_views.site_months(conn, scope, site_id)
        assigned = tariff_store.assignments(conn, scope, site_id)
    may_manage = scope.may_administer_company(site["company_id"])
    stores = [dcc.Store(id="savings-site", data=site_id), dcc.Store(id="savings-peaks"),
              dcc.Store(id="savings-computed")]
    if not months:
        return html.Div([_header(site, assigned, may_manage), _no_tariff(site, may_manage),
                         *stores])
    chosen = month if month in months else months[0]
    return html.Div([
        _header(site, assigned, may_manage), *stores,
        _card("Monthly bills", _graph("savings-monthly", 340)),
        dbc.Row(className="g-3", children=[
            dbc.Col(lg=8, children=[_card("The month", [
                html.Div(id="savings-quality-slot"),
                html.Div(id="savings-kpis", className="mb-3"),
                html.Div(id="savings-breakdown"),
            ], extra=_month_picker(months, chosen))]),
            dbc.Col(lg=4, children=[_card("Breakdown", _graph("savings-breakdown-graph", 340))]),
        ]),
        dbc.Row(className="g-3", children=[
            dbc.Col(lg=8, children=[_card("Peak day", [
                dbc.RadioItems(id="savings-peak-which", inline=True, value="actual",
                               className="small mb-2",
                               options=[{"label": "Day of the actual peak", "value": "actual"},
                                        {"label": "Day of the peak without system",
                                         "value": "without_system"}]),
                _graph("savings-peak-graph", 320)])]),
            dbc.Col(lg=4, children=[_card("Peak demand", html.Div(id="savings-peak-table"))]),
        ]),
        _card("Cumulative savings", [html.Div(id="savings-cumulative", className="mb-2"),
                                     _graph("savings-cumulative-graph", 260)]),
    ])


@guarded_callback(Output("savings-kpis", "children"), Output("savings-breakdown", "children"),
                  Output("savings-breakdown-graph", "figure"),
                  Output("savings-peak-table", "children"),
                  Output("savings-quality-slot", "children"), Output("savings-peaks", "data"),
                  Output("savings-computed", "data"),
                  Input("savings-month", "value"), State("savings-site", "data"),
                  roles=ALL_ROLES)
def show_month(month, site_id):
    """Show a month's three bills, savings, peaks and data quality (computed if needed)."""
    site_id = as_site_id(site_id)
    try:
        with connection() as conn:
            summary = savings.month_summary(conn, current_scope(), site_id, str(month))
    except (savings.SavingsError, ValueError) as error:
        message = dbc.Alert(str(error), color="info", id="savings-month-error")
        return (message, None, charts.empty_figure("No bills for this month."), None, None,
                None, None)
    return (cards.month_kpis(summary), cards.breakdown_table(summary),
            charts.breakdown_figure(summary), cards.peak_table(summary),
            cards.quality_alert(summary), {"period": summary["period"],
                                           "peaks": cards.peaks(summary)},
            summary["computed_at"])


@guarded_callback(Output("savings-peak-graph", "figure"),
                  Input("savings-peak-which", "value"), Input("savings-peaks", "data"),
                  State("savings-site", "data"), roles=ALL_ROLES)
def show_peak_day(which, found, site_id):
    """Draw the 15-minute grid import and load of the day of the chosen peak."""
    site_id = as_site_id(site_id)
    peaks = (found or {}).get("peaks") if isinstance(found, dict) else None
    if not isinstance(peaks, dict) or not isinstance(which, str) or which not in peaks:
        return charts.empty_figure("No peak to show.")
    try:
        _kw, at = peaks[which]
        with connection() as conn:
            day = savings_views.peak_day(conn, current_scope(), site_id, at)
    except (TypeError, ValueError):
        return charts.empty_figure("No peak to show.")
    clean = {s: tuple(v) for s, v in peaks.items() if isinstance(v, list | tuple) and len(v) == 2}
    return charts.peak_day_figure(day, clean)


@guarded_callback(Output("savings-monthly", "figure"), Output("savings-cumulative", "children"),
                  Output("savings-cumulative-graph", "figure"),
                  Input("savings-computed", "data"), State("savings-site", "data"),
                  roles=ALL_ROLES)
def show_history(_computed, site_id):
    """Draw every stored month's bills and the savings since the first billed month."""
    site_id = as_site_id(site_id)
    scope = current_scope()
    with connection() as conn:
        fleet.get_site(conn, scope, site_id)
        rows = savings.list_bills(conn, scope, site_id=site_id)
    currency = rows[-1]["currency"] if rows else ""
    rows = [row for row in rows if row["currency"] == currency]
    return (charts.monthly_bills_figure(rows, currency), cards.cumulative_card(rows, currency),
            charts.cumulative_figure(rows, currency))


@guarded_callback(Output("savings-download", "data"), Input("savings-export", "n_clicks"),
                  State("savings-site", "data"), roles=ALL_ROLES, prevent_initial_call=True)
def export_bills(clicks, site_id):
    """Send the site's stored bills as a CSV file."""
    site_id = as_site_id(site_id)
    with connection(read_only=True) as conn:  # stored bills only
        text = savings_views.bills_csv(conn, current_scope(), site_id)
    return {"content": text, "filename": f"kilowatch-bills-site-{site_id}.csv",
            "type": "text/csv", "base64": False}

