"""The schedule page's cards and the messages its callbacks show.

Pure functions, values in and components out (ids prefixed ``schedule-``): the
header, week at a glance, delivery, weekly program, exceptions, save, preview
and revisions cards. The page, its data and its callbacks live in
:mod:`dashboards.pages.schedule`.
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboards.components.schedules import editor
from dashboards.components.schedules.timeline import week_figure
from kilowatch.schedules import model as schedules

PERIOD_COLUMNS = 9
EXCEPTION_COLUMNS = 10


def header(site: dict) -> html.Div:
    """Return the page title with the site's name, company, time zone and a link back."""
    return html.Div(className="d-flex flex-wrap align-items-baseline gap-3 mb-3", children=[
        html.H1(["Schedule · ", html.Span(site["name"], id="schedule-site-name")],
                className="h4 mb-0"),
        html.Span(f"{site['company_name']} · times in {site['timezone']}",
                  className="text-muted small"),
        dcc.Link("← Site overview", href=f"/site/{site['id']}", className="small ms-auto"),
    ])


def timeline_card(schedule: dict) -> dbc.Card:
    """Return the week at a glance, drawn from ``schedule``."""
    return dbc.Card(className="mb-3", children=[
        dbc.CardHeader("Week at a glance"),
        dbc.CardBody(dcc.Graph(id="schedule-timeline", figure=week_figure(schedule),
                               config={"displayModeBar": False}), className="p-2"),
    ])


def delivery_card() -> dbc.Card:
    """Return the card that shows the devices' answers to the latest revision."""
    return dbc.Card(className="mb-3", children=[
        dbc.CardHeader("Delivery to the storage devices"),
        dbc.CardBody(html.Div(id="schedule-delivery")),
    ])


def period_table_rows(rows: list[dict], site: dict, editable: bool) -> list:
    """Return the weekly program's table rows, one per day and period (or a note when empty)."""
    return _table_rows(editor.period_row, rows, site, editable,
                       "No period: the default mode runs all week.", PERIOD_COLUMNS)


def exception_table_rows(rows: list[dict], site: dict, editable: bool) -> list:
    """Return the exceptions' table rows, one per date and period (or a note when empty)."""
    return _table_rows(editor.exception_row, rows, site, editable,
                       "No exception: every date follows the weekly program.", EXCEPTION_COLUMNS)


def _table_rows(row_builder, rows: list[dict], site: dict, editable: bool, empty: str,
                columns: int) -> list:
    built = [tr for i, row in enumerate(rows)
             for tr in row_builder(i, row, editable=editable, has_optimizer=site["has_optimizer"])]
    return editor.rows_or_empty(built, empty, columns)


def _default_mode_form(schedule: dict, site: dict, editable: bool) -> html.Div:
    mode = schedule.get("default_mode")
    params = schedule.get("default_params") or {}
    disabled = editor.disabled_params(mode, editable)
    inputs = [dbc.InputGroup([
        dbc.InputGroupText(editor.PARAM_HEADERS[key]),
        dbc.Input(id=f"schedule-default-{key}", type="number", value=params.get(key),
                  disabled=off, min=0, step="any")], size="sm", style={"width": "11rem"})
        for key, off in zip(editor.PARAMS, disabled, strict=True)]
    return html.Div(className="d-flex flex-wrap align-items-center gap-2 mb-3", children=[
        dbc.Label("Outside every period", html_for="schedule-default-mode",
                  className="mb-0 small fw-semibold me-1"),
        dbc.Select(id="schedule-default-mode", value=mode, size="sm",
                   options=editor.mode_options(site["has_optimizer"]),
                   disabled=not editable, style={"width": "11rem"}),
        *inputs,
    ])


def _copy_day_form() -> dbc.Row:
    targets = [{"label": schedules.DAY_NAMES[d][:3], "value": d} for d in schedules.DAYS]
    return dbc.Row(className="g-2 align-items-center", children=[
        dbc.Col(dbc.Button("+ Add period", id="schedule-add-period", color="primary",
                           outline=True, size="sm"), xs="auto"),
        dbc.Col(html.Span("Copy", className="small text-muted ms-md-3"), xs="auto"),
        dbc.Col(dbc.Select(id="schedule-copy-from", options=editor.DAY_OPTIONS, value="mon",
                           size="sm"), xs="auto"),
        dbc.Col(html.Span("to", className="small text-muted"), xs="auto"),
        dbc.Col(dbc.Checklist(id="schedule-copy-to", options=targets, value=[], inline=True,
                              className="small"), xs="auto"),
        dbc.Col(dbc.Button("Copy day", id="schedule-copy", color="secondary", outline=True,
                           size="sm"), xs="auto"),
    ])


def program_card(schedule: dict, site: dict, editable: bool) -> dbc.Card:
    """Return the weekly program: the default mode, the periods and the copy-day tools."""
    table = editor.table(["Day", "Start", "End"], "schedule-periods",
                         period_table_rows(editor.period_rows(schedule), site, editable))
    return dbc.Card(className="mb-3", children=[
        dbc.CardHeader("Weekly program"),
        dbc.CardBody([_default_mode_form(schedule, site, editable),
                      html.Div(table, className="table-responsive"),
                      _copy_day_form() if editable else None]),
    ])


def exceptions_card(schedule: dict, site: dict, editable: bool) -> dbc.Card:
    """Return the exceptions by date (holidays, maintenance days)."""
    table = editor.table(["Date", "Name", "Start", "End"], "schedule-exceptions",
                         exception_table_rows(editor.exception_rows(schedule), site, editable))
    add = dbc.Button("+ Add exception", id="schedule-add-exception", color="primary",
                     outline=True, size="sm") if editable else None
    return dbc.Card(className="mb-3", children=[
        dbc.CardHeader("Exceptions (holidays, maintenance days)"),
        dbc.CardBody([html.P("An exception replaces the weekly program on its date. Leave a "
                             "date with “Default mode all day” to run only the default mode.",
                             className="small text-muted"),
                      html.Div(table, className="table-responsive"), add]),
    ])


def save_card(editable: bool) -> dbc.Card | dbc.Alert:
    """Return the comment and save button, or the read-only note for those who may not edit."""
    if not editable:
        return dbc.Alert("You can read this schedule. Only the site's operators and "
                         "administrators can change it.", color="secondary",
                         id="schedule-read-only", className="mb-3")
    return dbc.Card(className="mb-3", children=[dbc.CardBody([
        dbc.Row(className="g-2", children=[
            dbc.Col(dbc.Input(id="schedule-comment", placeholder="What changes, and why "
                              "(shown in the history)", maxLength=500), md=9),
            dbc.Col(dbc.Button("Save and send", id="schedule-save", color="primary",
                               className="w-100"), md=3),
        ]),
        html.Div(id="schedule-message", className="mt-2"),
    ])])


def preview_card() -> dbc.Card:
    """Return the card that previews the draft over the next 7 days."""
    return dbc.Card(className="mb-3", children=[
        dbc.CardHeader(dbc.Row(className="align-items-center", children=[
            dbc.Col("Preview: the next 7 days"),
            dbc.Col(dbc.Button("Preview this draft", id="schedule-preview-run", size="sm",
                               color="primary", outline=True), width="auto"),
        ])),
        dbc.CardBody(dcc.Loading(html.Div(id="schedule-preview", children=html.Div(
            "Simulates the schedule in the editor on the site's load and PV of the last "
            "7 days.", className="small text-muted")), type="dot")),
    ])


def history_card(editable: bool) -> dbc.Card:
    """Return the revisions, the comparison pickers and (for editors) the restore form."""
    restore = html.Div(className="mt-3", children=[
        html.Div("Restore an older revision as a new one", className="small fw-semibold mb-1"),
        dbc.Row(className="g-2", children=[
            dbc.Col(dbc.Select(id="schedule-restore-revision", placeholder="Revision",
                               size="sm"), xs=12),
            dbc.Col(dbc.Input(id="schedule-restore-comment", placeholder="Comment (optional)",
                              size="sm", maxLength=500), xs=8),
            dbc.Col(dbc.Button("Restore", id="schedule-restore", color="secondary",
                               outline=True, size="sm", className="w-100"), xs=4),
        ]),
    ]) if editable else None
    return dbc.Card(className="mb-3", children=[
        dbc.CardHeader("Revisions"),
        dbc.CardBody([
            html.Div(id="schedule-history", className="kw-history mb-3",
                     style={"maxHeight": "22rem", "overflowY": "auto"}),
            html.Div("Compare", className="small fw-semibold mb-1"),
            dbc.Row(className="g-2 mb-2", children=[
                dbc.Col(dbc.Select(id="schedule-diff-from", placeholder="From", size="sm"),
                        xs=6),
                dbc.Col(dbc.Select(id="schedule-diff-to", placeholder="To", size="sm"), xs=6),
            ]),
            html.Div(id="schedule-diff"),
            restore,
        ]),
    ])


# ---- messages --------------------------------------------------------------------------------

def error_lines(messages: list[str]) -> list | None:
    """Return a row's validation messages, one line each (None when there is none)."""
    return [html.Div(m) for m in messages] or None


def error_summary(found: editor.RowErrors) -> dbc.Alert | None:
    """Return how many problems stop a save, with those not tied to a row."""
    if not found.count:
        return None
    rows = found.count - len(found.general)
    text = (f"{found.count} problem{'s' if found.count > 1 else ''} to fix before saving"
            + (" (marked under the rows)" if rows else "") + ".")
    return dbc.Alert([html.Div(text, className="fw-semibold"),
                      html.Ul([html.Li(m) for m in found.general], className="mb-0")
                      if found.general else None],
                     color="danger", className="py-2", id="schedule-error-summary")


def save_message(revision: dict, result) -> dbc.Alert:
    """Say that a revision was saved and whether it was sent to the storage devices."""
    number = revision["revision"]
    if result is None or not (result.published or result.failed):
        return dbc.Alert(f"Saved revision {number}. The site has no storage device to send it "
                         "to yet.", color="success", dismissable=True)
    if result.ok:
        devices = len(result.published)
        return dbc.Alert(f"Saved revision {number} and sent it to {devices} storage "
                         f"device{'s' if devices > 1 else ''}; waiting for "
                         f"{'their' if devices > 1 else 'its'} answer.",
                         color="success", dismissable=True, id="schedule-saved")
    return dbc.Alert(f"Saved revision {number}, but it could not be sent yet ({result.error}). "
                     "It will be sent automatically when the broker answers.",
                     color="warning", dismissable=True, id="schedule-saved")


def invalid_message(invalid: schedules.ScheduleInvalid) -> dbc.Alert:
    """Say that nothing was saved, and list the problems to fix."""
    return dbc.Alert([html.Div("Not saved: fix these problems first.", className="fw-semibold"),
                      html.Ul([html.Li(editor.sentence(e)) for e in invalid.errors[:20]],
                              className="mb-0")], color="danger", dismissable=True)

