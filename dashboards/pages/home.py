"""Home: the sites the user may see (the fleet overview will replace it)."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from auth.callbacks import ALL_ROLES, connection, current_scope
from kilowatch import fleet

dash.register_page(__name__, path="/", name="Sites", title="Sites · Kilowatch",
                   roles=ALL_ROLES, menu="main", order=0)


def _site_item(site: dict) -> dbc.ListGroupItem:
    return dbc.ListGroupItem(
        dcc.Link(href=f"/site/{site['id']}", className="d-flex justify-content-between",
                 children=[html.Span(site["name"], className="kw-site-name"),
                           html.Small(f"{site['company_name']} · {site['timezone']}",
                                      className="text-muted")]),
        id={"type": "home-site", "index": site["id"]},
    )


def layout(**_query) -> html.Div:
    """List the sites in the user's scope."""
    with connection() as conn:
        sites = fleet.list_sites(conn, current_scope())
    if not sites:
        body = dbc.Alert("No site is shared with you yet. Ask your administrator.",
                         color="info", id="home-no-sites")
    else:
        body = dbc.ListGroup([_site_item(site) for site in sites], id="home-sites")
    return html.Div([html.H1("Sites", className="h4 mb-3"), body])
