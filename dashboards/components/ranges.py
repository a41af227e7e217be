"""The range picker shared by the site page and the point explorer, and the parsing of its values.

A page puts :func:`range_controls` in its layout, calls :func:`custom_toggle`
at module level (page modules run for every app, so the browser callback is
registered with each), listens to :func:`range_inputs` and turns the values it
receives with :func:`picked_range`. The values come from the browser: anything
that is not a range name or an ISO day becomes a :class:`~kilowatch.telemetry.history.HistoryError`
whose message the page shows in place of the chart.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dash_bootstrap_components as dbc
from dash import Input, Output, dcc

from auth.callbacks import guarded_clientside_callback
from kilowatch.telemetry import history

RANGE_LABELS = {"today": "Today", "yesterday": "Yesterday", "7d": "7 days", "30d": "30 days",
                "12m": "12 months", "custom": "Custom"}


def range_controls(prefix: str) -> list[dbc.Col]:
    """Return the range buttons and the hidden custom days (ids ``<prefix>-range``, ``-custom``)."""
    today = datetime.now(UTC).date()
    return [
        dbc.Col(dbc.RadioItems(
            id=f"{prefix}-range", value="today", inline=True,
            options=[{"label": label, "value": key} for key, label in RANGE_LABELS.items()],
            className="btn-group kw-segmented", inputClassName="btn-check",
            labelClassName="btn btn-sm btn-outline-primary", labelCheckedClassName="active"),
            xs="auto"),
        dbc.Col(dcc.DatePickerRange(
            id=f"{prefix}-custom", start_date=today - timedelta(days=6), end_date=today,
            display_format="YYYY-MM-DD", minimum_nights=0, className="kw-date-range"),
            id=f"{prefix}-custom-col", xs="auto", style={"display": "none"}),
    ]


def range_inputs(prefix: str) -> tuple[Input, Input, Input]:
    """Return the callback inputs of the picker: range name, first day, last day."""
    return (Input(f"{prefix}-range", "value"), Input(f"{prefix}-custom", "start_date"),
            Input(f"{prefix}-custom", "end_date"))


def custom_toggle(prefix: str) -> None:
    """Show the custom days only while "Custom" is picked (in the browser)."""
    guarded_clientside_callback(
        "(key) => ({display: key === 'custom' ? 'block' : 'none'})",
        Output(f"{prefix}-custom-col", "style"), Input(f"{prefix}-range", "value"))


def _day(value: object) -> date | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):  # a forged number, list or object instead of an ISO day
        raise history.HistoryError("pick valid days")
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise history.HistoryError("pick valid days") from None


def picked_days(start: object, end: object) -> tuple[date | None, date | None]:
    """Return the picker's first and last day (None when empty), or raise HistoryError."""
    return _day(start), _day(end)


def picked_range(key: object, timezone: str, start: object, end: object,
                 *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Return [start, end) in UTC of the picked range in the site's zone, or raise HistoryError."""
    first, last = picked_days(start, end)
    return history.time_range(key or "today", timezone, now=now, first_day=first,
                              last_day=last)
