"""One alarm: what, where and when; the device's related points around it; its timeline;
acknowledge and comment (operators and above, support).

The alarm id in the URL and in the page's ``alarm-id`` store comes from the
browser: every read and write passes it with the user's scope to
``kilowatch.alarms.events``, which checks it in SQL (another company's alarm shows the
"not allowed" page, or gives "no update" to a callback).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, ctx, dcc, html

from auth.callbacks import connection, current_scope, guarded_callback
from dashboards.components.alarms import views as alarm_views
from dashboards.components.telemetry.tiles import SEVERITY_COLORS
from kilowatch.access import ROLES
from kilowatch.alarms import events as alarms
from kilowatch.alarms.events import AlarmError
from kilowatch.alarms.rules import format_duration
from kilowatch.telemetry import history

dash.register_page(__name__, path_template="/alarms/<alarm_id>", name="Alarm",
                   title="Alarm · Kilowatch", roles=ROLES)

ACK_ROLES = ("operator", "admin", "support", "superadmin")
MARGIN = timedelta(hours=1)
CHART_BUCKETS = 300


def _chart(conn, scope, alarm: dict) -> tuple[dict, str]:
    start = alarm["raised_at"] - MARGIN
    end = (alarm["cleared_at"] or datetime.now(UTC)) + MARGIN
    wanted = alarms.related_points(alarm)
    sent = {p["name"] for p in history.device_points(conn, scope, alarm["device_id"])}
    points = [p for p in wanted if p in sent] or list(wanted)
    # a few hundred buckets: coarse enough that every bucket of a device sampling every
    # 10-60 s holds a sample (finer buckets would draw the line as separate dots)
    resolution = history.choose_resolution(start, end, max_points=CHART_BUCKETS)
    data = history.device_history(conn, scope, alarm["device_id"], points, start, end,
                                  resolution=resolution)
    note = (f"{', '.join(points)} · {data.resolution.label} · an hour before the raise to an "
            f"hour after the {'clear' if alarm['cleared_at'] else 'present'}")
    return alarm_views.alarm_figure(data, alarm), note


def _ack_text(alarm: dict) -> str:
    if alarm["acknowledged_at"] is None:
        return "Not acknowledged"
    when = alarm_views.site_time(alarm["acknowledged_at"], alarm["timezone"])
    return f"Acknowledged by {alarm['acknowledged_by']} at {when}"


def _facts(alarm: dict) -> dbc.Card:
    state = "Active" if alarm["cleared_at"] is None else "Cleared"
    source = alarm_views.SOURCE_LABELS[alarm["source"]]
    if alarm["rule_name"]:
        source += f" · {alarm['rule_name']}"
    facts = [("Site", dcc.Link(alarm["site_name"], href=f"/site/{alarm['site_id']}",
                               id="alarm-site-link")),
             ("Device", f"{alarm['serial']} ({alarm['model']})"), ("Source", source),
             ("Raised", alarm_views.site_time(alarm["raised_at"], alarm["timezone"])),
             ("Cleared", alarm_views.site_time(alarm["cleared_at"], alarm["timezone"]) or "—"),
             ("Duration", format_duration(alarm["duration_s"])),
             ("Raised times", str(alarm["raise_count"]))]
    return dbc.Card(dbc.CardBody([
        html.Div(className="d-flex flex-wrap align-items-center gap-2 mb-2", children=[
            dbc.Badge(alarm["severity"].title(), color=SEVERITY_COLORS[alarm["severity"]],
                      id="alarm-severity"),
            dbc.Badge(state, color="danger" if state == "Active" else "success",
                      id="alarm-state", pill=True),
            html.H1(alarm["code"], className="h4 mb-0", id="alarm-code"),
        ]),
        html.P(alarm["message"] or "—", className="mb-3", id="alarm-message"),
        dbc.Row([dbc.Col([html.Div(label, className="kw-kpi-label"), html.Div(value)],
                         xs=6, md=3, lg=True, className="mb-2") for label, value in facts]),
        html.Div(_ack_text(alarm), id="alarm-ack-status", className="text-muted small"),
    ]), className="kw-card mb-3")


def _actions(alarm: dict) -> dbc.Card:
    done = alarm["acknowledged_at"] is not None
    return dbc.Card([dbc.CardHeader("Acknowledge or comment"), dbc.CardBody([
        dbc.Textarea(id="alarm-comment", placeholder="What is being done? (optional when "
                     "acknowledging)", rows=3, maxLength=alarms.MAX_COMMENT, className="mb-2"),
        html.Div(className="d-flex gap-2", children=[
            dbc.Button("Acknowledge", id="alarm-ack", color="primary", disabled=done),
            dbc.Button("Add comment", id="alarm-comment-add", color="secondary", outline=True)]),
        dbc.Alert(id="alarm-feedback", is_open=False, className="mt-2 mb-0 py-2"),
    ])], className="kw-card mb-3")


def layout(alarm_id: str | None = None, **_query) -> html.Div:
    """Show one alarm of the user's sites (another one gives the "not allowed" page)."""
    with connection() as conn:
        scope = current_scope()
        alarm = alarms.get_alarm(conn, scope, alarm_id)
        events = alarms.alarm_events(conn, scope, alarm["id"])
        figure, note = _chart(conn, scope, alarm)
    side = [dbc.Card([dbc.CardHeader("Timeline"), dbc.CardBody(
        html.Div(alarm_views.timeline(events, alarm["timezone"]), id="alarm-timeline"))],
        className="kw-card")]
    if scope.may_acknowledge_alarms:
        side.insert(0, _actions(alarm))
    return html.Div([
        html.Div(className="mb-2 small", children=[
            dcc.Link("Alarms", href="/alarms"), " / ",
            dcc.Link("History", href="/alarm-history"), f" / #{alarm['id']}"]),
        _facts(alarm),
        dbc.Row([dbc.Col(alarm_views.chart_card(figure, note), lg=8), dbc.Col(side, lg=4)]),
        dcc.Store(id="alarm-id", data=alarm["id"]),
    ])


@guarded_callback(Output("alarm-timeline", "children"), Output("alarm-ack-status", "children"),
                  Output("alarm-ack", "disabled"), Output("alarm-comment", "value"),
                  Output("alarm-feedback", "children"), Output("alarm-feedback", "color"),
                  Output("alarm-feedback", "is_open"),
                  Input("alarm-ack", "n_clicks"), Input("alarm-comment-add", "n_clicks"),
                  State("alarm-id", "data"), State("alarm-comment", "value"),
                  prevent_initial_call=True, roles=ACK_ROLES)
def act(_ack, _comment, alarm_id, text):
    """Acknowledge the alarm or add a comment, then show the new timeline."""
    acknowledging = ctx.triggered_id == "alarm-ack"
    with connection() as conn:
        scope = current_scope()
        try:
            if acknowledging:
                alarms.acknowledge(conn, scope, alarm_id, comment=text)
            else:
                alarms.add_comment(conn, scope, alarm_id, text)
            feedback, color, keep = ("Acknowledged." if acknowledging else "Comment added."), \
                "success", ""
        except AlarmError as error:
            feedback, color, keep = str(error), "warning", text if isinstance(text, str) else ""
        alarm = alarms.get_alarm(conn, scope, alarm_id)
        events = alarms.alarm_events(conn, scope, alarm["id"])
    return (alarm_views.timeline(events, alarm["timezone"]), _ack_text(alarm),
            alarm["acknowledged_at"] is not None, keep, feedback, color, True)
