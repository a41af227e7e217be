"""Building blocks shared by the administration pages (users, groups, tariffs, alert rules)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import dash_bootstrap_components as dbc
from dash import ctx, html, no_update

from auth.callbacks import connection, current_scope
from dashboards.components.inputs import next_count
from kilowatch.accounts.users import AccountError
from kilowatch.ids import parse_id

ROLE_OPTIONS = [{"label": "Viewer", "value": "viewer"},
                {"label": "Operator", "value": "operator"},
                {"label": "Administrator", "value": "admin"}]


def as_id(value, what: str) -> int:
    """Return a browser-supplied id as an int, or raise AccountError naming what is missing."""
    if value is None or value == "":
        raise AccountError(f"choose a {what} first")
    number = parse_id(value)
    if number is None:
        raise AccountError(f"that is not a valid {what}")
    return number


def as_ids(values, what: str) -> list[int]:
    """Return a list of browser-supplied ids as ints."""
    if values is not None and not isinstance(values, list):
        raise AccountError(f"that is not a valid list of {what}s")
    return [as_id(value, what) for value in (values or [])]


def company_select(element_id: str, companies: list[dict]) -> html.Div:
    """Return the company picker (fixed to their own company for company admins)."""
    options = [{"label": row["name"], "value": str(row["id"])} for row in companies]
    return html.Div(className="mb-3", children=[
        dbc.Label("Company", html_for=element_id),
        dbc.Select(id=element_id, options=options,
                   value=options[0]["value"] if options else None,
                   disabled=len(options) <= 1),
    ])


def success(text: str, *children) -> dbc.Alert:
    """Return a green message."""
    return dbc.Alert([text, *children], color="success", dismissable=True)


def failure(error: Exception) -> dbc.Alert:
    """Return a red message for an error the user can fix."""
    text = str(error)
    return dbc.Alert(text[:1].upper() + text[1:] + ".", color="danger", dismissable=True)


def one_time_password(email: str, password: str) -> dbc.Alert:
    """Return the message showing a one-time password, once."""
    return dbc.Alert(color="warning", dismissable=True, children=[
        html.Div(f"One-time password for {email}:"),
        html.Code(password, className="kw-secret", id="admin-one-time-password"),
        html.Div("Shown only now. Pass it on securely; it must be changed at the first login.",
                 className="small mt-2"),
    ])


def run_clicked(actions: Mapping[str, Callable], clicks: list, form: dict, changed, *,
                errors: tuple[type[Exception], ...] = (AccountError,),
                failure: Callable[[Exception], object] = failure, extra: int = 0) -> tuple:
    """Run the clicked button's action; return its message, the next ``changed`` and more.

    ``actions`` maps a button id to ``action(conn, scope, form)``, which returns the
    message, or with ``extra`` outputs a tuple ``(message, *extra_values)``. Nothing
    clicked leaves every output as it is; an error of ``errors`` shows ``failure(error)``
    and leaves the rest as it is, so the page reloads nothing; a ``failure`` that returns
    a tuple gives the message and the extra outputs (e.g. messages next to the fields).
    """
    action = actions.get(ctx.triggered_id)
    if action is None or not any(clicks):
        return (no_update,) * (2 + extra)
    try:
        with connection() as conn:
            result = action(conn, current_scope(), form)
    except errors as error:
        shown = failure(error)
        if isinstance(shown, tuple):
            return (shown[0], no_update, *shown[1:])
        return (shown,) + (no_update,) * (1 + extra)
    message, *more = result if extra else (result,)
    return (message, next_count(changed), *more)
