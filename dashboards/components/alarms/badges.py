"""The navbar's alarm counts: a link to the active alarms with one pill per severity.

Filled and refreshed every 30 s by ``refresh_nav_counts`` in ``pages/alarms.py``
(page modules are executed for every app, so the callback is registered with
each), reading the user's own scope: the counts never include another
company's alarms.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboards.components.telemetry.tiles import SEVERITY_COLORS
from kilowatch.alarms.events import SEVERITIES

REFRESH_MS = 30_000


def counts_pills(counts: dict[str, int]) -> list:
    """Return a pill per severity with active alarms, or a muted 0 when there are none."""
    pills = [dbc.Badge(str(counts[s]), color=SEVERITY_COLORS[s], pill=True,
                       title=f"{counts[s]} {s}", className="ms-1", id=f"nav-alarms-{s}")
             for s in SEVERITIES if counts.get(s)]
    return pills or [html.Small("0", className="text-muted ms-1", id="nav-alarms-none")]


def navbar_alarms() -> dbc.NavItem:
    """Return the navbar item: a bell with the active alarm counts, linking to the alarms."""
    return dbc.NavItem(html.Div(className="d-flex align-items-center", children=[
        dcc.Link([html.Img(src=dash.get_asset_url("bell.svg"), height="18", alt="Alarms"),
                  html.Span(id="nav-alarms-counts")],
                 href="/alarms", className="nav-link d-flex align-items-center",
                 id="nav-alarms-link", title="Active alarms on your sites"),
        dcc.Interval(id="nav-alarms-refresh", interval=REFRESH_MS),
    ]))
