"""Revision history, differences between revisions, and delivery state of a schedule (pure)."""

from __future__ import annotations

import datetime as dt

import dash_bootstrap_components as dbc
from dash import html

from kilowatch.schedules import model as schedules
from kilowatch.schedules import store as schedule_store


def local_time(moment: dt.datetime | None, timezone: str) -> str:
    """Format a time in the site's zone: ``2026-11-22 17:05 CET``."""
    if moment is None:
        return ""
    return f"{moment.astimezone(schedules.zone(timezone)):%Y-%m-%d %H:%M %Z}"


def _delivery_badges(row: dict) -> list:
    badges = []
    for status, color in (("applied", "success"), ("pending", "warning"),
                          ("rejected", "danger")):
        if row[status]:
            badges.append(dbc.Badge(f"{status} {row[status]}", color=color, className="me-1",
                                    text_color="dark" if status == "pending" else None))
    return badges


def history_table(rows: list[dict], timezone: str) -> dbc.ListGroup | html.Div:
    """List revisions newest first: number, time, author, comment and what devices answered."""
    if not rows:
        return html.Div("No schedule has been saved for this site yet.",
                        className="text-muted small", id="schedule-no-history")
    items = []
    for row in rows:
        restored = (dbc.Badge(f"restores {row['restored_from']}", color="light",
                              text_color="dark", className="border ms-1")
                    if row["restored_from"] else None)
        items.append(dbc.ListGroupItem(className="px-2 py-2", children=[
            html.Div(className="d-flex justify-content-between align-items-baseline", children=[
                html.Span([html.Strong(f"Revision {row['revision']}"), restored]),
                html.Span(_delivery_badges(row)),
            ]),
            html.Div(row["comment"] or "no comment",
                     className="" if row["comment"] else "text-muted fst-italic"),
            html.Div(f"{row['author']} · {local_time(row['created_at'], timezone)}",
                     className="text-muted"),
        ], id={"type": "schedule-history-row", "index": row["revision"]}))
    return dbc.ListGroup(items, flush=True, className="small", id="schedule-history-table")


def revision_options(rows: list[dict], timezone: str) -> list[dict]:
    """Return dropdown choices for revisions: ``7 · 2026-11-22 17:05 CET · comment``."""
    options = []
    for row in rows:
        comment = f" · {row['comment'][:40]}" if row["comment"] else ""
        options.append({"label": f"{row['revision']} · {local_time(row['created_at'], timezone)}"
                                 f"{comment}", "value": row["revision"]})
    return options


def diff_view(lines: list[str], old: int, new: int) -> html.Div:
    """Show what changed between two revisions, one line each."""
    if old == new:
        return html.Div("Choose two different revisions.", className="text-muted small")
    if not lines:
        return html.Div(f"Revisions {old} and {new} are the same schedule.",
                        className="text-muted small", id="schedule-diff-same")
    items = [html.Li(line.strip(), className="ps-3" if line.startswith("  ") else "",
                     style={"color": _line_color(line.strip())}) for line in lines]
    return html.Div([html.Div(f"From revision {old} to {new}:", className="small text-muted"),
                     html.Ul(items, className="small mb-0 kw-diff", id="schedule-diff-lines")])


def _line_color(line: str) -> str:
    if line.startswith("added"):
        return "#15803d"
    if line.startswith("removed"):
        return "#b91c1c"
    return "#1f2937"


STATUS_COLORS = {"applied": "success", "pending": "warning", "rejected": "danger"}


def delivery_summary(rows: list[dict], timezone: str) -> tuple[str, str]:
    """Sum up the latest revision's delivery in words and a colour (Bootstrap name)."""
    if not rows:
        return "No storage device on this site", "secondary"
    revision = rows[0]["revision"]
    if revision is None:
        return "No schedule yet", "secondary"
    rejected = [r for r in rows if r["status"] == "rejected"]
    if rejected:
        reasons = "; ".join(r["reason"] or "no reason given" for r in rejected)
        return f"Revision {revision} rejected: {reasons}", "danger"
    pending = [r for r in rows if r["status"] == "pending"]
    if pending:
        since = local_time(min(r["pending_since"] for r in pending), timezone)
        waiting = (" (not yet published: the broker could not be reached)"
                   if any(r["published_at"] is None for r in pending) else "")
        return f"Revision {revision} pending since {since}{waiting}", "warning"
    return f"Applied revision {revision}", "success"


def delivery_panel(rows: list[dict], timezone: str) -> html.Div:
    """Show the delivery summary and, per storage device, what it answered."""
    text, color = delivery_summary(rows, timezone)
    summary = dbc.Alert(text, color=color, className="py-2 mb-2", id="schedule-delivery-text")
    if not rows or rows[0]["revision"] is None:
        return html.Div(summary)
    lines = []
    shares = schedule_store.share_labels(rows)
    for row in rows:
        detail = _device_detail(row, timezone)
        share = ([html.Span(f"({shares[row['serial']]})", className="me-2")]
                 if row["serial"] in shares else [])
        lines.append(html.Li([html.Code(row["serial"], className="me-2"), *share,
                              dbc.Badge(row["status"], color=STATUS_COLORS[row["status"]],
                                        text_color="dark" if row["status"] == "pending"
                                        else None, className="me-2"),
                              html.Span(detail, className="text-muted")]))
    return html.Div([summary, html.Ul(lines, className="list-unstyled small mb-0")])


def _device_detail(row: dict, timezone: str) -> str:
    if row["status"] == "rejected":
        return f"{row['reason'] or 'no reason given'} ({local_time(row['acked_at'], timezone)})"
    if row["status"] == "applied":
        return f"applied {local_time(row['acked_at'], timezone)}"
    if row["published_at"] is None:
        return f"not yet published: {row['publish_error'] or 'waiting for the broker'}"
    applied = (f"; still runs revision {row['applied_revision']}"
               if row["applied_revision"] else "")
    return f"sent {local_time(row['published_at'], timezone)}, waiting for the device{applied}"
