"""Administration: devices — register one (its activation code shown once), re-code, revoke.

Superadmins pick any company, a company's admins see their own, support staff
read every company's devices without changing them. Every change goes through
``kilowatch.devices.lifecycle``, which checks the caller's rights and audits;
the worker then pushes it to the broker (a revoked device is cut off within
seconds). A per-device button opens a confirm dialog that remembers the device;
the confirm button carries the change out.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update

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
from kilowatch.accounts.users import AccountError
from kilowatch.devices import admin as device_admin
from kilowatch.devices import lifecycle
from kilowatch.ids import parse_id

dash.register_page(__name__, path="/admin/devices", name="Devices", title="Devices · Kilowatch",
                   roles=ADMIN_VIEW_ROLES, menu="admin", order=6)

FORM = "admin-devices"
FIELDS = ("site_id", "serial", "model", "rated_power_kw", "capacity_kwh")
MODEL_OPTIONS = [{"label": model, "value": model} for model in fleet.DEVICE_MODELS]


def _register_form() -> dbc.Card:
    def field(name, label, control, width):
        return admin_fields.field(FORM, name, label, control, width=width)

    return dbc.Card(className="mb-3", children=[dbc.CardHeader("Register a device"),
                                                dbc.CardBody(dbc.Row(className="g-2", children=[
        field("site_id", "Site", dbc.Select(id="admin-devices-site-id", placeholder="Choose"),
              3),
        field("serial", "Serial", dbc.Input(id="admin-devices-serial", maxLength=64,
                                            placeholder="e.g. HES-0042"), 3),
        field("model", "Model", dbc.Select(id="admin-devices-model", options=MODEL_OPTIONS,
                                           value="HES-L"), 2),
        field("rated_power_kw", "Rated power (kW)",
              dbc.Input(id="admin-devices-rated-power-kw", type="number", min=0), 2),
        field("capacity_kwh", "Capacity (kWh)",
              dbc.Input(id="admin-devices-capacity-kwh", type="number", min=0), 2),
        dbc.Col(dbc.Button("Register", id="admin-devices-register", color="primary"), md=12),
    ]))])


def _confirm_dialog() -> dbc.Modal:
    return dbc.Modal(id="admin-devices-confirm-modal", is_open=False, children=[
        dbc.ModalHeader(dbc.ModalTitle(id="admin-devices-confirm-title")),
        dbc.ModalBody(id="admin-devices-confirm-text"),
        dbc.ModalFooter([
            dbc.Button("Cancel", id="admin-devices-cancel", color="secondary", outline=True),
            dbc.Button("Confirm", id="admin-devices-confirm", color="danger"),
        ]),
    ])


def layout(**_query) -> html.Div:
    """Show the company picker, the register form (admins) and the company's devices."""
    scope = current_scope()
    with connection() as conn:
        companies = fleet.reviewable_companies(conn, scope)
    changes = scope.role in ADMIN_ROLES
    return html.Div([
        html.H1("Devices", className="h4 mb-3"),
        admin.company_select("admin-devices-company", companies),
        html.Div(id="admin-devices-message"),
        *([_register_form(), _confirm_dialog()] if changes
          else [fleet_admin.read_only("admin-devices-read-only", "devices")]),
        dcc.Store(id="admin-devices-changed", data=0),
        dcc.Store(id="admin-devices-device", data=None),
        dcc.Store(id="admin-devices-action", data=None),
        html.Div(id="admin-devices-table"),
    ])


@guarded_callback(Output("admin-devices-table", "children"),
                  Input("admin-devices-company", "value"), Input("admin-devices-changed", "data"),
                  roles=ADMIN_VIEW_ROLES)
def show_devices(company_id, _changed):
    """List the chosen company's devices (with buttons for those who may change them)."""
    try:
        company_id = admin.as_id(company_id, "company")
    except AccountError as error:
        return admin.failure(error)
    scope = current_scope()
    with connection() as conn:
        rows = device_admin.list_devices_for_admin(conn, scope, company_id)
    return fleet_admin.devices_table(rows, editable=scope.may_administer_company(company_id))


@guarded_callback(Output("admin-devices-site-id", "options"),
                  Input("admin-devices-company", "value"), Input("admin-devices-changed", "data"),
                  roles=ADMIN_ROLES)
def offer_sites(company_id, _changed):
    """Offer the chosen company's sites to register a device on."""
    return fleet_admin.site_options(company_id)


@guarded_callback(
    Output("admin-devices-confirm-modal", "is_open"),
    Output("admin-devices-confirm-title", "children"),
    Output("admin-devices-confirm-text", "children"),
    Output("admin-devices-confirm", "children"), Output("admin-devices-confirm", "color"),
    Output("admin-devices-device", "data"), Output("admin-devices-action", "data"),
    Input({"type": "admin-devices-new-code", "index": ALL}, "n_clicks"),
    Input({"type": "admin-devices-revoke", "index": ALL}, "n_clicks"),
    Input("admin-devices-cancel", "n_clicks"),
    roles=ADMIN_ROLES, prevent_initial_call=True)
def ask(_code_clicks, _revoke_clicks, _cancel):
    """Open the confirm dialog for the clicked device's button (or close it on Cancel)."""
    trigger = ctx.triggered_id
    if trigger == "admin-devices-cancel":
        return (False, *[no_update] * 4, None, None)
    # A table drawn again fires this with no click: only a real click opens the dialog.
    if not isinstance(trigger, dict) or not ctx.triggered[0]["value"]:
        return (no_update,) * 7
    action = "revoke" if trigger.get("type") == "admin-devices-revoke" else "code"
    with connection() as conn:
        device = device_admin.device_to_change(conn, current_scope(), as_id(trigger.get("index")))
    return (True, *fleet_admin.confirmation(device, action), device["id"], action)


def _register(conn, scope, form: dict):
    site_id = admin_fields.chosen(form["site_id"], "site_id", "site")
    fleet.site_for_admin(conn, scope, site_id)  # a foreign site is refused before any check
    serial = text(form["serial"], 64).strip()
    _device_id, code = lifecycle.register(
        conn, scope, site_id=site_id, serial=serial, model=text(form["model"], 20),
        rated_power_kw=admin_fields.as_number(form["rated_power_kw"], "rated_power_kw",
                                              "rated power"),
        capacity_kwh=admin_fields.as_number(form["capacity_kwh"], "capacity_kwh", "capacity"))
    return (fleet_admin.activation_code(serial, code, first=True), False, "",
            *admin_fields.cleared(FIELDS))


def _confirmed(conn, scope, form: dict):
    device_id = parse_id(form["device"])
    if device_id is None or form["action"] not in ("code", "revoke"):
        raise fleet.FleetError("choose a device's button first")
    device = device_admin.device_to_change(conn, scope, device_id)
    if form["action"] == "code":
        message = fleet_admin.activation_code(
            device["serial"], lifecycle.issue_code(conn, scope, device_id), first=False)
    elif lifecycle.revoke(conn, scope, device_id):
        cut = ": the broker cuts it off within seconds" if device["state"] == "activated" else ""
        message = admin.success(f"{device['serial']} is revoked{cut}. It needs a new "
                                "activation code to come back.")
    else:
        message = admin.success(f"{device['serial']} had no credentials or code to revoke.")
    return (message, False, no_update, *admin_fields.cleared(FIELDS))


ACTIONS = {"admin-devices-register": _register, "admin-devices-confirm": _confirmed}


@guarded_callback(
    output=[Output("admin-devices-message", "children"), Output("admin-devices-changed", "data"),
            Output("admin-devices-confirm-modal", "is_open", allow_duplicate=True),
            Output("admin-devices-serial", "value"), *admin_fields.error_outputs(FORM, FIELDS)],
    inputs={"clicks": [Input(button, "n_clicks") for button in ACTIONS]},
    state={"form": {**{name: State(admin_fields.element_id(FORM, name), "value")
                       for name in FIELDS},
                    "device": State("admin-devices-device", "data"),
                    "action": State("admin-devices-action", "data")},
           "changed": State("admin-devices-changed", "data")},
    roles=ADMIN_ROLES, prevent_initial_call=True)
def change_devices(clicks, form, changed):
    """Carry out the button's action on the server and say what happened."""
    return admin.run_clicked(ACTIONS, clicks, form, changed, errors=(fleet.FleetError,),
                             failure=admin_fields.field_failure(FIELDS, False, no_update),
                             extra=2 + len(FIELDS))
