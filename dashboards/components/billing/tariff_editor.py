"""Layout pieces of the tariff page: rate grids, settings, painting tools, assignment history.

Pure functions returning Dash components (ids prefixed ``tariffs-``); the
callbacks live in :mod:`dashboards.pages.tariffs`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboards.components.billing.tariff_forms import MONTH_KEYS
from dashboards.components.billing.tariff_grid import MONTHS, SCHEDULES
from kilowatch.billing import tariffs

GRAPH_CONFIG = {"displaylogo": False, "displayModeBar": False}
COMPENSATION_OPTIONS = [
    {"label": "Net billing (exports sold at the export rate)", "value": "net_billing"},
    {"label": "Net metering (exports offset imports of the month)", "value": "net_metering"},
    {"label": "Buy all, sell all", "value": "buy_all_sell_all"}]
NETTING_OPTIONS = [{"label": "Every 15 minutes", "value": "interval"},
                   {"label": "Within each hour", "value": "hourly"}]
FIXED_OPTIONS = [{"label": "per month", "value": "month"}, {"label": "per day", "value": "day"},
                 {"label": "per year", "value": "year"}]
GRIDS = {
    "energy": ("Energy rates", "per kWh; a tiered period has one row per tier",
               [("period", "Period", 90, "number"), ("label", "Label", 150, "text"),
                ("rate", "Rate /kWh", 110, "number"), ("max_kwh", "Tier max kWh", 120, "number"),
                ("tier_basis", "Tier basis", 110, "basis"), ("sell", "Sell /kWh", 110, "number")]),
    "demand": ("Time-of-use demand rates",
               "per kW on the month's highest 15-minute import in each period "
               "(empty: none)",
               [("period", "Period", 90, "number"), ("label", "Label", 150, "text"),
                ("rate", "Rate /kW", 110, "number"), ("max_kw", "Tier max kW", 120, "number")]),
    "flat": ("Flat demand rates",
             "per kW on the month's highest 15-minute import (empty: none)",
             [("period", "Period", 90, "number"), ("label", "Label", 150, "text"),
              ("rate", "Rate /kW", 110, "number"), ("max_kw", "Tier max kW", 120, "number")]),
}


def _column(field: str, header: str, width: int, kind: str) -> dict:
    column = {"field": field, "headerName": header, "minWidth": width, "editable": True}
    if kind == "number":
        column["cellDataType"] = "number"
    elif kind == "basis":
        column.update(cellEditor="agSelectCellEditor",
                      cellEditorParams={"values": list(tariffs.TIER_BASES)})
    else:
        column["cellDataType"] = "text"
    return column


def rate_grid(kind: str) -> html.Div:
    """Return an editable rate table (``kind``: energy, demand or flat) with its buttons."""
    title, hint, columns = GRIDS[kind]
    defs = [_column(*spec) for spec in columns]
    return html.Div(className="mb-3", children=[
        html.Div(className="d-flex justify-content-between align-items-end mb-1", children=[
            html.Div([html.H3(title, className="h6 mb-0"),
                      html.Div(hint, className="small text-muted")]),
            html.Div([
                dbc.Button("Add row", id=f"tariffs-{kind}-add", size="sm", color="secondary",
                           outline=True, className="me-1"),
                dbc.Button("Remove selected", id=f"tariffs-{kind}-remove", size="sm",
                           color="danger", outline=True)], className="text-nowrap ms-2"),
        ]),
        dag.AgGrid(id=f"tariffs-{kind}-grid", columnDefs=defs, rowData=[],
                   columnSize="sizeToFit", className="ag-theme-alpine kw-rate-grid",
                   defaultColDef={"resizable": True, "sortable": False},
                   dashGridOptions={"rowSelection": {"mode": "multiRow"},
                                    "singleClickEdit": True, "stopEditingWhenCellsLoseFocus": True,
                                    "domLayout": "autoHeight", "animateRows": False},
                   style={"height": None}),
    ])


def months_grid() -> html.Div:
    """Return the one-row table of each month's flat demand period (blank: none)."""
    defs = [{"field": key, "headerName": MONTHS[n], "editable": True, "cellDataType": "number",
             "minWidth": 60} for n, key in enumerate(MONTH_KEYS)]
    return html.Div(className="mb-3", children=[
        html.Div("Flat demand period of each month (blank: no flat demand charge)",
                 className="small text-muted mb-1"),
        dag.AgGrid(id="tariffs-flat-months", columnDefs=defs, rowData=[{}],
                   columnSize="sizeToFit", className="ag-theme-alpine kw-rate-grid",
                   dashGridOptions={"singleClickEdit": True,
                                    "stopEditingWhenCellsLoseFocus": True},
                   style={"height": "92px"}),
    ])


def _field(label: str, control, width: int) -> dbc.Col:
    return dbc.Col([dbc.Label(label, html_for=control.id, className="small mb-0"), control],
                   md=width)


def settings_row() -> dbc.Row:
    """Return the currency, export compensation and fixed charge fields."""
    return dbc.Row(className="g-2 mb-3", children=[
        _field("Currency", dbc.Input(id="tariffs-currency", maxLength=3, size="sm"), 2),
        _field("Export compensation", dbc.Select(id="tariffs-compensation", size="sm",
                                                 options=COMPENSATION_OPTIONS), 5),
        _field("Netting", dbc.Select(id="tariffs-netting", size="sm",
                                     options=NETTING_OPTIONS), 3),
        _field("Export rate /kWh", dbc.Input(id="tariffs-export-rate", type="number", size="sm",
                                             step="any"), 2),
        _field("Fixed charge", dbc.Input(id="tariffs-fixed-amount", type="number", size="sm",
                                         step="any"), 2),
        _field("per", dbc.Select(id="tariffs-fixed-per", size="sm", options=FIXED_OPTIONS), 2),
    ])


def _select(element_id: str, options: list, value) -> dbc.Select:
    return dbc.Select(id=element_id, options=options, value=value, size="sm")


def paint_tools() -> html.Div:
    """Return the period pickers and the block-painting form for the schedules."""
    month_options = [{"label": name, "value": n + 1} for n, name in enumerate(MONTHS)]
    hours = [{"label": f"{h:02d}:00", "value": h} for h in range(25)]
    return html.Div(className="kw-paint-tools mb-2", children=[
        dbc.Row(className="g-2 align-items-center mb-2", children=[
            dbc.Col(html.Span("Paint energy period", className="small fw-semibold"), width="auto"),
            dbc.Col(dbc.RadioItems(id="tariffs-paint-energy", inline=True, value=0, options=[],
                                   className="small"), width="auto"),
            dbc.Col(html.Span("Paint demand period", className="small fw-semibold ms-3"),
                    width="auto"),
            dbc.Col(dbc.RadioItems(id="tariffs-paint-demand", inline=True, value=0, options=[],
                                   className="small"), width="auto"),
        ]),
        html.Div("Click a cell, or drag a box over cells, to set them to the chosen period. "
                 "Or set a block:", className="small text-muted mb-1"),
        dbc.Row(className="g-1 align-items-center", children=[
            dbc.Col(_select("tariffs-block-schedule", [
                {"label": "energy", "value": "energy"},
                {"label": "demand", "value": "demand"}], "energy"), width="auto"),
            dbc.Col(_select("tariffs-block-days", [
                {"label": "weekdays and weekends", "value": "both"},
                {"label": "weekdays", "value": "weekday"},
                {"label": "weekends", "value": "weekend"}], "weekday"), width="auto"),
            dbc.Col(html.Span("months", className="small"), width="auto"),
            dbc.Col(_select("tariffs-block-month-from", month_options, 1), width="auto"),
            dbc.Col(html.Span("to", className="small"), width="auto"),
            dbc.Col(_select("tariffs-block-month-to", month_options, 12), width="auto"),
            dbc.Col(html.Span("hours", className="small"), width="auto"),
            dbc.Col(_select("tariffs-block-hour-from", hours[:24], 17), width="auto"),
            dbc.Col(html.Span("to", className="small"), width="auto"),
            dbc.Col(_select("tariffs-block-hour-to", hours[1:], 21), width="auto"),
            dbc.Col(dbc.Button("Set block", id="tariffs-block-apply", size="sm",
                               color="primary", outline=True), width="auto"),
            dbc.Col(dbc.Button("Copy weekdays to weekends", id="tariffs-copy-weekend",
                               size="sm", color="secondary", outline=True), width="auto"),
        ]),
    ])


def schedule_graphs() -> dbc.Row:
    """Return the four month × hour grids (energy and demand, weekdays and weekends)."""
    return dbc.Row(className="g-2", children=[
        dbc.Col(dcc.Graph(id=f"tariffs-grid-{name}", config=GRAPH_CONFIG,
                          style={"height": "300px"}, className="kw-schedule-grid",
                          clear_on_unhover=True), lg=6)
        for name in SCHEDULES])


def tariff_list(rows: Sequence[Mapping]) -> html.Div:
    """Return the company's tariffs with a summary and how many sites use each."""
    if not rows:
        return html.Div("No tariff yet: import a URDB rate or create one.",
                        className="text-muted small", id="tariffs-none")
    items = []
    for row in rows:
        summary = tariffs.describe(tariffs.parse(row["structure"]))
        items.append(dbc.ListGroupItem([
            html.Div([html.Span(row["name"], className="fw-semibold"),
                      dbc.Badge(f"{row['sites']} site(s)", color="light",
                                className="text-dark ms-2")],
                     className="d-flex justify-content-between"),
            html.Div(f"{row['currency']} · {summary}", className="small text-muted"),
        ], id={"type": "tariffs-item", "index": row["id"]}))
    return dbc.ListGroup(items, flush=True, id="tariffs-list")


def history_table(rows: Sequence[Mapping]) -> html.Div:
    """Return a site's tariff assignments, superseded ones struck through."""
    if not rows:
        return html.Div("This site has no tariff yet.", className="small text-muted",
                        id="tariffs-history-empty")
    body = []
    for row in rows:
        superseded = row["superseded_at"] is not None
        state = (f"superseded {row['superseded_at']:%Y-%m-%d %H:%M}" if superseded
                 else "current")
        body.append(html.Tr([
            html.Td(row["tariff_name"]), html.Td(str(row["valid_from"])),
            html.Td(str(row["valid_to"]) if row["valid_to"] else "open"),
            html.Td(state), html.Td(row["created_by"], className="small")],
            className="text-muted kw-superseded" if superseded else ""))
    header = html.Thead(html.Tr([html.Th(h) for h in ("Tariff", "From", "To (excluded)",
                                                      "State", "By")]))
    return dbc.Table([header, html.Tbody(body)], size="sm", hover=True, id="tariffs-history")


def first_of_month(today: date) -> str:
    """Return the first day of ``today``'s month as YYYY-MM-DD."""
    return today.replace(day=1).isoformat()
