"""A site's commissioning: the live checklist, the issued reports, and the form to issue one.

Everyone who may see the site sees the checklist (refreshed every 10 s) and the
reports; the company's admins and superadmins also get the form that issues
the next version with a free comment. The server checks every call against the
caller's scope in ``kilowatch`` whatever the browser sends.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html, no_update

from auth.callbacks import ADMIN_ROLES, ALL_ROLES, connection, current_scope, guarded_callback
from auth.scope import app_settings
from dashboards.components.inputs import next_count
from kilowatch import fleet
from kilowatch.access import AccessDenied
from kilowatch.commissioning import checklist, report
from kilowatch.ids import parse_id

dash.register_page(__name__, path_template="/site/<site_id>/commissioning",
                   name="Commissioning", title="Commissioning · Kilowatch", roles=ALL_ROLES)

REFRESH_MS = 10_000


def _site_id(value) -> int:
    site_id = parse_id(value)
    if site_id is None:
        raise AccessDenied(f"not a site id: {str(value)[:40]!r}")
    return site_id


def _issue_form() -> dbc.Card:
    return dbc.Card(className="mb-3", children=[
        dbc.CardHeader("Issue a commissioning report", className="fw-semibold"),
        dbc.CardBody([
            html.P("The report is stored as a new version, never changed afterwards, and "
                   "e-mailed as a PDF to the company's admins.", className="small text-muted"),
            dbc.Label("Comment", html_for="commissioning-comment"),
            dbc.Textarea(id="commissioning-comment", rows=4, maxLength=report.MAX_COMMENT,
                         placeholder="What was done on site, what the customer should know"),
            html.Div(id="commissioning-message", className="mt-2"),
            dbc.Button("Issue report", id="commissioning-issue", color="primary",
                       className="mt-2"),
        ]),
    ])


def layout(site_id=None, **_query) -> html.Div:
    """Show a visible site's checklist and reports (the issue form for its admins)."""
    scope = current_scope()
    with connection() as conn:
        site = fleet.get_site(conn, scope, _site_id(site_id))
    may_issue = scope.may_administer_company(site["company_id"])
    return html.Div(className="kw-commissioning-page", children=[
        dcc.Store(id="commissioning-site-id", data=site["id"]),
        dcc.Store(id="commissioning-issued", data=0),
        dcc.Interval(id="commissioning-refresh", interval=REFRESH_MS),
        html.Div(className="d-flex flex-wrap align-items-baseline gap-3 mb-3", children=[
            html.H1(["Commissioning · ", html.Span(site["name"], id="commissioning-site-name")],
                    className="h4 mb-0"),
            html.Span(f"{site['company_name']} · times in {site['timezone']}",
                      className="text-muted small"),
            dcc.Link("← Site overview", href=f"/site/{site['id']}", className="small ms-auto"),
        ]),
        dbc.Row([
            dbc.Col(dbc.Card([dbc.CardHeader(html.Span(id="commissioning-summary")),
                              html.Div(id="commissioning-checklist")], className="mb-3"), lg=7),
            dbc.Col([_issue_form()] if may_issue else [], lg=5),
        ]),
        dbc.Card([dbc.CardHeader("Issued reports", className="fw-semibold"),
                  dbc.CardBody(id="commissioning-reports")]),
    ])


def _item(item: checklist.Item) -> dbc.ListGroupItem:
    badge = dbc.Badge("ok" if item.ok else "missing", color="success" if item.ok else "warning",
                      className="me-2")
    fix = [] if item.ok else [html.A(f"Fix: {item.fix_label}", href=item.fix_href,
                                     className="small ms-2")]
    return dbc.ListGroupItem(id=f"commissioning-item-{item.key}", children=[
        html.Div([badge, html.Span(item.label, className="fw-semibold"), *fix]),
        html.Div(item.detail, className="small text-muted"),
    ])


def _reports(rows: list[dict], timezone: str):
    if not rows:
        return html.P("No report issued yet.", className="text-muted mb-0")
    zone = ZoneInfo(timezone)
    head = html.Thead(html.Tr([html.Th(h) for h in ("Version", "Issued", "By", "Comment", "")]))
    body = html.Tbody([html.Tr([
        html.Td(f"v{r['version']}"),
        html.Td(f"{r['issued_at'].astimezone(zone):%Y-%m-%d %H:%M}"),
        html.Td(r["issued_by"]),
        html.Td(r["comment"][:120] + ("…" if len(r["comment"]) > 120 else "")),
        html.Td([html.A("PDF", href=f"/reports/commissioning/{r['id']}.pdf",
                        id=f"commissioning-pdf-{r['version']}"), " · ",
                 html.A("HTML", href=f"/reports/commissioning/{r['id']}.html",
                        target="_blank")]),
    ]) for r in rows])
    return dbc.Table([head, body], size="sm", className="mb-0", id="commissioning-report-table")


@guarded_callback(Output("commissioning-checklist", "children"),
                  Output("commissioning-summary", "children"),
                  Output("commissioning-reports", "children"),
                  Input("commissioning-refresh", "n_intervals"),
                  Input("commissioning-issued", "data"),
                  State("commissioning-site-id", "data"), roles=ALL_ROLES)
def refresh(_ticks, _issued, site_id):
    """Show the checklist as it stands now and the issued reports."""
    scope = current_scope()
    with connection() as conn:
        site = fleet.get_site(conn, scope, _site_id(site_id))
        items = checklist.checklist(conn, scope, site["id"])
        rows = report.list_reports(conn, scope, site["id"])
    done = sum(item.ok for item in items)
    summary = f"Checklist: {done} of {len(items)} done" + (
        " — ready to hand over" if done == len(items) else "")
    return (dbc.ListGroup([_item(item) for item in items], flush=True), summary,
            _reports(rows, site["timezone"]))


@guarded_callback(Output("commissioning-message", "children"),
                  Output("commissioning-issued", "data"),
                  Output("commissioning-comment", "value"),
                  Input("commissioning-issue", "n_clicks"),
                  State("commissioning-comment", "value"),
                  State("commissioning-site-id", "data"),
                  State("commissioning-issued", "data"),
                  roles=ADMIN_ROLES, prevent_initial_call=True)
def issue(_clicks, comment, site_id, issued):
    """Issue the next report version with the comment; say which version and who gets it."""
    if comment is not None and not isinstance(comment, str):
        return dbc.Alert("The comment must be text.", color="danger"), no_update, no_update
    try:
        with connection() as conn:
            done = report.issue(conn, current_scope(), app_settings(), _site_id(site_id),
                                comment=comment or "")
    except report.ReportError as error:
        return dbc.Alert(str(error), color="danger", className="py-2"), no_update, no_update
    text = (f"Report v{done['version']} issued and queued to {done['mailed']} admin(s)."
            if done["mailed"] else
            f"Report v{done['version']} issued; the company has no active admin to e-mail.")
    return (dbc.Alert(text, color="success", className="py-2", id="commissioning-issued-alert"),
            next_count(issued), "")
