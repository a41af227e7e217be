"""Every user's own alarm e-mails: severities, sites, on raise and/or clear, delay, reminders.

Only the signed-in user's settings are read or written (their scope carries
their id); chosen sites must be within their scope.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html

from auth.callbacks import ALL_ROLES, connection, current_scope, guarded_callback
from kilowatch import fleet
from kilowatch.alarms import notifications
from kilowatch.alarms.events import SEVERITIES
from kilowatch.alarms.notifications import PreferenceError

dash.register_page(__name__, path="/account/notifications", name="Notifications",
                   title="Notifications · Kilowatch", roles=ALL_ROLES)

_FORM = [("notify-enabled", "value"), ("notify-severities", "value"),
         ("notify-site-mode", "value"), ("notify-sites", "value"), ("notify-when", "value"),
         ("notify-delay", "value"), ("notify-reminders", "value")]


def _row(label: str, control, hint: str = "") -> dbc.Row:
    return dbc.Row(className="mb-3", children=[
        dbc.Col(dbc.Label(label, className="fw-semibold"), md=3),
        dbc.Col([control, html.Div(hint, className="form-text") if hint else None], md=9)])


def _form(prefs: notifications.Preferences, sites: list[dict]) -> dbc.CardBody:
    when = [w for w, on in (("raise", prefs.on_raise), ("clear", prefs.on_clear)) if on]
    site_options = [{"label": f"{s['name']} ({s['company_name']})", "value": s["id"]}
                    for s in sites]
    return dbc.CardBody([
        _row("E-mails", dbc.Switch(id="notify-enabled", value=prefs.enabled,
                                   label="Send me alarm e-mails")),
        _row("Severities", dbc.Checklist(id="notify-severities", inline=True,
                                         value=list(prefs.severities),
                                         options=[{"label": s.title(), "value": s}
                                                  for s in SEVERITIES])),
        _row("Sites", html.Div([
            dbc.RadioItems(id="notify-site-mode", inline=True,
                           value="all" if prefs.all_sites else "chosen",
                           options=[{"label": "All my sites", "value": "all"},
                                    {"label": "Only these", "value": "chosen"}]),
            dcc.Dropdown(id="notify-sites", value=list(prefs.site_ids), options=site_options,
                         multi=True, placeholder="Choose sites", className="mt-1")])),
        _row("When", dbc.Checklist(id="notify-when", inline=True, value=when, options=[
            {"label": "An alarm is raised", "value": "raise"},
            {"label": "It is cleared", "value": "clear"}])),
        _row("Delay (minutes)", dbc.Input(id="notify-delay", type="number", min=0, max=1440,
                                          step=1, value=prefs.delay_s // 60),
             "Only tell me when the alarm is still active after this long (0: at once)."),
        _row("Reminders (hours)", dbc.Input(id="notify-reminders", type="number", min=0,
                                            max=168, step=1, value=prefs.reminder_hours or 0),
             "Remind me of unacknowledged critical alarms every so many hours (0: never)."),
        dbc.Button("Save", id="notify-save", color="primary"),
        html.Div(id="notify-message", className="mt-3"),
    ])


def layout(**_query) -> html.Div:
    """Show the user's own notification settings."""
    scope = current_scope()
    with connection() as conn:
        prefs = notifications.get_preferences(conn, scope)
        sites = fleet.list_sites(conn, scope)
    note = []
    if scope.role == "admin":
        note = [dbc.Alert("As an administrator you always receive e-mails when a device of "
                          "your company goes offline (COMM_LOST) and when it is back.",
                          color="info", className="py-2")]
    return html.Div([html.H1("Alarm e-mails", className="h4 mb-3"), *note,
                     dbc.Card(_form(prefs, sites), className="kw-card")])


def _minutes(value, label: str, *, scale: int) -> int:
    try:
        return round(float(value or 0) * scale)
    except (TypeError, ValueError, OverflowError):
        raise PreferenceError(f"{label} must be a number") from None


@guarded_callback(Output("notify-message", "children"), Input("notify-save", "n_clicks"),
                  *[State(element, prop) for element, prop in _FORM],
                  prevent_initial_call=True, roles=ALL_ROLES)
def save(_clicks, enabled, severities, site_mode, site_ids, when, delay_min, reminder_h):
    """Save the user's own notification settings."""
    when = when if isinstance(when, list) else []
    try:
        fields = {"enabled": bool(enabled), "severities": severities or [],
                  "all_sites": site_mode != "chosen", "site_ids": site_ids or [],
                  "on_raise": "raise" in when, "on_clear": "clear" in when,
                  "delay_s": _minutes(delay_min, "the delay", scale=60),
                  "reminder_hours": _minutes(reminder_h, "the reminder interval", scale=1)}
        with connection() as conn:
            notifications.save_preferences(conn, current_scope(), fields)
    except PreferenceError as error:
        return dbc.Alert(str(error)[:1].upper() + str(error)[1:] + ".", color="danger")
    return dbc.Alert("Saved.", color="success", id="notify-saved")
