"""Administration: sites — create and edit a company's installations and their on-site contact.

Superadmins pick any company and a company's admins edit their own; support
staff read every company's sites. ``kilowatch.fleet`` checks the rights and
every value (a refused value's message shows beside its field) and audits.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html

from auth.callbacks import (
    ADMIN_ROLES,
    ADMIN_VIEW_ROLES,
    connection,
    current_scope,
    guarded_callback,
)
from dashboards.components import admin, admin_fields, fleet_admin
from dashboards.components.forms import text
from dashboards.components.inputs import as_id
from kilowatch import fleet
from kilowatch.access import AccessDenied
from kilowatch.accounts.users import AccountError

dash.register_page(__name__, path="/admin/sites", name="Sites", title="Sites · Kilowatch",
                   roles=ADMIN_VIEW_ROLES, menu="admin", order=4)

FORM = "admin-sites"
FIELDS = ("name", "address", "latitude", "longitude", "timezone", "contact_name",
          "contact_email", "contact_phone", "has_optimizer")
TEXT_FIELDS = ("name", "address", "timezone", "contact_name", "contact_email", "contact_phone")


def _input(name: str, **props) -> dbc.Input:
    return dbc.Input(id=admin_fields.element_id(FORM, name), **props)


def _site_form() -> dbc.Card:
    def field(name, label, control, width=4):
        return admin_fields.field(FORM, name, label, control, width=width)

    zones = sorted(fleet.timezones())
    return dbc.Card(className="mb-3", children=[dbc.CardHeader("Site"), dbc.CardBody([
        dbc.Select(id="admin-sites-site", placeholder="New site", className="mb-3"),
        dbc.Row(className="g-2", children=[
            field("name", "Installation name", _input("name", maxLength=120)),
            field("address", "Address", _input("address", maxLength=300), 8),
            field("latitude", "Latitude", _input("latitude", type="number", min=-90, max=90,
                                                 step="any"), 2),
            field("longitude", "Longitude", _input("longitude", type="number", min=-180,
                                                   max=180, step="any"), 2),
            field("timezone", "Time zone", _input("timezone", list="admin-sites-zones",
                                                  placeholder="e.g. Europe/Paris")),
            field("contact_name", "On-site contact", _input("contact_name", maxLength=120)),
            field("contact_email", "Contact e-mail", _input("contact_email", type="email",
                                                            maxLength=254)),
            field("contact_phone", "Contact phone", _input("contact_phone", type="tel",
                                                           maxLength=30)),
            field("has_optimizer", "Dispatch optimiser", dbc.Checkbox(
                id=admin_fields.element_id(FORM, "has_optimizer"), value=False,
                label="offer the optimized mode (needs latitude and longitude)")),
        ]),
        html.Datalist(id="admin-sites-zones", children=[html.Option(value=z) for z in zones]),
        dbc.Button("Create site", id="admin-sites-create", color="primary", className="me-2"),
        dbc.Button("Save changes", id="admin-sites-save", color="primary", outline=True,
                   disabled=True),
    ])])


def layout(**_query) -> html.Div:
    """Show the company picker, the site form (admins) and the company's sites."""
    scope = current_scope()
    with connection() as conn:
        companies = fleet.reviewable_companies(conn, scope)
    return html.Div([
        html.H1("Sites", className="h4 mb-3"),
        admin.company_select("admin-sites-company", companies),
        html.Div(id="admin-sites-message"),
        _site_form() if scope.role in ADMIN_ROLES
        else fleet_admin.read_only("admin-sites-read-only", "sites"),
        dcc.Store(id="admin-sites-changed", data=0),
        html.Div(id="admin-sites-table"),
    ])


@guarded_callback(Output("admin-sites-table", "children"),
                  Input("admin-sites-company", "value"), Input("admin-sites-changed", "data"),
                  roles=ADMIN_VIEW_ROLES)
def show_sites(company_id, _changed):
    """List the chosen company's sites."""
    try:
        company_id = admin.as_id(company_id, "company")
    except AccountError as error:
        return admin.failure(error)
    with connection() as conn:
        rows = fleet.list_sites_for_admin(conn, current_scope(), company_id)
    return fleet_admin.sites_table(rows)


@guarded_callback(Output("admin-sites-site", "options"),
                  Input("admin-sites-company", "value"), Input("admin-sites-changed", "data"),
                  roles=ADMIN_ROLES)
def offer_sites(company_id, _changed):
    """Offer the chosen company's sites to edit."""
    return fleet_admin.site_options(company_id)


@guarded_callback(*[Output(admin_fields.element_id(FORM, name), "value") for name in FIELDS],
                  Output("admin-sites-save", "disabled"),
                  Input("admin-sites-site", "value"), roles=ADMIN_ROLES)
def fill_form(site_id):
    """Fill the form with the chosen site, or empty it for a new one (nothing to save then)."""
    if not site_id:
        return (*[None] * len(FIELDS), True)
    with connection() as conn:
        site = fleet.site_for_admin(conn, current_scope(), as_id(site_id))
    return (*[site[name] for name in FIELDS], False)


def _values(form: dict) -> dict:
    values = {name: text(form[name], 400) for name in TEXT_FIELDS}
    values["latitude"] = admin_fields.as_number(form["latitude"], "latitude", "latitude")
    values["longitude"] = admin_fields.as_number(form["longitude"], "longitude", "longitude")
    values["has_optimizer"] = form["has_optimizer"] is True
    return values


def _create(conn, scope, form: dict):
    company_id = admin.as_id(form["company"], "company")
    if not scope.may_administer_company(company_id):  # refused before any check of values
        raise AccessDenied("not your company")
    values = _values(form)
    fleet.create_site(conn, scope, company_id=company_id, **values)
    return (admin.success(f"Site {values['name'].strip()} created."),
            *admin_fields.cleared(FIELDS))


def _save(conn, scope, form: dict):
    site_id = admin.as_id(form["site"], "site")
    fleet.site_for_admin(conn, scope, site_id)  # a foreign site is refused before any check
    changed = fleet.update_site(conn, scope, site_id, **_values(form))
    names = ", ".join(name.replace("_", " ") for name in changed)
    return (admin.success(f"Site saved: {names} changed." if changed else "Nothing to change."),
            *admin_fields.cleared(FIELDS))


ACTIONS = {"admin-sites-create": _create, "admin-sites-save": _save}


@guarded_callback(
    output=[Output("admin-sites-message", "children"), Output("admin-sites-changed", "data"),
            *admin_fields.error_outputs(FORM, FIELDS)],
    inputs={"clicks": [Input(button, "n_clicks") for button in ACTIONS]},
    state={"form": {"company": State("admin-sites-company", "value"),
                    "site": State("admin-sites-site", "value"),
                    **{name: State(admin_fields.element_id(FORM, name), "value")
                       for name in FIELDS}},
           "changed": State("admin-sites-changed", "data")},
    roles=ADMIN_ROLES, prevent_initial_call=True)
def change_sites(clicks, form, changed):
    """Carry out the button's action on the server and say what happened."""
    return admin.run_clicked(ACTIONS, clicks, form, changed,
                             errors=(fleet.FleetError, AccountError),
                             failure=admin_fields.field_failure(FIELDS), extra=len(FIELDS))
