"""Administration: a company's alert rules (point, comparison, threshold, clear threshold,
minimum duration, severity, sites), evaluated by the worker on incoming data.

Rule and site ids from the browser go to ``kilowatch.alarms.rules`` with the
user's scope, which refuses another company's (no update).
"""

from __future__ import annotations

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from auth.callbacks import ADMIN_ROLES, connection, current_scope, guarded_callback
from dashboards.components import admin
from dashboards.components.alarms import views as alarm_views
from dashboards.components.inputs import next_count
from kilowatch.accounts import groups, users
from kilowatch.accounts.users import AccountError
from kilowatch.alarms import rule_store
from kilowatch.alarms import rules as alert_rules
from kilowatch.alarms.events import SEVERITIES
from kilowatch.alarms.rules import COMPARISONS, RuleError

dash.register_page(__name__, path="/admin/alert-rules", name="Alert rules",
                   title="Alert rules · Kilowatch", roles=ADMIN_ROLES, menu="admin", order=40)

COLUMNS = [
    {"field": "name", "headerName": "Rule", "minWidth": 160, "flex": 1,
     "cellClass": "kw-cell-site"},
    {"field": "code", "headerName": "Alarm code", "width": 160},
    {"field": "condition", "headerName": "Condition", "minWidth": 260, "flex": 2},
    {"field": "severity", "headerName": "Severity", "width": 105,
     "cellClassRules": {f"kw-sev-{s}": f"params.data.severity == '{s}'" for s in SEVERITIES}},
    {"field": "sites", "headerName": "Sites", "minWidth": 140, "flex": 1},
    {"field": "enabled", "headerName": "On", "width": 70},
]
FIELDS = ("name", "code", "point", "comparison", "threshold", "clear_threshold",
          "duration_min", "severity", "site_mode", "site_ids", "enabled")
_FORM = [("alert-rules-name", "value"), ("alert-rules-code", "value"),
         ("alert-rules-point", "value"), ("alert-rules-comparison", "value"),
         ("alert-rules-threshold", "value"), ("alert-rules-clear", "value"),
         ("alert-rules-duration", "value"), ("alert-rules-severity", "value"),
         ("alert-rules-site-mode", "value"), ("alert-rules-sites", "value"),
         ("alert-rules-enabled", "value")]
EMPTY = {"name": "", "code": "", "point": "bms.t_max", "comparison": ">", "threshold": None,
         "clear_threshold": None, "duration_min": 5, "severity": "major", "site_mode": "all",
         "site_ids": [], "enabled": True}


def _field(label: str, control, width: int = 3) -> dbc.Col:
    return dbc.Col([dbc.Label(label, className="small mb-1"), control], md=width)


def _form() -> dbc.Card:
    return dbc.Card(className="kw-card mb-3", children=[
        dbc.CardHeader("New rule", id="alert-rules-form-title"),
        dbc.CardBody([
            dbc.Row(className="g-2", children=[
                _field("Name", dbc.Input(id="alert-rules-name", maxLength=120), 4),
                _field("Alarm code", dbc.Input(id="alert-rules-code", maxLength=64,
                                               placeholder="from the name")),
                _field("Point", html.Div([dbc.Input(id="alert-rules-point", list="alert-rules-"
                                                    "points"),
                                          html.Datalist(id="alert-rules-points")])),
                _field("Severity", dbc.Select(id="alert-rules-severity", options=[
                    {"label": s.title(), "value": s} for s in SEVERITIES]), 2),
            ]),
            dbc.Row(className="g-2 mt-1", children=[
                _field("Raise when the value is", dbc.Select(
                    id="alert-rules-comparison",
                    options=[{"label": c, "value": c} for c in COMPARISONS]), 2),
                _field("Threshold", dbc.Input(id="alert-rules-threshold", type="number",
                                              step="any"), 2),
                _field("for at least (minutes)", dbc.Input(
                    id="alert-rules-duration", type="number", min=0, max=1440, step="any"), 2),
                _field("Clear past (hysteresis)", dbc.Input(id="alert-rules-clear",
                                                            type="number", step="any"), 2),
                _field("Enabled", dbc.Switch(id="alert-rules-enabled", value=True), 2),
            ]),
            dbc.Row(className="g-2 mt-1 align-items-end", children=[
                _field("Sites", dbc.RadioItems(id="alert-rules-site-mode", inline=True,
                                               options=[{"label": "All sites", "value": "all"},
                                                        {"label": "Chosen sites",
                                                         "value": "chosen"}]), 3),
                _field("", dcc.Dropdown(id="alert-rules-sites", multi=True,
                                        placeholder="Choose sites"), 9),
            ]),
            html.Div(className="d-flex gap-2 mt-3", children=[
                dbc.Button("Save", id="alert-rules-save", color="primary"),
                dbc.Button("New rule", id="alert-rules-new", color="secondary", outline=True),
                dbc.Button("Delete", id="alert-rules-delete", color="danger", outline=True,
                           className="ms-auto", disabled=True)]),
        ])])


def layout(**_query) -> html.Div:
    """Show the company picker, the company's rules and the rule form."""
    with connection() as conn:
        companies = users.administered_companies(conn, current_scope())
    return html.Div([
        html.H1("Alert rules", className="h4 mb-1"),
        html.P("A rule raises an alarm on a device once the point stays past the threshold "
               "for the minimum duration, and clears it past the clear threshold.",
               className="text-muted small"),
        admin.company_select("alert-rules-company", companies),
        html.Div(id="alert-rules-message"),
        dag.AgGrid(id="alert-rules-grid", rowData=[], columnDefs=COLUMNS,
                   defaultColDef={"sortable": True, "resizable": True,
                                  "suppressHeaderMenuButton": True},
                   getRowId="params.data.row_id", className="kw-grid mb-3",
                   dashGridOptions=alarm_views.grid_options(0), style={"width": "100%"}),
        _form(),
        dcc.Store(id="alert-rules-editing", data=None),
        dcc.Store(id="alert-rules-changed", data=0),
    ])


def _row(rule: dict, site_names: dict[int, str]) -> dict:
    model = alert_rules.from_row(rule)
    sites = "All sites" if rule["all_sites"] else ", ".join(
        site_names.get(s, f"#{s}") for s in rule["site_ids"])
    return {"row_id": str(rule["id"]), "name": rule["name"], "code": rule["code"],
            "condition": model.describe(), "severity": rule["severity"], "sites": sites,
            "enabled": "yes" if rule["enabled"] else "no"}


@guarded_callback(Output("alert-rules-grid", "rowData"), Output("alert-rules-sites", "options"),
                  Output("alert-rules-points", "children"),
                  Input("alert-rules-company", "value"), Input("alert-rules-changed", "data"),
                  roles=ADMIN_ROLES)
def show_rules(company_id, _changed):
    """List the chosen company's rules, and offer its sites and points."""
    try:
        company_id = admin.as_id(company_id, "company")
    except AccountError:
        raise PreventUpdate from None
    with connection() as conn:
        scope = current_scope()
        sites = groups.grantable_sites(conn, scope, company_id)  # AccessDenied → no update
        rules = rule_store.list_rules(conn, scope, company_id=company_id)
        points = rule_store.rule_points(conn, scope, company_id)
    names = {s["id"]: s["name"] for s in sites}
    return ([_row(rule, names) for rule in rules],
            [{"label": s["name"], "value": s["id"]} for s in sites],
            [html.Option(value=p["name"], label=p["unit"] or "") for p in points])


def _form_values(rule: dict | None) -> list:
    if rule is None:
        values = EMPTY
    else:
        values = {**rule, "duration_min": round(rule["duration_s"] / 60, 2),
                  "site_mode": "all" if rule["all_sites"] else "chosen"}
    return [values[name] for name in FIELDS]


@guarded_callback(*[Output(element, prop) for element, prop in _FORM],
                  Output("alert-rules-code", "disabled"), Output("alert-rules-editing", "data"),
                  Output("alert-rules-form-title", "children"),
                  Output("alert-rules-delete", "disabled"),
                  Input("alert-rules-grid", "cellClicked"), Input("alert-rules-new", "n_clicks"),
                  roles=ADMIN_ROLES)
def edit_rule(cell, _new):
    """Fill the form with the clicked rule, or empty it for a new one."""
    if ctx.triggered_id == "alert-rules-grid" and cell and cell.get("rowId"):
        with connection() as conn:
            rule = rule_store.get_rule(conn, current_scope(), cell["rowId"])
        return (*_form_values(rule), True, rule["id"], f"Edit rule “{rule['name']}”", False)
    return (*_form_values(None), False, None, "New rule", True)


def _fields(values: tuple) -> dict:
    form = dict(zip(FIELDS, values, strict=True))
    try:
        duration = round(float(form["duration_min"] or 0) * 60)
    except (TypeError, ValueError, OverflowError):
        raise RuleError("the duration is a number of minutes") from None
    return {**form, "duration_s": duration, "all_sites": form["site_mode"] != "chosen",
            "site_ids": admin.as_ids(form["site_ids"], "site"), "enabled": bool(form["enabled"])}


@guarded_callback(Output("alert-rules-message", "children"),
                  Output("alert-rules-changed", "data"),
                  Output("alert-rules-editing", "data", allow_duplicate=True),
                  Input("alert-rules-save", "n_clicks"), Input("alert-rules-delete", "n_clicks"),
                  State("alert-rules-company", "value"), State("alert-rules-editing", "data"),
                  State("alert-rules-changed", "data"),
                  *[State(element, prop) for element, prop in _FORM],
                  prevent_initial_call=True, roles=ADMIN_ROLES)
def save_rule(_save, _delete, company_id, editing, changed, *values):
    """Create or update the rule in the form, or delete it."""
    changed = next_count(changed)
    try:
        with connection() as conn:
            scope = current_scope()
            if ctx.triggered_id == "alert-rules-delete":
                if editing is None:
                    raise PreventUpdate
                rule = rule_store.get_rule(conn, scope, editing)
                rule_store.delete_rule(conn, scope, rule["id"])
                return admin.success(f"Rule {rule['name']} deleted."), changed, None
            fields = _fields(values)
            if editing is None:
                company = admin.as_id(company_id, "company")
                rule_store.create_rule(conn, scope, company, fields)
                return admin.success("Rule created."), changed, None
            rule_store.update_rule(conn, scope, editing, fields)
            return admin.success("Rule saved."), changed, no_update
    except (RuleError, AccountError) as error:
        return admin.failure(error), no_update, no_update
