"""Form fields of the administration pages that show their own error message beside them.

A field is named after the argument of the ``kilowatch`` function it feeds (e.g.
``contact_email``), which names it in ``FleetError.field`` when it refuses a
value; its element id is ``{form}-contact-email`` and its message goes to
``{form}-contact-email-error``. :func:`field_failure` is a ``failure`` for
:func:`dashboards.components.admin.run_clicked` that puts the message there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dash_bootstrap_components as dbc
from dash import Output, html, no_update

from dashboards.components import admin
from dashboards.components.forms import text
from kilowatch.fleet import FleetError
from kilowatch.ids import parse_id


def element_id(form: str, field: str) -> str:
    """Return the id of a form's input for a field."""
    return f"{form}-{field.replace('_', '-')}"


def error_id(form: str, field: str) -> str:
    """Return the id of the place of a field's error message."""
    return f"{element_id(form, field)}-error"


def field(form: str, name: str, label: str, control, *, width: int = 4) -> dbc.Col:
    """Return a labelled control with the place for its error message below it."""
    return dbc.Col(md=width, className="mb-2", children=[
        dbc.Label(label, html_for=element_id(form, name), className="small mb-1"),
        control,
        html.Div(id=error_id(form, name), className="invalid-feedback d-block"),
    ])


def error_outputs(form: str, fields: Sequence[str]) -> list[Output]:
    """Return the outputs of the fields' error messages, in order."""
    return [Output(error_id(form, name), "children") for name in fields]


def cleared(fields: Sequence[str]) -> list[None]:
    """Return no message for each field."""
    return [None] * len(fields)


def _sentence(error: Exception) -> str:
    message = str(error)
    return message[:1].upper() + message[1:] + "."


def field_failure(fields: Sequence[str], *more) -> Callable[[Exception], tuple]:
    """Return a failure showing the message beside its field (else on top), then ``more``.

    The top message stays as it is when the error has a field, so a one-time
    code shown there is not wiped by a typo in the next form.
    """
    def failure(error: Exception) -> tuple:
        name = getattr(error, "field", None)
        if name in fields:
            return (no_update, *more,
                    *[_sentence(error) if other == name else None for other in fields])
        return (admin.failure(error), *more, *cleared(fields))
    return failure


def chosen(value: object, field_name: str, what: str) -> int:
    """Return an id picked in a form, or raise FleetError on that field."""
    number = parse_id(value)
    if number is None:
        raise FleetError(f"choose a {what}", field_name)
    return number


def as_number(value: object, field_name: str, label: str) -> float | None:
    """Return a number typed in a form (None when empty), or raise FleetError on that field."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return float(text(value, 40).strip())
    except ValueError:
        raise FleetError(f"{label} must be a number", field_name) from None
