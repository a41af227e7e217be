"""Administration: a company's users — invite by e-mail, role, (de)activate, send a password link.

Company admins manage their own company; superadmins pick any company. The
rules (which roles, which company) are enforced by ``kilowatch.accounts.users`` with
the caller's scope; this page only offers what it would allow. A new user gets
an e-mail, in their language, with a link to choose their password; nobody
ever sees or passes on a password here.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html

from auth.callbacks import ADMIN_ROLES, connection, current_scope, guarded_callback
from auth.scope import app_settings
from dashboards.components import admin
from dashboards.components.forms import text
from kilowatch.accounts import account_mail, users

dash.register_page(__name__, path="/admin/users", name="Users", title="Users · Kilowatch",
                   roles=ADMIN_ROLES, menu="admin", order=10)

STATUS = {True: "active", False: "deactivated"}
LANGUAGE_OPTIONS = [{"label": label, "value": code} for code, label in (
    ("en", "English"), ("fr", "Français"), ("de", "Deutsch"), ("es", "Español"),
    ("it", "Italiano"), ("nl", "Nederlands"))]


def _create_form() -> dbc.Card:
    return dbc.Card(className="mb-3", children=[dbc.CardHeader("New user"), dbc.CardBody([
        dbc.Row(className="g-2", children=[
            dbc.Col(dbc.Input(id="admin-users-email", type="email", placeholder="E-mail"), md=3),
            dbc.Col(dbc.Input(id="admin-users-name", placeholder="Name (optional)"), md=3),
            dbc.Col(dbc.Select(id="admin-users-new-role", options=admin.ROLE_OPTIONS,
                               value="viewer"), md=2),
            dbc.Col(dbc.Select(id="admin-users-language", options=LANGUAGE_OPTIONS,
                               value="en"), md=2),
            dbc.Col(dbc.Button("Create and invite", id="admin-users-create", color="primary",
                               className="w-100"), md=2),
        ]),
        html.Div("The new user receives an e-mail with a link to choose their password "
                 "(valid 72 hours).", className="form-text"),
    ])])


def _edit_form() -> dbc.Card:
    return dbc.Card(className="mb-3", children=[dbc.CardHeader("Change a user"), dbc.CardBody([
        dbc.Row(className="g-2", children=[
            dbc.Col(dbc.Select(id="admin-users-selected", placeholder="Choose a user"), md=4),
            dbc.Col(dbc.Select(id="admin-users-role", options=admin.ROLE_OPTIONS,
                               value="viewer"), md=2),
            dbc.Col(dbc.Button("Set role", id="admin-users-save-role", outline=True,
                               color="primary", className="w-100"), md=2),
            dbc.Col(dbc.Button("Send password link", id="admin-users-reset", outline=True,
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


def _status(row: dict) -> str:
    if row["active"] and not row["has_password"]:
        return "invited"  # has not chosen a password yet
    return STATUS[row["active"]]


def _users_table(rows: list[dict]) -> dbc.Table:
    header = html.Thead(html.Tr([html.Th(h) for h in
                                 ("E-mail", "Name", "Role", "Status", "Last login")]))
    body = html.Tbody([html.Tr([
        html.Td(row["email"]), html.Td(row["display_name"]), html.Td(row["role"]),
        html.Td(_status(row)),
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
    email = users.normalize_email(text(form["email"], 254))
    account_mail.create_and_invite(conn, scope, base_url=app_settings().base_url, email=email,
                                   role=text(form["new_role"], 20),
                                   company_id=admin.as_id(form["company"], "company"),
                                   display_name=text(form["name"], 120),
                                   language=text(form["language"], 5) or "en")
    return admin.success(f"{email} created. An invitation to choose a password is on its way "
                         "to them.")


def _send_link(conn, scope, form: dict):
    row = account_mail.invite(conn, scope, admin.as_id(form["selected"], "user"),
                              base_url=app_settings().base_url)
    what = ("a new invitation" if row["purpose"] == "invitation"
            else "a link to reset their password")
    return admin.success(f"{row['email']} will receive {what}. Their password stays as it is "
                         "until they use it.")


def _set_role(conn, scope, form: dict):
    row = users.set_role(conn, scope, admin.as_id(form["selected"], "user"),
                         text(form["role"], 20))
    return admin.success(f"{row['email']} is now {row['role']}.")


def _set_active(active: bool):
    def change(conn, scope, form: dict):
        row = users.set_active(conn, scope, admin.as_id(form["selected"], "user"), active)
        return admin.success(f"{row['email']} is {STATUS[row['active']]}.")
    return change


ACTIONS = {"admin-users-create": _create, "admin-users-reset": _send_link,
           "admin-users-save-role": _set_role, "admin-users-deactivate": _set_active(False),
           "admin-users-activate": _set_active(True)}


@guarded_callback(
    output=[Output("admin-users-message", "children"), Output("admin-users-changed", "data")],
    inputs={"clicks": [Input(button, "n_clicks") for button in ACTIONS]},
    state={"form": {"company": State("admin-users-company", "value"),
                    "email": State("admin-users-email", "value"),
                    "name": State("admin-users-name", "value"),
                    "new_role": State("admin-users-new-role", "value"),
                    "language": State("admin-users-language", "value"),
                    "selected": State("admin-users-selected", "value"),
                    "role": State("admin-users-role", "value")},
           "changed": State("admin-users-changed", "data")},
    roles=ADMIN_ROLES, prevent_initial_call=True)
def change_users(clicks, form, changed):
    """Carry out the button's action on the server and say what happened."""
    return admin.run_clicked(ACTIONS, clicks, form, changed, errors=(users.AccountError,))
