"""Savings of every site for one month (administrators and platform staff).

Shows the stored bills (the worker computes them every few minutes); a site
whose month is not computed yet or that has no tariff says so.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, dcc, html

from auth.callbacks import connection, current_scope, guarded_callback
from dashboards.components.billing import savings_cards as cards
from dashboards.components.billing import savings_charts as charts
from kilowatch.billing import views as savings_views

ROLES = ("admin", "support", "superadmin")

dash.register_page(__name__, path="/savings", name="Savings", title="Savings · Kilowatch",
                   roles=ROLES, menu="main", order=40)


def layout(month=None, **_query) -> html.Div:
    """Show the month picker, the fleet's savings chart and the per-site table."""
    months = savings_views.recent_months()
    chosen = month if month in months else months[0]
    return html.Div([
        html.Div(className="d-flex flex-wrap justify-content-between align-items-center mb-3",
                 children=[
            html.H1("Savings by site", className="h4 mb-0"),
            html.Div(className="d-flex align-items-center gap-2", children=[
                dbc.Label("Month", html_for="fleet-savings-month",
                          className="mb-0 small text-muted"),
                dbc.Select(id="fleet-savings-month", value=chosen, size="sm",
                           style={"width": "9rem"},
                           options=[{"label": m, "value": m} for m in months])]),
        ]),
        html.Div(id="fleet-savings-totals", className="mb-2"),
        dbc.Card(dbc.CardBody(dcc.Loading(dcc.Graph(id="fleet-savings-graph",
                                                    config={"displaylogo": False}),
                                          color="#0f766e")), className="mb-3 shadow-sm"),
        dbc.Card(dbc.CardBody(html.Div(id="fleet-savings-table-slot")), className="shadow-sm"),
    ])


@guarded_callback(Output("fleet-savings-graph", "figure"),
                  Output("fleet-savings-table-slot", "children"),
                  Output("fleet-savings-totals", "children"),
                  Input("fleet-savings-month", "value"), roles=ROLES)
def show_fleet_month(month):
    """Show every visible site's bills and savings of the chosen month."""
    try:
        with connection(read_only=True) as conn:  # stored bills only
            rows = savings_views.fleet_month(conn, current_scope(), str(month))
    except ValueError as error:
        message = dbc.Alert(str(error), color="warning", id="fleet-savings-error")
        return charts.empty_figure("Choose a month."), message, None
    return (charts.fleet_savings_figure(rows), cards.fleet_table(rows, str(month)),
            cards.fleet_totals(rows))

