"""Tables and messages of the companies, sites and devices administration pages."""

from __future__ import annotations

import datetime as dt

import dash_bootstrap_components as dbc
from dash import html

from auth.callbacks import connection, current_scope
from kilowatch import fleet
from kilowatch.devices import lifecycle
from kilowatch.ids import parse_id

STATE_COLORS = {"registered": "secondary", "activated": "success", "revoked": "danger"}


def when(moment: dt.datetime | None, empty: str = "never") -> str:
    """Return a time as the administration pages show it (UTC, to the minute)."""
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else empty


def _number(value: float | None, unit: str) -> str:
    return "—" if value is None else f"{value:g} {unit}"


def read_only(element_id: str, what: str) -> dbc.Alert:
    """Return the note telling support staff that they read a page without changing it."""
    return dbc.Alert(f"Read-only: support staff see {what} but do not change them.",
                     color="light", className="small", id=element_id)


def site_options(company_id: object) -> list[dict]:
    """Return the picker options of a company's sites (none for a malformed company id)."""
    company_id = parse_id(company_id)
    if company_id is None:
        return []
    with connection() as conn:
        rows = fleet.list_sites_for_admin(conn, current_scope(), company_id)
    return [{"label": row["name"], "value": str(row["id"])} for row in rows]


def _table(element_id: str, headers: list[str], rows: list[html.Tr], empty: str):
    if not rows:
        return html.P(empty, className="text-muted", id=element_id)
    return dbc.Table([html.Thead(html.Tr([html.Th(h) for h in headers])), html.Tbody(rows)],
                     hover=True, responsive=True, size="sm", id=element_id)


# --- companies ---------------------------------------------------------------------------------


def companies_table(rows: list[dict]):
    """Return the list of companies with their counts."""
    body = [html.Tr([html.Td(row["name"]), html.Td(row["site_count"]),
                     html.Td(row["device_count"]), html.Td(row["user_count"]),
                     html.Td(when(row["created_at"]))]) for row in rows]
    return _table("admin-companies-list", ["Company", "Sites", "Devices", "Users", "Created"],
                  body, "No company yet.")


# --- sites -------------------------------------------------------------------------------------


def _contact(site: dict) -> list:
    parts = [part for part in (site["contact_name"], site["contact_email"],
                               site["contact_phone"]) if part]
    return [html.Div(part) for part in parts] or ["—"]


def _place(site: dict) -> list:
    where = [html.Div(site["address"])] if site["address"] else []
    if site["latitude"] is not None and site["longitude"] is not None:
        where.append(html.Div(f"{site['latitude']:.5f}, {site['longitude']:.5f}",
                              className="small text-muted"))
    return where or ["—"]


def sites_table(rows: list[dict]):
    """Return the list of a company's sites with their place and on-site contact."""
    body = [html.Tr([html.Td(row["name"]), html.Td(_place(row)), html.Td(row["timezone"]),
                     html.Td(_contact(row)), html.Td(row["device_count"])]) for row in rows]
    return _table("admin-sites-list", ["Site", "Address", "Time zone", "On-site contact",
                                       "Devices"], body, "This company has no site yet.")


# --- devices -----------------------------------------------------------------------------------


def _identity(device: dict) -> list:
    badge = dbc.Badge(device["state"], color=STATE_COLORS[device["state"]],
                      className="kw-device-state")
    note = {"valid": "code issued", "expired": "code expired"}.get(device["code"])
    return [badge, html.Div(note, className="small text-muted")] if note else [badge]


def _seen(device: dict) -> list:
    if device["online"]:
        return [dbc.Badge("online", color="success"),
                html.Div(when(device["last_seen"]), className="small text-muted")]
    return [html.Span(when(device["last_seen"]), className="text-muted")]


def _buttons(device: dict) -> html.Td:
    code = dbc.Button("New activation code", size="sm", outline=True, color="primary",
                      className="me-1 mb-1",
                      id={"type": "admin-devices-new-code", "index": device["id"]})
    revocable = device["state"] == "activated" or device["code"] is not None
    revoke = dbc.Button("Revoke", size="sm", outline=True, color="danger", className="mb-1",
                        disabled=not revocable,
                        id={"type": "admin-devices-revoke", "index": device["id"]})
    return html.Td([code, revoke], className="text-nowrap")


def devices_table(rows: list[dict], *, editable: bool):
    """Return a company's devices with their ratings, identity state and last contact."""
    headers = ["Serial", "Site", "Model", "Rated power", "Capacity", "Firmware", "Identity",
               "Activated", "Last seen"] + (["Actions"] if editable else [])
    body = [html.Tr(id=f"admin-devices-row-{row['serial']}", children=[
        html.Td(html.Code(row["serial"])), html.Td(row["site_name"]), html.Td(row["model"]),
        html.Td(_number(row["rated_power_kw"], "kW")),
        html.Td(_number(row["capacity_kwh"], "kWh")), html.Td(row["firmware"] or "—"),
        html.Td(_identity(row)), html.Td(when(row["activated_at"], "—")), html.Td(_seen(row)),
        *([_buttons(row)] if editable else []),
    ]) for row in rows]
    return _table("admin-devices-list", headers, body, "This company has no device yet.")


def activation_code(serial: str, code: str, *, first: bool) -> dbc.Alert:
    """Return the message showing a device's activation code, once."""
    days = lifecycle.CODE_VALID_FOR.days
    lead = f"Device {serial} registered. Activation code:" if first else \
        f"New activation code for {serial}:"
    note = f"Shown only now: it is not stored and cannot be shown again. Valid {days} days, " \
        "for one activation" + ("." if first else "; the previous code no longer works.")
    return dbc.Alert(color="warning", dismissable=True, id="admin-devices-code-alert", children=[
        html.Div(lead),
        html.Code(code, className="kw-secret", id="admin-devices-code"),
        html.Div(note, className="small mt-2"),
    ])


def confirmation(device: dict, action: str) -> tuple[str, str, str, str]:
    """Return the confirm dialog's title, text, button label and colour for an action."""
    serial = device["serial"]
    if action == "revoke":
        what = ("loses its credentials: the broker cuts it off within seconds and refuses "
                "whatever it sends" if device["state"] == "activated"
                else "loses its pending activation code")
        return (f"Revoke {serial}?", f"{serial} ({device['site_name']}) {what}. It needs a new "
                "activation code to come back.", "Revoke", "danger")
    return (f"New activation code for {serial}?",
            "A new one-time code is shown once; any code issued before stops working. "
            "An activated device keeps its connection until it activates again.",
            "Issue the code", "primary")
