"""Administration: a company's groups, their members and the sites granted to them.

Viewers and operators see exactly the sites granted to the groups they are in.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html

from auth.callbacks import ADMIN_ROLES, connection, current_scope, guarded_callback
from dashboards.components import admin
from dashboards.components.forms import text
from dashboards.components.inputs import as_id
from kilowatch.accounts import groups, users

dash.register_page(__name__, path="/admin/groups", name="Groups", title="Groups · Kilowatch",
                   roles=ADMIN_ROLES, menu="admin", order=20)


def _create_form() -> dbc.Card:
    return dbc.Card(className="mb-3", children=[dbc.CardHeader("New group"), dbc.CardBody(
        dbc.Row(className="g-2", children=[
            dbc.Col(dbc.Input(id="admin-groups-name", placeholder="Group name"), md=8),
            dbc.Col(dbc.Button("Create", id="admin-groups-create", color="primary",
                               className="w-100"), md=4),
        ]))])


def _edit_form() -> dbc.Card:
    return dbc.Card(className="mb-3", children=[dbc.CardHeader("Group"), dbc.CardBody([
        dbc.Select(id="admin-groups-selected", placeholder="Choose a group", className="mb-3"),
        dbc.Row([
            dbc.Col([html.H2("Sites granted", className="h6"),
                     dbc.Checklist(id="admin-groups-sites", options=[], value=[])], md=6),
            dbc.Col([html.H2("Members", className="h6"),
                     dbc.Checklist(id="admin-groups-members", options=[], value=[])], md=6),
        ], className="mb-3"),
        dbc.Button("Save", id="admin-groups-save", color="primary", className="me-2"),
        dbc.Button("Delete group", id="admin-groups-delete", color="danger", outline=True),
    ])])


def layout(**_query) -> html.Div:
    """Show the company picker, the group list and the group editor."""
    with connection() as conn:
        companies = users.administered_companies(conn, current_scope())
    return html.Div([
        html.H1("Groups", className="h4 mb-3"),
        admin.company_select("admin-groups-company", companies),
        html.Div(id="admin-groups-message"),
        dbc.Row([dbc.Col(_create_form(), lg=5), dbc.Col(html.Div(id="admin-groups-table"),
                                                        lg=7)]),
        _edit_form(),
        dcc.Store(id="admin-groups-changed", data=0),
    ])


def _groups_table(rows: list[dict]) -> dbc.Table:
    header = html.Thead(html.Tr([html.Th(h) for h in ("Group", "Members", "Sites")]))
    body = html.Tbody([html.Tr([html.Td(row["name"]), html.Td(row["member_count"]),
                                html.Td(row["site_count"])]) for row in rows])
    return dbc.Table([header, body], hover=True, size="sm", id="admin-groups-list")


@guarded_callback(Output("admin-groups-table", "children"),
                  Output("admin-groups-selected", "options"),
                  Input("admin-groups-company", "value"), Input("admin-groups-changed", "data"),
                  roles=ADMIN_ROLES)
def show_groups(company_id, _changed):
    """List the groups of the chosen company."""
    try:
        company_id = admin.as_id(company_id, "company")
    except users.AccountError as error:
        return admin.failure(error), []
    with connection() as conn:
        rows = groups.list_groups(conn, current_scope(), company_id)
    return _groups_table(rows), [{"label": row["name"], "value": str(row["id"])} for row in rows]


@guarded_callback(Output("admin-groups-sites", "options"), Output("admin-groups-sites", "value"),
                  Output("admin-groups-members", "options"),
                  Output("admin-groups-members", "value"),
                  Input("admin-groups-selected", "value"), Input("admin-groups-changed", "data"),
                  roles=ADMIN_ROLES)
def show_group(group_id, _changed):
    """Show the chosen group's grants and members among its company's sites and users."""
    if not group_id:
        return [], [], [], []
    scope = current_scope()
    group_id = as_id(group_id)
    with connection() as conn:
        group = groups.get_group(conn, scope, group_id)
        sites = groups.grantable_sites(conn, scope, group["company_id"])
        people = users.list_users(conn, scope, group["company_id"])
    return ([{"label": site["name"], "value": site["id"]} for site in sites],
            [site["id"] for site in group["sites"]],
            [{"label": f"{person['email']} ({person['role']})", "value": person["id"]}
             for person in people],
            [member["id"] for member in group["members"]])


def _create(conn, scope, form: dict):
    name = text(form["name"], 120).strip()
    groups.create_group(conn, scope, company_id=admin.as_id(form["company"], "company"),
                        name=name)
    return admin.success(f"Group {name} created.")


def _save(conn, scope, form: dict):
    group_id = admin.as_id(form["selected"], "group")
    with conn.transaction():
        groups.set_group_sites(conn, scope, group_id, admin.as_ids(form["sites"], "site"))
        groups.set_group_members(conn, scope, group_id, admin.as_ids(form["members"], "user"))
    return admin.success("Group saved.")


def _delete(conn, scope, form: dict):
    groups.delete_group(conn, scope, admin.as_id(form["selected"], "group"))
    return admin.success("Group deleted.")


ACTIONS = {"admin-groups-create": _create, "admin-groups-save": _save,
           "admin-groups-delete": _delete}


@guarded_callback(
    output=[Output("admin-groups-message", "children"), Output("admin-groups-changed", "data")],
    inputs={"clicks": [Input(button, "n_clicks") for button in ACTIONS]},
    state={"form": {"company": State("admin-groups-company", "value"),
                    "name": State("admin-groups-name", "value"),
                    "selected": State("admin-groups-selected", "value"),
                    "sites": State("admin-groups-sites", "value"),
                    "members": State("admin-groups-members", "value")},
           "changed": State("admin-groups-changed", "data")},
    roles=ADMIN_ROLES, prevent_initial_call=True)
def change_groups(clicks, form, changed):
    """Carry out the button's action on the server and say what happened."""
    return admin.run_clicked(ACTIONS, clicks, form, changed)
