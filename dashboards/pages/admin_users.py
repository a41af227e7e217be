"""Administration: a company's users — create with a one-time password, role, (de)activate, reset.

Company admins manage their own company; superadmins pick any company. The
rules (which roles, which company) are enforced by ``kilowatch.accounts.users`` with
the caller's scope; this page only offers what it would allow.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html

from auth.callbacks import ADMIN_ROLES, connection, current_scope, guarded_callback
from dashboards.components import admin
from dashboards.components.forms import text
from kilowatch.accounts import passwords, users

dash.register_page(__name__, path="/admin/users", name="Users", title="Users · Kilowatch",
                   roles=ADMIN_ROLES, menu="admin", order=10)

STATUS = {True: "active", False: "deactivated"}


def _create_form() -> dbc.Card:
    return dbc.Card(className="mb-3", children=[dbc.CardHeader("New user"), dbc.CardBody([
        dbc.Row(className="g-2", children=[
            dbc.Col(dbc.Input(id="admin-users-email", type="email", placeholder="E-mail"), md=4),
            dbc.Col(dbc.Input(id="admin-users-name", placeholder="Name (optional)"), md=3),
            dbc.Col(dbc.Select(id="admin-users-new-role", options=admin.ROLE_OPTIONS,
                               value="viewer"), md=3),
            dbc.Col(dbc.Button("Create", id="admin-users-create", color="primary",
                               className="w-100"), md=2),
        ]),
    ])])


def _edit_form() -> dbc.Card:
    return dbc.Card(className="mb-3", children=[dbc.CardHeader("Change a user"), dbc.CardBody([
        dbc.Row(className="g-2", children=[
            dbc.Col(dbc.Select(id="admin-users-selected", placeholder="Choose a user"), md=4),
            dbc.Col(dbc.Select(id="admin-users-role", options=admin.ROLE_OPTIONS,
                               value="viewer"), md=2),
            dbc.Col(dbc.Button("Set role", id="admin-users-save-role", outline=True,
                               color="primary", className="w-100"), md=2),
            dbc.Col(dbc.Button("Reset password", id="admin-users-reset", outline=True,
                               color="secondary", className="w-100"), md=2),
            dbc.Col(dbc.ButtonGroup([
                dbc.Button("Deactivate", id="admin-users-deactivate", outline=True,
                           color="danger"),
                dbc.Button("Activate", id="admin-users-activate", outline=True,
                           color="success"),
            ], className="w-100"), md=2),
        ]),
    ])])


def layout(**_query) -> html.Div:
    """Show the company picker, the forms and the user list."""
    with connection() as conn:
        companies = users.administered_companies(conn, current_scope())
    return html.Div([
        html.H1("Users", className="h4 mb-3"),
        admin.company_select("admin-users-company", companies),
        html.Div(id="admin-users-message"),
        _create_form(),
        _edit_form(),
        dcc.Store(id="admin-users-changed", data=0),
        html.Div(id="admin-users-table"),
    ])


def _users_table(rows: list[dict]) -> dbc.Table:
    header = html.Thead(html.Tr([html.Th(h) for h in
                                 ("E-mail", "Name", "Role", "Status", "Last login")]))
    body = html.Tbody([html.Tr([
        html.Td(row["email"]), html.Td(row["display_name"]), html.Td(row["role"]),
        html.Td(STATUS[row["active"]]),
        html.Td(f"{row['last_login_at']:%Y-%m-%d %H:%M} UTC" if row["last_login_at"] else "never"),
    ], className="" if row["active"] else "text-muted") for row in rows])
    return dbc.Table([header, body], hover=True, responsive=True, size="sm",
                     id="admin-users-list")


@guarded_callback(Output("admin-users-table", "children"),
                  Output("admin-users-selected", "options"),
                  Input("admin-users-company", "value"), Input("admin-users-changed", "data"),
                  roles=ADMIN_ROLES)
def show_users(company_id, _changed):
    """List the users of the chosen company."""
    try:
        company_id = admin.as_id(company_id, "company")
    except users.AccountError as error:
        return admin.failure(error), []
    with connection() as conn:
        rows = users.list_users(conn, current_scope(), company_id)
    options = [{"label": f"{row['email']} ({row['role']})", "value": str(row["id"])}
               for row in rows]
    return _users_table(rows), options


def _create(conn, scope, form: dict):
    password = passwords.generate_password()
    email = users.normalize_email(text(form["email"], 254))
    users.create_user(conn, scope, email=email, role=text(form["new_role"], 20),
                      company_id=admin.as_id(form["company"], "company"),
                      display_name=text(form["name"], 120),
                      password_hash=passwords.hash_password(password))
    return admin.one_time_password(email, password)


def _reset(conn, scope, form: dict):
    password = passwords.generate_password()
    row = users.reset_password(conn, scope, admin.as_id(form["selected"], "user"),
                               passwords.hash_password(password))
    return admin.one_time_password(row["email"], password)


def _set_role(conn, scope, form: dict):
    row = users.set_role(conn, scope, admin.as_id(form["selected"], "user"),
                         text(form["role"], 20))
    return admin.success(f"{row['email']} is now {row['role']}.")


def _set_active(active: bool):
    def change(conn, scope, form: dict):
        row = users.set_active(conn, scope, admin.as_id(form["selected"], "user"), active)
        return admin.success(f"{row['email']} is {STATUS[row['active']]}.")
    return change


ACTIONS = {"admin-users-create": _create, "admin-users-reset": _reset,
           "admin-users-save-role": _set_role, "admin-users-deactivate": _set_active(False),
           "admin-users-activate": _set_active(True)}


@guarded_callback(
    output=[Output("admin-users-message", "children"), Output("admin-users-changed", "data")],
    inputs={"clicks": [Input(button, "n_clicks") for button in ACTIONS]},
    state={"form": {"company": State("admin-users-company", "value"),
                    "email": State("admin-users-email", "value"),
                    "name": State("admin-users-name", "value"),
                    "new_role": State("admin-users-new-role", "value"),
                    "selected": State("admin-users-selected", "value"),
                    "role": State("admin-users-role", "value")},
           "changed": State("admin-users-changed", "data")},
    roles=ADMIN_ROLES, prevent_initial_call=True)
def change_users(clicks, form, changed):
    """Carry out the button's action on the server and say what happened."""
    return admin.run_clicked(ACTIONS, clicks, form, changed,
                             errors=(users.AccountError, passwords.PasswordPolicyError))
