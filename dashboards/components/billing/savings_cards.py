"""Tables and cards of the savings pages: a month's breakdown, peaks, data quality, totals.

Pure functions from :func:`kilowatch.billing.savings.month_summary` (and list rows) to
Dash components.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboards.components.billing.savings_charts import SCENARIO_LABELS, SCENARIOS, month_label

PARTS = (("energy", "Energy"), ("demand", "Demand"), ("fixed", "Fixed"),
         ("export_credit", "Export credit"), ("total", "Total"))
SAVINGS_ROWS = (("system", "System saves (1 − 3)"), ("storage", "Storage saves (2 − 3)"))


def money(value: float | None, currency: str = "") -> str:
    """Format an amount with two decimals and thousands separators."""
    if value is None:
        return "–"
    text = f"{value:,.2f}"
    return f"{text} {currency}".strip()


def local_time(iso: str | None, timezone: str) -> str:
    """Format a UTC ISO time as the site's local date and time."""
    if not iso:
        return "–"
    return datetime.fromisoformat(iso).astimezone(ZoneInfo(timezone)).strftime(
        "%a %d %b %Y, %H:%M")


def breakdown_table(summary: dict) -> dbc.Table:
    """Return the month's three bills and the savings, part by part."""
    currency = summary["currency"]
    header = html.Thead(html.Tr([html.Th(f"Amounts in {currency}")]
                                + [html.Th(label, className="text-end") for _, label in PARTS]))
    rows = []
    for number, scenario in enumerate(SCENARIOS, start=1):
        bill = summary["bills"][scenario]
        flag = [] if bill["complete"] else [dbc.Badge("incomplete data", color="warning",
                                                      className="ms-2 text-dark")]
        rows.append(html.Tr([html.Td([f"{number}. {SCENARIO_LABELS[scenario]}", *flag])]
                            + [html.Td(money(bill[part]), className="text-end")
                               for part, _ in PARTS],
                            id=f"savings-row-{scenario}"))
    for key, label in SAVINGS_ROWS:
        amounts = summary["savings"][key]
        rows.append(html.Tr([html.Th(label)]
                            + [html.Td(money(amounts[part]), className="text-end fw-semibold")
                               for part, _ in PARTS],
                            className="kw-savings-row", id=f"savings-row-{key}"))
    return dbc.Table([header, html.Tbody(rows)], size="sm", hover=True, responsive=True,
                     className="kw-breakdown mb-0", id="savings-breakdown-table")


def kpi(title: str, value: str, note: str = "", *, element_id: str, tone: str = "") -> dbc.Card:
    """Return a small card with one figure."""
    return dbc.Card(dbc.CardBody([
        html.Div(title, className="text-muted small text-uppercase kw-kpi-title"),
        html.Div(value, className=f"kw-kpi-value {tone}", id=element_id),
        html.Div(note, className="small text-muted"),
    ]), className="h-100 kw-kpi")


def month_kpis(summary: dict) -> dbc.Row:
    """Return the month's headline figures: the actual bill and both savings."""
    currency = summary["currency"]
    state = "final" if summary["final"] else "month to date"
    saves = summary["savings"]
    cards = [
        kpi("Actual bill", money(summary["bills"]["actual"]["total"], currency),
            f"{summary['period']}, {state}", element_id="savings-kpi-actual"),
        kpi("System saves", money(saves["system"]["total"], currency),
            f"vs. {money(summary['bills']['without_system']['total'], currency)} without it",
            element_id="savings-kpi-system", tone="text-success"),
        kpi("Storage saves", money(saves["storage"]["total"], currency),
            f"vs. {money(summary['bills']['pv_only']['total'], currency)} with PV only",
            element_id="savings-kpi-storage", tone="kw-storage"),
    ]
    return dbc.Row([dbc.Col(card, md=4, className="mb-2") for card in cards], className="g-2")


def peaks(summary: dict) -> dict[str, tuple[float, str | None]]:
    """Return each scenario's (peak kW, UTC time) of the month."""
    result = {}
    for scenario in SCENARIOS:
        demand = summary["bills"][scenario]["details"]["demand"]
        result[scenario] = (demand["peak_kw"], demand["peak_at"])
    return result


def peak_table(summary: dict) -> html.Div:
    """Return the month's peak demand per scenario, when it happened, and the reduction."""
    timezone = summary["timezone"]
    found = peaks(summary)
    rows = [html.Tr([html.Td(SCENARIO_LABELS[s]), html.Td(f"{kw:,.1f} kW", className="text-end"),
                     html.Td(local_time(at, timezone))], id=f"savings-peak-{s}")
            for s, (kw, at) in found.items()]
    table = dbc.Table([html.Thead(html.Tr([html.Th("Peak demand"), html.Th("15-min kW",
                                                                           className="text-end"),
                                           html.Th(f"When ({timezone})")])),
                       html.Tbody(rows)], size="sm", className="mb-2")
    without, actual = found["without_system"][0], found["actual"][0]
    note = []
    if without > 0:
        cut = without - actual
        note = [html.Span(f"The system cut the peak by {cut:,.1f} kW "
                          f"({cut / without:.0%}).", id="savings-peak-cut",
                          className="small text-muted")]
    return html.Div([table, *note])


def _ranges(ranges: Sequence[Sequence[str]], timezone: str, limit: int = 4) -> str:
    shown = [f"{local_time(a, timezone)} – {local_time(b, timezone)}" for a, b in ranges[:limit]]
    more = len(ranges) - limit
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def quality_alert(summary: dict) -> dbc.Alert | None:
    """Return a warning listing the month's missing and estimated intervals, if any."""
    timezone = summary["timezone"]
    lines = []
    for scenario in SCENARIOS:
        quality = summary["bills"][scenario]["quality"]
        if quality["complete"]:
            continue
        parts = [f"{SCENARIO_LABELS[scenario]}: {quality['missing_intervals']} of "
                 f"{quality['expected_intervals']} quarter-hours missing, "
                 f"{quality['estimated_intervals']} estimated across gaps."]
        if quality["missing"]:
            parts.append(f" Missing: {_ranges(quality['missing'], timezone)}.")
        if quality["estimated"]:
            parts.append(f" Estimated: {_ranges(quality['estimated'], timezone)}.")
        lines.append(html.Li("".join(parts)))
    if not lines:
        return None
    return dbc.Alert([html.Strong("Incomplete data. "),
                      "These bills leave out or estimate the quarter-hours below; they are "
                      "not treated as zero consumption.", html.Ul(lines, className="mb-0 mt-2")],
                     color="warning", id="savings-quality")


def total_savings(rows: Sequence[dict]) -> dict[str, float]:
    """Sum system and storage savings over bill rows of one currency."""
    return {"system": round(sum(row["system_savings"] for row in rows), 2),
            "storage": round(sum(row["storage_savings"] for row in rows), 2),
            "months": len(rows)}


def cumulative_card(rows: Sequence[dict], currency: str) -> html.Div:
    """Return the savings since the first billed month, and over which months."""
    if not rows:
        return html.Div("No bills yet.", className="text-muted")
    totals = total_savings(rows)
    first, last = month_label(rows[0]["period_start"]), month_label(rows[-1]["period_start"])
    return html.Div([
        html.Div(money(totals["system"], currency), className="kw-kpi-value text-success",
                 id="savings-cumulative-system"),
        html.Div(f"saved by the system from {first} to {last} ({totals['months']} months), "
                 f"of which storage {money(totals['storage'], currency)}",
                 className="small text-muted", id="savings-cumulative-note"),
    ])


def assignment_list(rows: Sequence[dict]) -> html.Ul:
    """Return a site's live tariff assignments as a short list."""
    if not rows:
        return html.Ul([html.Li("No tariff assigned.")], className="small mb-0")
    return html.Ul([html.Li(f"{row['tariff_name']}: from {row['valid_from']}"
                            + (f" to {row['valid_to']}" if row["valid_to"] else ""))
                    for row in rows], className="small mb-0 ps-3", id="savings-assignments")


def fleet_table(rows: Sequence[dict], month: str) -> dbc.Table:
    """Return the fleet's bills and savings of a month, one line per site."""
    header = html.Thead(html.Tr([html.Th(h, className=c) for h, c in (
        ("Site", ""), ("Tariff", ""), ("Without system", "text-end"), ("PV only", "text-end"),
        ("Actual", "text-end"), ("System saves", "text-end"), ("Storage saves", "text-end"),
        ("", ""))]))
    body = []
    for row in rows:
        currency = row["currency"] or ""
        if row["tariff_id"] is None:
            state = dbc.Badge("no tariff", color="secondary")
        elif row["actual"] is None:
            state = dbc.Badge("not computed yet", color="info")
        elif not row["complete"]:
            state = dbc.Badge("incomplete data", color="warning", className="text-dark")
        else:
            state = dbc.Badge("final" if row["final"] else "to date", color="light",
                              className="text-dark")
        link = dcc.Link(row["site_name"], href=f"/site/{row['site_id']}/savings?month={month}")
        body.append(html.Tr([
            html.Td([link, html.Div(row["company_name"], className="small text-muted")]),
            html.Td(row["tariff_name"] or "–"),
            *[html.Td(money(row[key], currency), className="text-end")
              for key in ("without_system", "pv_only", "actual")],
            html.Td(money(row["system_savings"], currency), className="text-end fw-semibold"),
            html.Td(money(row["storage_savings"], currency), className="text-end"),
            html.Td(state),
        ], id={"type": "fleet-savings-site", "index": row["site_id"]}))
    return dbc.Table([header, html.Tbody(body)], hover=True, size="sm", responsive=True,
                     id="fleet-savings-table")


def fleet_totals(rows: Sequence[dict]) -> list[html.Span]:
    """Return the month's total savings per currency."""
    totals: dict[str, list[float]] = {}
    for row in rows:
        if row["system_savings"] is not None:
            pair = totals.setdefault(row["currency"], [0.0, 0.0])
            pair[0] += row["system_savings"]
            pair[1] += row["storage_savings"]
    return [html.Span(f"{money(round(s, 2), c)} saved (storage {money(round(b, 2), c)})",
                      className="me-4 fw-semibold") for c, (s, b) in sorted(totals.items())]
