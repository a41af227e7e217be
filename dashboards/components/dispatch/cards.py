"""Cards of a dispatch plan (what it expects to save and why) and the forecast accuracy table.

Pure functions from :mod:`kilowatch.dispatch.views` data to Dash components.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import dash_bootstrap_components as dbc
from dash import html

from dashboards.components.billing.savings_cards import money
from dashboards.components.telemetry.tiles import local_time
from kilowatch.dispatch.views import ForecastAccuracy, PlanView

NO_PLAN = ("No dispatch plan for this site yet. Plans are made every 15 minutes for sites "
           "offered the optimiser whose schedule puts the optimized mode in force.")


def _tile(label: str, value: str, hint: str, element_id: str) -> dbc.Col:
    return dbc.Col(html.Div(className="kw-tile", children=[
        html.Div(label, className="kw-kpi-label"),
        html.Div(value, className="kw-tile-value", id=element_id),
        html.Div(hint, className="kw-kpi-hint")]), xs=6, md=4)


def _failure(view: PlanView) -> list:
    if view.failure is None:
        return []
    made = local_time(view.failure["made_at"], view.timezone, now=view.now)
    return [dbc.Alert(f"The newest planning ({made}) failed: {view.failure['error']}. "
                      "The devices run their last plan until it expires, then the weekly "
                      "schedule.", color="warning", id="site-plan-failure", className="py-2")]


def plan_summary(view: PlanView) -> list:
    """Return the plan's expected bill with and without the battery, and why, or the empty state."""
    if view.plan is None:
        return [*_failure(view), html.P(NO_PLAN, className="text-muted", id="site-plan-empty")]
    body = view.plan["plan"]
    currency = view.currency or ""
    made = view.plan["made_at"].astimezone(ZoneInfo(view.timezone)).strftime("%a %d %b %H:%M")
    why = [line for line in body["why"] if not line.startswith("expected cost")]
    return [
        *_failure(view),
        html.Small(f"Plan revision {view.plan['revision']}, made {made}, "
                   f"covers the next 48 hours in 15-minute steps; dashed lines are "
                   f"planned, solid lines measured.", className="text-muted d-block mb-2"),
        dbc.Row(className="g-3 mb-2", children=[
            _tile("Bill with the plan", money(body["expected_cost"], currency),
                  "expected over the plan", "site-plan-cost"),
            _tile("Bill without the battery", money(body["cost_without_battery"], currency),
                  "same load and PV", "site-plan-without"),
            _tile("Expected savings", money(body["savings"], currency),
                  "before battery wear", "site-plan-savings"),
        ]),
        html.Div("Why", className="kw-kpi-label mt-2"),
        html.Ul([html.Li(line) for line in why] or [html.Li("The battery rests: nothing to gain.")],
                id="site-plan-why", className="mb-2"),
    ]


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


def accuracy_table(accuracy: ForecastAccuracy) -> dbc.Table | html.P:
    """Return the MAE and normalised MAE of each day's load and PV forecasts, newest first."""
    by_day: dict = {}
    for kind, days in accuracy.days.items():
        for item in days:
            by_day.setdefault(item.day, {})[kind] = item
    if not by_day:
        return html.P("No day has both a day-ahead forecast and metered data yet.",
                      className="text-muted", id="site-accuracy-empty")
    header = html.Thead(html.Tr([html.Th("Day"), html.Th("Load MAE", className="text-end"),
                                 html.Th("Load nMAE", className="text-end"),
                                 html.Th("PV MAE", className="text-end"),
                                 html.Th("PV nMAE", className="text-end")]))
    rows = []
    for day in sorted(by_day, reverse=True):
        cells = [html.Td(day.strftime("%a %d %b"))]
        for kind in ("load", "pv"):
            item = by_day[day].get(kind)
            cells += [html.Td("—" if item is None else f"{item.mae_kw:.2f} kW",
                              className="text-end"),
                      html.Td(_percent(item.nmae if item else None), className="text-end")]
        rows.append(html.Tr(cells))
    return dbc.Table([header, html.Tbody(rows)], size="sm", hover=True, responsive=True,
                     id="site-accuracy-table", className="mb-0")
