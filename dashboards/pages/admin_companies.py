"""Administration: companies (tenants) — the platform operator creates them; support reads them.

A new company then gets its sites (Administration → Sites), devices and first
admin (Administration → Users) from the same menu.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html

from auth.callbacks import connection, current_scope, guarded_callback
from dashboards.components import admin, admin_fields, fleet_admin
from dashboards.components.forms import text
from kilowatch import fleet

PLATFORM_ROLES = ("support", "superadmin")
CREATOR_ROLES = ("superadmin",)

dash.register_page(__name__, path="/admin/companies", name="Companies",
                   title="Companies · Kilowatch", roles=PLATFORM_ROLES, menu="admin", order=2)

FORM = "admin-companies"
FIELDS = ("name",)


def _create_form() -> dbc.Card:
    return dbc.Card(className="mb-3", children=[dbc.CardHeader("New company"), dbc.CardBody(
        dbc.Row(className="g-2 align-items-end", children=[
            admin_fields.field(FORM, "name", "Company name",
                               dbc.Input(id="admin-companies-name", maxLength=120), width=8),
            dbc.Col(dbc.Button("Create", id="admin-companies-create", color="primary",
                               className="w-100 mb-2"), md=4),
        ]))])


def layout(**_query) -> html.Div:
    """Show the new-company form (superadmins) and every company."""
    creates = current_scope().role in CREATOR_ROLES
    return html.Div([
        html.H1("Companies", className="h4 mb-3"),
        html.Div(id="admin-companies-message"),
        _create_form() if creates else dbc.Alert(
            "Read-only: only the platform operator creates companies.", color="light",
            className="small", id="admin-companies-read-only"),
        dcc.Store(id="admin-companies-changed", data=0),
        html.Div(id="admin-companies-table"),
    ])


@guarded_callback(Output("admin-companies-table", "children"),
                  Input("admin-companies-changed", "data"), roles=PLATFORM_ROLES)
def show_companies(_changed):
    """List every company with its number of sites, devices and users."""
    with connection() as conn:
        return fleet_admin.companies_table(fleet.reviewable_companies(conn, current_scope()))


def _create(conn, scope, form: dict):
    name = text(form["name"], 200).strip()
    fleet.create_company(conn, scope, name)
    return (admin.success(f"Company {name} created. Add its sites, devices and first "
                          "administrator from the Administration menu."),
            *admin_fields.cleared(FIELDS))


ACTIONS = {"admin-companies-create": _create}


@guarded_callback(
    output=[Output("admin-companies-message", "children"),
            Output("admin-companies-changed", "data"), *admin_fields.error_outputs(FORM, FIELDS)],
    inputs={"clicks": [Input(button, "n_clicks") for button in ACTIONS]},
    state={"form": {"name": State("admin-companies-name", "value")},
           "changed": State("admin-companies-changed", "data")},
    roles=CREATOR_ROLES, prevent_initial_call=True)
def change_companies(clicks, form, changed):
    """Create the company on the server and say what happened."""
    return admin.run_clicked(ACTIONS, clicks, form, changed, errors=(fleet.FleetError,),
                             failure=admin_fields.field_failure(FIELDS), extra=len(FIELDS))
