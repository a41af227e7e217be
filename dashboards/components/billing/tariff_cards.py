"""The tariff page's cards: import a URDB rate, create, edit, and assign to a site.

Pure functions returning Dash components (ids prefixed ``tariffs-``); the
callbacks live in :mod:`dashboards.pages.tariffs`.
"""

from __future__ import annotations

from datetime import date

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboards.components.billing import tariff_editor


def card(title: str, body, **kwargs) -> dbc.Card:
    """Return a card with a title bar."""
    return dbc.Card([dbc.CardHeader(title, className="fw-semibold"), dbc.CardBody(body)],
                    className="mb-3 shadow-sm", **kwargs)


def import_card() -> dbc.Card:
    """Return the URDB upload with its import options."""
    return card("Import a URDB rate", [
        dcc.Upload(id="tariffs-upload", multiple=False, accept=".json,application/json",
                   className="kw-upload mb-2",
                   children=html.Div(["Drop a URDB rate JSON here, or ",
                                      html.A("choose a file", className="link-primary")])),
        dbc.Row(className="g-2", children=[
            dbc.Col(dbc.Input(id="tariffs-import-name", placeholder="Name (default: URDB's)",
                              size="sm"), md=12),
            dbc.Col(dbc.Input(id="tariffs-import-currency", value="USD", maxLength=3,
                              size="sm", placeholder="Currency"), md=4),
            dbc.Col(dbc.Input(id="tariffs-import-export-rate", type="number", step="any",
                              size="sm", placeholder="Export rate"), md=4),
            dbc.Col(dbc.Input(id="tariffs-import-label", size="sm", placeholder="URDB label"),
                    md=4),
        ]),
        html.Div("Options apply to the next file. A URDB API response imports its first "
                 "rate, or the one with that label.", className="small text-muted mt-1"),
    ])


def new_card() -> dbc.Card:
    """Return the form that creates a blank tariff."""
    return card("New tariff", dbc.InputGroup([
        dbc.Input(id="tariffs-new-name", placeholder="Name", size="sm"),
        dbc.Button("Create", id="tariffs-create", color="primary", size="sm")]))


def editor_card() -> dbc.Card:
    """Return the editor: settings, rate tables and time-of-use grids."""
    return card("Edit tariff", [
        dbc.Select(id="tariffs-selected", placeholder="Choose a tariff to edit",
                   className="mb-3"),
        html.Div(id="tariffs-editor-note", className="small text-muted mb-2"),
        tariff_editor.settings_row(),
        tariff_editor.rate_grid("energy"),
        tariff_editor.rate_grid("demand"),
        tariff_editor.rate_grid("flat"),
        tariff_editor.months_grid(),
        html.H3("Time-of-use periods by month and hour", className="h6"),
        tariff_editor.paint_tools(),
        tariff_editor.schedule_graphs(),
        html.Div(className="d-flex justify-content-end mt-3", children=[
            dbc.Button("Save tariff", id="tariffs-save", color="primary")]),
    ])


def assign_card(site) -> dbc.Card:
    """Return the assignment form (``site`` chosen first) and the site's history."""
    today = tariff_editor.first_of_month(date.today())
    return card("Assign to a site", [
        dbc.Row(className="g-2 align-items-end mb-3", children=[
            dbc.Col([dbc.Label("Site", html_for="tariffs-site", className="small mb-0"),
                     dbc.Select(id="tariffs-site", value=site, size="sm")], md=6),
            dbc.Col([dbc.Label("Tariff", html_for="tariffs-assign-tariff",
                               className="small mb-0"),
                     dbc.Select(id="tariffs-assign-tariff", size="sm")], md=6),
            dbc.Col([dbc.Label("From", html_for="tariffs-from", className="small mb-0"),
                     dbc.Input(id="tariffs-from", type="date", value=today, size="sm")], md=4),
            dbc.Col([dbc.Label("To (excluded, optional)", html_for="tariffs-to",
                               className="small mb-0"),
                     dbc.Input(id="tariffs-to", type="date", size="sm")], md=4),
            dbc.Col(dbc.Button("Assign", id="tariffs-assign", color="primary", size="sm",
                               className="w-100"), md=4),
        ]),
        html.Div(id="tariffs-history-slot"),
    ], id="tariffs-assign-card")
