"""The schedule editor of one site: week timeline, periods, exceptions, save, history, preview.

Operators of the site, its company's admins and superadmins edit; everyone else
who may see the site reads the same page with every input disabled and no
buttons, and the server refuses their saves whatever the browser sends. Each
callback takes the site id from the page's store and checks it against the
caller's scope in ``kilowatch`` (``AccessDenied`` → no update).
"""

from __future__ import annotations

import datetime as dt
import json

import dash
import dash_bootstrap_components as dbc
from dash import ALL, MATCH, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from auth.callbacks import (
    ALL_ROLES,
    EDITOR_ROLES,
    connection,
    current_scope,
    guarded_callback,
    guarded_clientside_callback,
)
from auth.scope import app_settings
from dashboards.components.inputs import next_count
from dashboards.components.schedules import cards, editor
from dashboards.components.schedules import history as history_view
from dashboards.components.schedules import preview_chart as preview_view
from dashboards.components.schedules.timeline import week_figure
from kilowatch import fleet
from kilowatch.access import AccessDenied
from kilowatch.ids import parse_id
from kilowatch.schedules import delivery as schedule_delivery
from kilowatch.schedules import model as schedules
from kilowatch.schedules import preview as schedule_preview
from kilowatch.schedules import store as schedule_store

dash.register_page(__name__, path_template="/site/<site_id>/schedule", name="Schedule",
                   title="Schedule · Kilowatch", roles=ALL_ROLES)

REFRESH_MS = 5000
# A save never queues behind another one, nor holds a server thread long for the broker.
_SEND_OPTIONS = {"timeout_s": schedule_delivery.INTERACTIVE_TIMEOUT_S, "wait": False}


def _site_id(value) -> int:
    """Return a site id from the URL or the browser as an int (AccessDenied when it is not one)."""
    site_id = parse_id(value)
    if site_id is None:
        raise AccessDenied(f"not a site id: {value!r}"[:100])
    return site_id


def _site(conn, site_id) -> dict:
    return fleet.get_site(conn, current_scope(), _site_id(site_id))


def _editable(site: dict) -> bool:
    return current_scope().may_edit_site(site["company_id"], site["id"])


def _editor_schedule(site: dict, revision: dict | None) -> dict:
    """The latest revision as the editor starts from it (past exceptions dropped)."""
    if revision is None:
        return {"timezone": site["timezone"], "default_mode": "idle", "periods": [],
                "exceptions": []}
    body = schedules.canonical(revision["body"])
    today = schedules.local_today(site["timezone"]).isoformat()
    return {**body, "exceptions": [e for e in body["exceptions"] if e["date"] >= today]}


# ---- layout ----------------------------------------------------------------------------------

def layout(site_id=None, **_query) -> html.Div:
    """Show a visible site's schedule; editable for those who may change it."""
    with connection() as conn:
        site = _site(conn, site_id)
        revision = schedule_store.latest_revision(conn, current_scope(), site["id"])
    editable = _editable(site)
    schedule = _editor_schedule(site, revision)
    return html.Div(className="kw-schedule-page", children=[
        dcc.Store(id="schedule-site-id", data=site["id"]),
        dcc.Store(id="schedule-editable", data=editable),
        dcc.Store(id="schedule-changed", data=0),
        dcc.Interval(id="schedule-refresh", interval=REFRESH_MS),
        cards.header(site),
        dbc.Row([
            dbc.Col(cards.timeline_card(schedule), lg=8),
            dbc.Col(cards.delivery_card(), lg=4),
        ]),
        cards.program_card(schedule, site, editable),
        cards.exceptions_card(schedule, site, editable),
        html.Div(id="schedule-errors"),
        cards.save_card(editable),
        dbc.Row([
            dbc.Col(cards.preview_card(), xl=8),
            dbc.Col(cards.history_card(editable), xl=4),
        ]),
    ])


# ---- the editor's rows -----------------------------------------------------------------------

def _values(kind: str, fields: tuple[str, ...], dependency=State) -> dict:
    return {field: dependency({"type": f"schedule-{kind}-{field}", "index": ALL}, "value")
            for field in fields}


def _draft_dependencies(dependency=State) -> dict:
    return {"periods": _values("period", editor.PERIOD_FIELDS, dependency),
            "exceptions": _values("exception", editor.EXCEPTION_FIELDS, dependency),
            "default_mode": dependency("schedule-default-mode", "value"),
            "default_params": {key: dependency(f"schedule-default-{key}", "value")
                               for key in editor.PARAMS}}


def _rows(values: dict) -> tuple[list[dict], list[dict]]:
    return (editor.rows_from_values(values.get("periods") or {}, editor.PERIOD_FIELDS),
            editor.rows_from_values(values.get("exceptions") or {}, editor.EXCEPTION_FIELDS))


def _draft(site: dict, values: dict) -> tuple[editor.Draft, list[dict], list[dict]]:
    periods, exceptions = _rows(values)
    mode = values.get("default_mode")
    params = editor.default_params(mode, values.get("default_params") or {})
    return editor.draft(site["timezone"], mode, params, periods, exceptions), periods, exceptions


def _clicked() -> bool:
    return any(bool(item.get("value")) for item in ctx.triggered)


def _new_rows(trigger, periods: list[dict], exceptions: list[dict], copy: dict,
              today: dt.date) -> tuple[list[dict], list[dict]]:
    kind = trigger.get("type") if isinstance(trigger, dict) else trigger
    if kind == "schedule-add-period":
        last = periods[-1] if periods else {"day": "mon"}
        periods = [*periods, {"day": last.get("day") or "mon", "start": "", "end": "",
                              "mode": "discharge"}]
    elif kind == "schedule-period-delete":
        periods = [r for i, r in enumerate(periods) if i != trigger.get("index")]
    elif kind == "schedule-copy":
        periods = editor.copy_day(periods, copy["source"], copy["targets"] or [])
    elif kind == "schedule-add-exception":
        exceptions = [*exceptions, {"date": today.isoformat(), "name": "", "start": "",
                                    "end": "", "mode": editor.ALL_DAY}]
    elif kind == "schedule-exception-delete":
        exceptions = [r for i, r in enumerate(exceptions) if i != trigger.get("index")]
    return periods, exceptions


@guarded_callback(
    output=[Output("schedule-periods", "children"), Output("schedule-exceptions", "children")],
    inputs={"clicks": [Input("schedule-add-period", "n_clicks"),
                       Input("schedule-copy", "n_clicks"),
                       Input({"type": "schedule-period-delete", "index": ALL}, "n_clicks"),
                       Input("schedule-add-exception", "n_clicks"),
                       Input({"type": "schedule-exception-delete", "index": ALL}, "n_clicks")],
            "changed": Input("schedule-changed", "data")},
    state={"site_id": State("schedule-site-id", "data"), "values": _draft_dependencies(),
           "copy": {"source": State("schedule-copy-from", "value"),
                    "targets": State("schedule-copy-to", "value")}},
    roles=EDITOR_ROLES, prevent_initial_call=True)
def edit_rows(clicks, changed, site_id, values, copy):
    """Add, delete or copy rows; reload the latest revision after a save or restore."""
    trigger = ctx.triggered_id
    with connection() as conn:
        site = _site(conn, site_id)
        if not _editable(site):
            raise AccessDenied("read-only user tried to edit rows")
        if trigger == "schedule-changed":
            schedule = _editor_schedule(site, schedule_store.latest_revision(
                conn, current_scope(), site["id"]))
            periods, exceptions = editor.period_rows(schedule), editor.exception_rows(schedule)
        elif not _clicked():
            raise PreventUpdate
        else:
            periods, exceptions = _new_rows(trigger, *_rows(values), copy,
                                            schedules.local_today(site["timezone"]))
    return (cards.period_table_rows(periods, site, True),
            cards.exception_table_rows(exceptions, site, True))


def _sized(items: list, outputs) -> list:
    """Fit a list of per-row values to the rows the browser has (it decides how many)."""
    count = len(outputs) if isinstance(outputs, list) else 0
    return (items + [None] * count)[:count]


@guarded_callback(
    output=[Output("schedule-timeline", "figure"),
            Output({"type": "schedule-period-error", "index": ALL}, "children"),
            Output({"type": "schedule-exception-error", "index": ALL}, "children"),
            Output("schedule-errors", "children")],
    inputs={"values": _draft_dependencies(Input)},
    state={"site_id": State("schedule-site-id", "data")},
    roles=ALL_ROLES)
def check_draft(values, site_id):
    """Redraw the timeline from the editor and show each validation error next to its row."""
    with connection() as conn:
        site = _site(conn, site_id)
        limits = schedule_store.site_limits(conn, current_scope(), site["id"])
    draft, periods, exceptions = _draft(site, values)
    errors = _validation_errors(draft, limits)
    found = editor.row_errors(errors, periods, exceptions, draft.exception_groups)
    today = schedules.local_today(site["timezone"])
    now_local = dt.datetime.now(schedules.zone(site["timezone"]))
    figure = week_figure(draft.merged, today=today, now_local=now_local)
    return (figure, _sized([cards.error_lines(m) for m in found.periods], ctx.outputs_list[1]),
            _sized([cards.error_lines(m) for m in found.exceptions], ctx.outputs_list[2]),
            cards.error_summary(found))


def _validation_errors(draft: editor.Draft, limits) -> list[str]:
    body = draft.per_row
    if len(body["periods"]) > schedules.MAX_PERIODS:
        body = draft.merged  # the rule counts periods, not rows
    try:
        schedules.validate(body, limits)
    except schedules.ScheduleInvalid as invalid:
        return invalid.errors
    return []


# Which parameter inputs a mode disables, in the browser; the table is schedules.MODE_PARAMS.
PARAM_SWITCH_JS = (
    f"function(mode, editable) {{ const wanted = ({json.dumps(schedules.MODE_PARAMS)})[mode] "
    f"|| []; return {json.dumps(list(editor.PARAMS))}.map("
    "key => !editable || !wanted.includes(key)); }")

for _kind in ("period", "exception"):
    guarded_clientside_callback(
        PARAM_SWITCH_JS,
        [Output({"type": f"schedule-{_kind}-{key}", "index": MATCH}, "disabled")
         for key in editor.PARAMS],
        Input({"type": f"schedule-{_kind}-mode", "index": MATCH}, "value"),
        State("schedule-editable", "data"),
        prevent_initial_call=True)

guarded_clientside_callback(
    PARAM_SWITCH_JS,
    [Output(f"schedule-default-{key}", "disabled") for key in editor.PARAMS],
    Input("schedule-default-mode", "value"), State("schedule-editable", "data"),
    prevent_initial_call=True)


# ---- save and restore --------------------------------------------------------------------------


def _save(conn, site: dict, values: dict, comment) -> tuple:
    draft, _, _ = _draft(site, values)
    revision, result = schedule_delivery.save_and_publish(
        conn, current_scope(), site["id"], draft.merged, comment=_comment(comment),
        **_SEND_OPTIONS, settings=app_settings())
    return cards.save_message(revision, result), ""


def _restore(conn, site: dict, revision, comment) -> tuple:
    number = parse_id(revision)
    if not number:  # None, or 0: revisions count from 1
        return dbc.Alert("Choose the revision to restore.", color="warning",
                         dismissable=True), no_update
    row, result = schedule_delivery.restore_and_publish(
        conn, current_scope(), site["id"], number, comment=_comment(comment) or None,
        **_SEND_OPTIONS, settings=app_settings())
    return cards.save_message(row, result), no_update


def _comment(value) -> str:
    return value[:500] if isinstance(value, str) else ""


@guarded_callback(
    output=[Output("schedule-message", "children"), Output("schedule-changed", "data"),
            Output("schedule-comment", "value")],
    inputs={"save": Input("schedule-save", "n_clicks"),
            "restore": Input("schedule-restore", "n_clicks")},
    state={"site_id": State("schedule-site-id", "data"), "values": _draft_dependencies(),
           "comment": State("schedule-comment", "value"),
           "restore_revision": State("schedule-restore-revision", "value"),
           "restore_comment": State("schedule-restore-comment", "value"),
           "changed": State("schedule-changed", "data")},
    roles=EDITOR_ROLES, prevent_initial_call=True)
def change_schedule(save, restore, site_id, values, comment, restore_revision, restore_comment,
                    changed):
    """Save the editor as a new revision, or restore an older one, and send it."""
    if not _clicked() or ctx.triggered_id not in ("schedule-save", "schedule-restore"):
        raise PreventUpdate
    counter = next_count(changed)
    try:
        with connection() as conn:
            site = _site(conn, site_id)
            if ctx.triggered_id == "schedule-save":
                message, comment_value = _save(conn, site, values or {}, comment)
            else:
                message, comment_value = _restore(conn, site, restore_revision, restore_comment)
    except schedules.ScheduleInvalid as invalid:
        return cards.invalid_message(invalid), no_update, no_update
    except schedule_delivery.PublishBusy as busy:
        return (dbc.Alert(editor.sentence(str(busy)) + ".", color="warning", dismissable=True,
                          id="schedule-busy"), no_update, no_update)
    except schedule_store.ScheduleNotFound as missing:
        return dbc.Alert(editor.sentence(str(missing)) + ".", color="warning"), no_update, no_update
    return message, counter, comment_value


# ---- history, differences, delivery -----------------------------------------------------------

@guarded_callback(
    output=[Output("schedule-history", "children"), Output("schedule-diff-from", "options"),
            Output("schedule-diff-to", "options"), Output("schedule-diff-from", "value"),
            Output("schedule-diff-to", "value")],
    inputs=[Input("schedule-site-id", "data"), Input("schedule-changed", "data"),
            Input("schedule-refresh", "n_intervals")],
    state=State("schedule-diff-to", "options"),
    roles=ALL_ROLES)
def show_history(site_id, _changed, _tick, shown_options):
    """List revisions with the devices' answers; after a save, compare the two newest."""
    with connection() as conn:
        site = _site(conn, site_id)
        rows = schedule_store.history(conn, current_scope(), site["id"])
    options = history_view.revision_options(rows, site["timezone"])
    if ctx.triggered_id == "schedule-refresh":
        old = new = no_update
        if options == shown_options:  # the choices stay; only the answers may have changed
            options = no_update
    else:
        new = rows[0]["revision"] if rows else None
        old = rows[1]["revision"] if len(rows) > 1 else new
    return history_view.history_table(rows, site["timezone"]), options, options, old, new


@guarded_callback(Output("schedule-restore-revision", "options"),
                  Input("schedule-diff-to", "options"), roles=EDITOR_ROLES,
                  prevent_initial_call=True)
def restore_choices(options):
    """Offer every revision but the newest for restoring."""
    return options[1:] if isinstance(options, list) else []


@guarded_callback(Output("schedule-diff", "children"),
                  Input("schedule-diff-from", "value"), Input("schedule-diff-to", "value"),
                  State("schedule-site-id", "data"), roles=ALL_ROLES)
def show_diff(old, new, site_id):
    """Say what changed between two revisions."""
    old, new = parse_id(old), parse_id(new)
    if old is None or new is None:
        return None
    with connection() as conn:
        site = _site(conn, site_id)
        scope = current_scope()
        try:
            first = schedule_store.get_revision(conn, scope, site["id"], old)
            second = schedule_store.get_revision(conn, scope, site["id"], new)
        except schedule_store.ScheduleNotFound:
            return html.Div("No such revision.", className="text-muted small")
    return history_view.diff_view(schedules.diff(first["body"], second["body"]), old, new)


@guarded_callback(Output("schedule-delivery", "children"),
                  Input("schedule-refresh", "n_intervals"), Input("schedule-changed", "data"),
                  State("schedule-site-id", "data"), roles=ALL_ROLES)
def show_delivery(_tick, _changed, site_id):
    """Show whether the storage devices applied the latest revision (refreshed every 5 s)."""
    with connection() as conn:
        site = _site(conn, site_id)
        rows = schedule_store.delivery_state(conn, current_scope(), site["id"])
    return history_view.delivery_panel(rows, site["timezone"])


# ---- preview ----------------------------------------------------------------------------------

@guarded_callback(Output("schedule-preview", "children"),
                  inputs={"run": Input("schedule-preview-run", "n_clicks"),
                          "changed": Input("schedule-changed", "data")},
                  state={"site_id": State("schedule-site-id", "data"),
                         "values": _draft_dependencies()},
                  roles=ALL_ROLES)
def show_preview(run, changed, site_id, values):
    """Simulate the editor's schedule over the next 7 days and chart SoC and grid power."""
    with connection() as conn:
        site = _site(conn, site_id)
        draft, _, _ = _draft(site, values or {})
        try:
            result = schedule_preview.preview(conn, current_scope(), site["id"], draft.merged)
        except schedules.ScheduleInvalid:
            return dbc.Alert("Fix the schedule's problems first; the preview runs a valid "
                             "schedule.", color="warning", className="mb-0")
        except schedule_preview.NoStorage as error:
            return dbc.Alert(editor.sentence(str(error)) + ".", color="secondary",
                             className="mb-0")
    return html.Div([preview_view.preview_summary(result),
                     dcc.Graph(id="schedule-preview-graph",
                               figure=preview_view.preview_figure(result),
                               config={"displayModeBar": False})])
